import Foundation
import Logging
import SpanhostConfig
import SpanhostPipeline
import SpanhostPluginHost
import SpanhostReceivers

/// `spanhostd --check`: validates a config and the plugin settings it names without side
/// effects in the calling process. Host settings are checked here; plugin settings are checked
/// by running each plugin's create (never start) in a child `spanhostd --preflight`, with a
/// throw-away plugin cache, so a plugin that crashes or aborts in create kills only the child,
/// and files or connections a create makes end with it.
public enum ConfigCheck {
    /// What `--check` came to.
    public enum Outcome: Equatable {
        case valid
        case invalid(String)
    }

    /// The line a preflight child prints before creating each component, so the parent can
    /// name the one that was being created when the child died.
    static let progressPrefix = "preflight: creating "

    /// Runs in the parent: checks host settings, then the plugins in a child process.
    public static func run(config: ServiceConfig, childArguments: [String]) -> Outcome {
        do {
            // Certificates, keys and token files must load, as the receivers will load them.
            _ = try ServerSecurity.load(for: config)
            if let id = config.adminAuth, let auth = try config.authenticator(id, path: "admin") {
                _ = try BearerTokenAuthenticator(auth, path: "extensions.\(id)")
            }
        } catch {
            return .invalid("\(error)")
        }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = childArguments + ["--preflight"]
        // Only the child's verdict (written bare, not as a log line) reaches the parent's answer:
        // the log lines of loading would put a time stamp in it and say the reason twice.
        child.environment = ProcessInfo.processInfo.environment.merging(["SPANHOST_LOG_LEVEL": "critical"]) { _, new in new }
        let out = Pipe()
        let err = Pipe()
        child.standardOutput = out
        child.standardError = err
        do {
            try child.run()
        } catch {
            return .invalid("cannot start the plugin check: \(error)")
        }
        // Both pipes are read together: a child that fills one while the other is read to its
        // end would wait for the parent forever, and the parent for it.
        let (progressBytes, errors, finished) = readBoth(out.fileHandleForReading.fileDescriptor, err.fileHandleForReading.fileDescriptor,
                                                         until: .now + config.preflightTimeout)
        if !finished { kill(child.processIdentifier, SIGKILL) }
        child.waitUntilExit()
        let progress = String(decoding: progressBytes, as: UTF8.self)
        let last = progress.split(separator: "\n").last { $0.hasPrefix(progressPrefix) }
            .map { String($0.dropFirst(progressPrefix.count)) } ?? "a plugin"
        if !finished {
            let limit = config.preflightTimeout
            return .invalid("the plugin check did not finish within \(limit) (service.preflight_timeout): \(last) was still being created")
        }
        let message = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if child.terminationReason == .uncaughtSignal {
            return .invalid("\(last) crashed in create with signal \(child.terminationStatus) (\(signalName(child.terminationStatus)))")
        }
        return child.terminationStatus == 0 ? .valid : .invalid(message.isEmpty ? "plugin check failed" : message)
    }

    /// Reads two pipes until both end or `deadline` passes; `finished` says which.
    static func readBoth(_ first: CInt, _ second: CInt, until deadline: ContinuousClock.Instant)
        -> (first: [UInt8], second: [UInt8], finished: Bool) {
        var data: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while fds.contains(where: { $0.fd >= 0 }) {
            let left = deadline - .now
            guard left > .zero else { return (data[0], data[1], false) }
            let ms = Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000, 1000))
            let ready = poll(&fds, nfds_t(fds.count), max(ms, 1))
            if ready < 0 && errno != EINTR { break }
            for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[index].fd, $0.baseAddress, $0.count) }
                if n > 0 { data[index].append(contentsOf: chunk[0..<n]) } else if n == 0 || errno != EINTR { fds[index].fd = -1 }
            }
        }
        return (data[0], data[1], true)
    }

    /// Runs in the child: loads the plugins into `cacheDir` and creates every component once.
    public static func preflight(config: ServiceConfig, pluginDirs: [String], cacheDir: String, logger: Logger) throws {
        // A worker's child skips the plugins its supervisor quarantined, as the worker will.
        let quarantine = Quarantine.read(ProcessInfo.processInfo.environment[WorkerHandoff.quarantineVariable])
        let catalog = PluginCatalog.load(config.pluginNames, from: pluginDirs, cacheDirectory: cacheDir, pins: config.pluginPins, requirePins: config.requirePins,
                                         quarantine: quarantine, logger: logger)
        try Generation.validate(config: config, catalog: catalog) { component, library in
            print("\(progressPrefix)\(component) (plugin \(library.name) \(library.version), \(library.sourcePath), sha256 \(library.sha256))")
            fflush(nil)  // every stream: names no C global
        }
    }

    /// "SIGSEGV" and the like, for messages.
    public static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGSEGV: return "SIGSEGV"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGILL: return "SIGILL"
        case SIGFPE: return "SIGFPE"
        case SIGKILL: return "SIGKILL"
        default: return "signal \(signal)"
        }
    }
}
