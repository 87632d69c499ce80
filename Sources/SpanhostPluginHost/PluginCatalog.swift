import CSpanhost
import Foundation
import Logging
import SpanhostModel
import Synchronization

/// The plugins found in the plugin directory, by name, and the files that were refused.
///
/// Every file is hashed and loaded from a copy named by its sha256 in the cache directory, so a
/// rebuilt file at the same path loads as new code while the old image stays mapped.
public final class PluginCatalog: Sendable {
    public let libraries: [String: PluginLibrary]
    public let refused: [(file: String, error: PluginLoadError)]
    /// Plugins whose file is quarantined, by plugin name: why.
    public let quarantined: [String: PluginLoadError]
    /// The directories searched, in order (for messages).
    public let directories: [String]

    /// Images already opened in this process, by sha256: the same bytes are opened once.
    private static let loaded = Mutex<[String: PluginLibrary]>([:])

    public init(libraries: [String: PluginLibrary] = [:], refused: [(file: String, error: PluginLoadError)] = [],
                quarantined: [String: PluginLoadError] = [:], directories: [String] = []) {
        self.libraries = libraries
        self.refused = refused
        self.quarantined = quarantined
        self.directories = directories
    }

    public func library(named name: String) -> PluginLibrary? { libraries[name] }

    /// Every image opened in this process and still mapped: the current catalog's and older
    /// versions retained because instances still use them or because they cannot be unloaded.
    public static var loadedImages: [PluginLibrary] { loaded.withLock { Array($0.values) } }

    /// Closes images that are not in `current`, declared themselves unloadable and have no
    /// instances left. Returns how many were closed.
    @discardableResult
    public static func closeUnused(keeping current: PluginCatalog) -> Int {
        let keep = Set(current.libraries.values.map(\.sha256))
        var closed = 0
        for library in loadedImages where !keep.contains(library.sha256) && library.closeIfUnused() {
            loaded.withLock { $0[library.sha256] = nil }
            closed += 1
        }
        return closed
    }

    /// Loads the plugins `names` asks for: type `x` is file `x.so`, from whichever of
    /// `directories` has it (two that both have it are an error). Other files are never opened (their code never runs here);
    /// `spanhost plugins list` inspects them in child processes. Refusals are logged and kept.
    public static func load(_ names: Set<String>, from directories: [String], cacheDirectory: String, pins: [String: String] = [:],
                            requirePins: Bool = false, quarantine: Quarantine = Quarantine(), logger: Logger) -> PluginCatalog {
        var libraries: [String: PluginLibrary] = [:]
        var refused: [(file: String, error: PluginLoadError)] = []
        var quarantined: [String: PluginLoadError] = [:]
        for name in names.sorted() {
            let file = "\(name).so"
            let found = directories.map { ($0 as NSString).appendingPathComponent(file) }.filter { FileManager.default.fileExists(atPath: $0) }
            guard let path = found.first else { continue }  // the component that needs it says so
            let directory = (path as NSString).deletingLastPathComponent
            do {
                // Which one runs must not depend on the order directories happen to be listed in.
                guard found.count == 1 else { throw PluginLoadError.ambiguous(file: path, others: Array(found.dropFirst())) }
                // A directory others can write to could get a file planted in it.
                if let problem = FileSafety.problem(directory, isDirectory: true) ?? FileSafety.problem(path, isDirectory: false) {
                    throw PluginLoadError.unsafe(file: path, reason: problem)
                }
                let library = try load(path: path, cacheDirectory: cacheDirectory, pin: pins[file], requirePin: requirePins,
                                       quarantine: quarantine)
                guard library.name == name else {
                    throw PluginLoadError.nameMismatch(file: path, expected: name, registered: library.name)
                }
                libraries[library.name] = library
                logger.info("plugin loaded", metadata: [
                    "name": "\(library.name)", "kind": "\(library.kind.rawValue)", "version": "\(library.version)",
                    "abi": "\(library.abiMajor).\(library.abiMinor)", "file": "\(path)", "sha256": "\(library.sha256)",
                ])
            } catch let error as PluginLoadError {
                if case .quarantined(_, let plugin, _) = error { quarantined[plugin] = error }
                refused.append((path, error))
                logger.error("plugin refused: \(error)")
            } catch {
                let wrapped = PluginLoadError.unreadable(file: path, reason: "\(error)")
                refused.append((path, wrapped))
                logger.error("plugin refused: \(wrapped)")
            }
        }
        return PluginCatalog(libraries: libraries, refused: refused, quarantined: quarantined, directories: directories)
    }

