import ArgumentParser
import Foundation
import Logging
import SpanhostConfig
import SpanhostServer

@main
struct Spanhostd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spanhostd",
        abstract: "Receives OpenTelemetry spans over HTTP and routes them through plugin pipelines.")

    @Option(name: .long, help: "YAML config file (Collector layout). Without it, an embedded default runs.")
    var config: String?

    @Flag(name: .long, help: "Validate the config and plugins, then exit.")
    var check = false

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["SPANHOST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            return handler
        }
        let logger = Logger(label: "spanhostd")
        let path = config
        // Read at start and again on every reload.
        let source: ConfigSource = {
            let text: String
            do {
                text = try path.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ServiceConfig.embeddedDefault
            } catch {
                throw ConfigError("", "cannot read \(path ?? "config"): \(error.localizedDescription)")
            }
            return try ServiceConfig.parse(yaml: text, environment: ProcessInfo.processInfo.environment)
        }
        let firstConfig: ServiceConfig
        do {
            firstConfig = try source()
        } catch {
            throw ValidationError("invalid config\(config.map { " \($0)" } ?? ""): \(error)")
        }
        let cacheDir = firstConfig.pluginCacheDir ?? "\(NSTemporaryDirectory())spanhost-\(getuid())/plugin-cache"

        let server: Server
        do {
            server = try Server(config: source, pluginsDir: { $0.pluginsDir ?? Self.defaultPluginsDir() }, cacheDir: cacheDir,
                                logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(2)
        }
        if check {
            print("config and plugins are valid")
            _ = await server.shutdown()
            return
        }
        try await server.start()
        let hangups = Self.signalStream(SIGHUP)
        let reloads = Task {
            for await _ in hangups { await server.reload(trigger: "SIGHUP") }
        }
        await Self.waitForTermination()
        reloads.cancel()
        logger.info("shutting down")
        let undelivered = await server.shutdown()
        if undelivered > 0 { throw ExitCode(1) }
    }

    /// `../plugins` beside the executable's folder, so build/bin/spanhostd finds build/plugins.
    static func defaultPluginsDir() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let bin = (exe as NSString).deletingLastPathComponent
        return ((bin as NSString).deletingLastPathComponent as NSString).appendingPathComponent("plugins")
    }

    /// Every delivery of `sig`, as a stream. Deliveries that arrive while one is being handled
    /// are kept (bufferingNewest(1)): a SIGHUP during a reload causes one more reload.
    static func signalStream(_ sig: Int32) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { continuation.yield() }
        source.resume()
        Once.keep(source)
        return stream
    }

    /// Returns on SIGTERM or SIGINT.
    static func waitForTermination() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = Once(continuation)
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { once.fire() }
                source.resume()
                Once.keep(source)
            }
        }
    }
}

/// Resumes a continuation at most once, and keeps signal sources alive.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

    func fire() {
        lock.withLock {
            continuation?.resume()
            continuation = nil
        }
    }

    static func keep(_ source: any DispatchSourceSignal) { sources.append(source) }
}


