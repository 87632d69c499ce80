import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where one instance keeps its quarantine list, crash records, worker socket and plugin cache.
///
/// Each instance has its own: two spanhostd of one user never read each other's quarantine. The
/// default is `$TMPDIR/spanhost-<uid>/<instance>`, where `<instance>` is derived from the config
/// files (absolute paths) and the admin endpoint, so a restart of the same instance finds its
/// own state again. `service.supervisor.state_dir` sets it (the systemd unit uses
/// `/var/lib/spanhost`).
///
/// A directory another local user can write could be used to plant a symlink or a quarantine
/// list, so every component of the path must be owned by this user or root and not be writable
/// by others (a root-owned sticky directory such as /tmp excepted, for the parents only).
public enum StateDirectory {
    public static func defaultPath(configFiles: [String], adminEndpoint: Endpoint) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        let absolute = configFiles.map { $0.hasPrefix("/") ? $0 : "\(cwd)/\($0)" }
        let identity = (absolute.isEmpty ? ["(embedded default config)"] : absolute) + ["admin=\(adminEndpoint)"]
        // FNV-1a: stable across runs and builds, unlike Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in identity.joined(separator: "\n").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let base = tmp.hasSuffix("/") ? String(tmp.dropLast()) : tmp
        return "\(base)/spanhost-\(getuid())/\(String(hash, radix: 16))"
    }

    /// Creates `path` (mode 0700, with its missing parents) and checks every component.
    /// `key` names the config key in errors.
    public static func prepare(_ path: String, key: String) throws(ConfigError) {
        guard path.hasPrefix("/") else { throw ConfigError(key, "\(path): must be an absolute path") }
        let components = path.split(separator: "/").map(String.init)
        var current = ""
        for (index, name) in components.enumerated() {
            current += "/\(name)"
            let last = index == components.count - 1
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw ConfigError(key, "cannot create \(current): \(String(cString: strerror(errno)))")
            }
            var info = stat()
            guard lstat(current, &info) == 0 else {
                throw ConfigError(key, "cannot read \(current): \(String(cString: strerror(errno)))")
            }
            if (info.st_mode & S_IFMT) == S_IFLNK {
                // A system path may be a link (/var/run -> /run, systemd's StateDirectory= with
                // DynamicUser=): follow it only when the link itself belongs to root or to us,
                // and check its target the same way.
                guard info.st_uid == 0 || info.st_uid == getuid(), stat(current, &info) == 0 else {
                    throw ConfigError(key, "\(current) is a symbolic link; state directories must be real directories")
                }
            }
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw ConfigError(key, "\(current) is not a directory") }
            guard info.st_uid == getuid() || info.st_uid == 0 else {
                throw ConfigError(key, "\(current) belongs to uid \(info.st_uid), not to this user (\(getuid())) or root: "
                                       + "another user could plant files there. Remove it or set service.supervisor.state_dir")
            }
            let othersWrite = info.st_mode & (S_IWGRP | S_IWOTH) != 0
            let stickyRoot = info.st_mode & S_ISVTX != 0 && info.st_uid == 0
            if othersWrite && (last || !stickyRoot) {
                throw ConfigError(key, "\(current) is writable by other users (mode \(String(info.st_mode & 0o7777, radix: 8))): "
                                       + "run chmod go-w on it or choose another service.supervisor.state_dir")
            }
        }
    }

    /// Opens a file inside a prepared state directory: never through a symbolic link, never
    /// inherited by children, and new (a stale file of that name is replaced). Returns the fd.
    public static func createFile(_ path: String, mode: mode_t = 0o600) throws(ConfigError) -> CInt {
        var fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 && errno == EEXIST {
            unlink(path)
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        guard fd >= 0 else { throw ConfigError("service.supervisor.state_dir", "cannot create \(path): \(String(cString: strerror(errno)))") }
        return fd
    }
}