    /// The folder of the running executable (build/bin).
    public static var executableDirectory: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    /// Where the plugins shipped with the executable are: `../plugins` beside its folder (so
    /// build/bin/spanhostd finds build/plugins), or `../lib/spanhost/plugins` (what `make
    /// install` lays out: /usr/local/bin and /usr/local/lib/spanhost/plugins).
    public static var shippedDirectory: String {
        let prefix = (executableDirectory as NSString).deletingLastPathComponent as NSString
        let beside = prefix.appendingPathComponent("plugins")
        let installed = prefix.appendingPathComponent("lib/spanhost/plugins")
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: beside, isDirectory: &isDirectory),
           FileManager.default.fileExists(atPath: installed, isDirectory: &isDirectory), isDirectory.boolValue {
            return installed
        }
        return beside
    }

    /// The plugin files in `directories`, by type name, first directory first: listed, not opened.
    public static func files(in directories: [String]) -> [(name: String, path: String)] {
        var seen = Set<String>()
        var result: [(name: String, path: String)] = []
        for directory in directories {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".so") }.sorted()
            for file in names where seen.insert(file).inserted {
                result.append((String(file.dropLast(3)), (directory as NSString).appendingPathComponent(file)))
            }
        }
        return result
    }

    /// Loads one file through its content-addressed copy.
    /// Opens the file itself, with no cache copy: for one-shot tools (`spanhost plugin-test`),
    /// where nothing replaces the file while it is loaded, a crash then names the author's file,
    /// and nothing is left behind in a temporary directory.
    public static func loadInPlace(path: String) throws -> PluginLibrary {
        var digest = [CChar](repeating: 0, count: 65)
        guard sh_sha256_file(path, &digest) == 0 else {
            throw PluginLoadError.unreadable(file: path, reason: String(cString: strerror(errno)))
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return try PluginLibrary(sourcePath: path, loadedPath: absolute, sha256: String(nulTerminated: digest))
    }

    public static func load(path: String, cacheDirectory: String, pin: String? = nil, requirePin: Bool = false,
                            quarantine: Quarantine = Quarantine()) throws -> PluginLibrary {
        var digest = [CChar](repeating: 0, count: 65)
        guard sh_sha256_file(path, &digest) == 0 else {
            throw PluginLoadError.unreadable(file: path, reason: String(cString: strerror(errno)))
        }
        let sha256 = String(nulTerminated: digest)
        if let pin, pin != sha256 { throw PluginLoadError.pinMismatch(file: path, expected: pin, actual: sha256) }
        if requirePin && pin == nil { throw PluginLoadError.unpinned(file: path, actual: sha256) }
        if let entry = quarantine.entry(sha256: sha256) {
            throw PluginLoadError.quarantined(file: path, plugin: entry.plugin, reason: entry.reason)
        }
        if let library = loaded.withLock({ $0[sha256] }) { return library }

        let copy = (cacheDirectory as NSString).appendingPathComponent("\(sha256).so")
        let fm = FileManager.default
        do {
            // Private to this user: created 0700, and refused if anyone else could write to it.
            try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw PluginLoadError.unreadable(file: path, reason: "cannot create the plugin cache \(cacheDirectory): \(error)")
        }
        if let problem = FileSafety.problem(cacheDirectory, isDirectory: true) {
            throw PluginLoadError.unsafe(file: path, reason: "plugin cache: \(problem)")
        }
        // A copy already there is loaded only if its bytes are the ones hashed: a file planted
        // under that name is replaced.
        if fm.fileExists(atPath: copy) {
            var cached = [CChar](repeating: 0, count: 65)
            if sh_sha256_file(copy, &cached) != 0 || String(nulTerminated: cached) != sha256 { try? fm.removeItem(atPath: copy) }
        }
        if !fm.fileExists(atPath: copy) {
            do {
                let temp = copy + ".tmp.\(getpid())"
                try? fm.removeItem(atPath: temp)
                try fm.copyItem(atPath: path, toPath: temp)
                var copied = [CChar](repeating: 0, count: 65)
                guard sh_sha256_file(temp, &copied) == 0, String(nulTerminated: copied) == sha256 else {
                    try? fm.removeItem(atPath: temp)
                    throw PluginLoadError.unreadable(file: path, reason: "the file changed while it was copied to the cache")
                }
                guard rename(temp, copy) == 0 else { throw CocoaError(.fileWriteUnknown) }
            } catch let error as PluginLoadError {
                throw error
            } catch {
                throw PluginLoadError.unreadable(file: path, reason: "cannot copy to \(copy): \(error)")
            }
        }
        let library = try PluginLibrary(sourcePath: path, loadedPath: copy, sha256: sha256)
        loaded.withLock { $0[sha256] = library }
        return library
    }
}

/// Who could change a plugin file or a directory plugins are loaded from.
enum FileSafety {
    /// Why `path` is not safe to load code from, or nil: it must belong to this user or root and
    /// not be writable by group or others (a directory with the sticky bit, like /tmp, is not
    /// enough either: anyone may create a name in it).
    static func problem(_ path: String, isDirectory: Bool) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }  // missing: reported where it is read
        let owner = st.st_uid
        if owner != getuid() && owner != 0 {
            return "\(path) belongs to user \(owner), not to this user (\(getuid())) or root"
        }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            let what = isDirectory ? "directory" : "file"
            return "\(what) \(path) is writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod go-w it"
        }
        return nil
    }
}
