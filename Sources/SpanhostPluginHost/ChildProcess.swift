import CSpanhost
import Foundation

/// Starting and reaping the host's own children (the supervisor's worker, an isolated plugin's
/// process), and moving bytes over the sockets they share.
public enum ChildProcess {
    /// How a child ended.
    public enum Exit: Equatable, CustomStringConvertible {
        case code(Int32)
        case signal(Int32)

        public var description: String {
            switch self {
            case .code(let code): return "exited with status \(code)"
            case .signal(let signal): return "crashed with signal \(signal)"
            }
        }
    }

    /// Starts this executable with `arguments` (argv[0] first) and the current environment
    /// plus `environment`, giving it `descriptors[i]` as descriptor 3+i. Returns the pid, or
    /// -1 with errno set.
    public static func spawnSelf(arguments: [String], environment: [String: String], descriptors: [Int32]) -> pid_t {
        let env = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        return sh_spawn("/proc/self/exe", argv, envp, descriptors, Int32(descriptors.count))
    }

    /// Waits for `pid` to end.
    public static func wait(_ pid: pid_t) -> Exit {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFSIGNALED / WTERMSIG / WEXITSTATUS, spelled out (they are macros).
        let signal = status & 0x7f
        if signal != 0 && signal != 0x7f { return .signal(signal) }
        return .code((status >> 8) & 0xff)
    }

    /// Writes all of `bytes` to a socket; false if the other side is gone (never SIGPIPE).
    public static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads exactly `count` bytes; nil if the other side is gone first.
    public static func receive(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = buffer[offset...].withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            offset += n
        }
        return buffer
    }
}
