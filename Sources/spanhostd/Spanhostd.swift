import ArgumentParser
import CSpanhost
import Foundation
import Logging
import ServiceLifecycle
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostServer
import SpanhostSupervisor
import UnixSignals

@main
struct Spanhostd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spanhostd",
        abstract: "Receives OpenTelemetry spans over HTTP and routes them through plugin pipelines.",
        version: SpanhostVersion.current)

    @Option(name: .long, help: "YAML config file (Collector layout); repeat to merge several, later ones on top. Without it, an embedded default runs.")
    var config: [String] = []

    @Flag(name: .long, help: "Validate the config and plugins, then exit. Nothing is started; plugins are created in a child process.")
    var check = false

    /// The child of --check: creates every plugin instance once, then exits.
    @Flag(name: .long, help: .hidden)
    var preflight = false

    @Flag(name: .long, help: "Run the server in this process, without a supervisor (for systemd's Restart= and similar). Same as service.supervisor.enabled: false.")
    var noSupervise = false

    /// A child holding one `isolation: process` plugin.
    @Flag(name: .long, help: .hidden)
    var pluginHost = false

    /// The supervisor's child: the server itself, with sockets handed over.
    @Flag(name: .long, help: .hidden)
    var worker = false

    func run() async throws {
        if pluginHost {
            LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
            let code = IsolatedPlugin.serve(logger: Logger(label: "spanhost.plugin-host"))
            if code != 0 { throw ExitCode(code) }
            return
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["SPANHOST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            return handler
        }
        let logger = Logger(label: "spanhostd")
        let paths = config
        // Read at start and again on every reload: every file, merged in order.
        let source: ConfigSource = {
            guard !paths.isEmpty else {
                return try ServiceConfig.parse(yaml: ServiceConfig.embeddedDefault, environment: ProcessInfo.processInfo.environment)
            }
            var merged = ConfigValue.emptyMap
            var unset: [YAMLLoader.UnsetVariable] = []
            for path in paths {
                let text: String
                do {
                    text = try String(contentsOfFile: path, encoding: .utf8)
                } catch {
                    throw ConfigError("", "cannot read \(path): \(error.localizedDescription)")
                }
                let loaded: (value: ConfigValue, unset: [YAMLLoader.UnsetVariable])
                do {
                    loaded = try YAMLLoader.loadNoting(text, environment: ProcessInfo.processInfo.environment)
                } catch {
                    throw ConfigError("", "\(path): \(error)")
                }
                merged = merged.merged(with: loaded.value)
                unset += loaded.unset
            }
            do {
                return try ServiceConfig.parse(merged)
            } catch let error as ConfigError {
                throw error.naming(unset)
            }
        }
        let firstConfig: ServiceConfig
        do {
            firstConfig = try source()
        } catch {
            // One format and one exit code for every config that does not load: as --check says it.
            logger.critical("invalid: \(paths.isEmpty ? "" : paths.joined(separator: " + ") + ": ")\(error)")
            throw ExitCode(2)
        }
        // State of this instance only, in directories no other user can write.
        let stateDir = firstConfig.supervisor.stateDir
            ?? StateDirectory.defaultPath(configFiles: paths, adminEndpoint: firstConfig.adminEndpoint)
        let cacheDir = firstConfig.pluginCacheDir ?? "\(stateDir)/plugin-cache"
        if preflight {
            // A check that outlives whoever asked for it would only hold what its creates opened.
            sh_killed_with_parent()
            // A cache of its own, removed afterwards: checking leaves no files behind.
            let scratch = "\(stateDir)/check-\(getpid())"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            do {
                try StateDirectory.prepare(scratch, key: "service.supervisor.state_dir")
                try ConfigCheck.preflight(config: firstConfig, pluginDirs: Self.pluginDirs(firstConfig),
                                          cacheDir: scratch, logger: logger)
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode(2)
            }
            return
        }
        if check {
            switch ConfigCheck.run(config: firstConfig, childArguments: config.flatMap { ["--config", $0] }) {
            case .valid:
                for warning in (try? ReceiverSettings.exposureWarnings(in: firstConfig)) ?? [] { logger.warning("\(warning)") }
                print("config and plugins are valid")
                return
            case .invalid(let message):
                logger.critical("invalid: \(message)")
                throw ExitCode(2)
            }
        }

        do {
            try StateDirectory.prepare(stateDir, key: "service.supervisor.state_dir")
            try StateDirectory.prepare(cacheDir, key: "plugins.cache_dir")
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(2)
        }
        let configArguments = config.flatMap { ["--config", $0] }
        if !worker && !noSupervise && firstConfig.supervisor.enabled {
            try await supervise(firstConfig, stateDir: stateDir, arguments: configArguments, logger: logger)
            return
        }
        var handoff: WorkerHandoff?
        if worker {
            sh_die_with_parent()
            handoff = WorkerHandoff.fromEnvironment(ProcessInfo.processInfo.environment)
        }
        let server: Server
        do {
            server = try Server(config: source, pluginDirs: { Self.pluginDirs($0) }, cacheDir: cacheDir,
                                preflightArguments: configArguments, handoff: handoff, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(2)
        }
        // SIGTERM and SIGINT shut down gracefully; SIGHUP reloads.
        let service = SpanhostService(server: server, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
        // Exit 0 only when every accepted span was delivered or kept on disk.
        if await service.outcome.lost > 0 { throw ExitCode(1) }
    }

    /// Runs the supervisor until SIGTERM/SIGINT; SIGHUP reloads the worker.
    private func supervise(_ config: ServiceConfig, stateDir: String, arguments: [String], logger: Logger) async throws {
        let supervisor: Supervisor
        do {
            supervisor = try Supervisor(config: config, stateDir: stateDir, workerArguments: arguments, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(2)
        }
        let service = SupervisorService(supervisor: supervisor, logger: logger)
        // The supervisor also ends by itself (its first worker could not start): that ends the group.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let code = await service.outcome.code
        if code != 0 { throw ExitCode(code) }
    }

    /// The config's plugin directories, or the one shipped beside the executable.
    static func pluginDirs(_ config: ServiceConfig) -> [String] {
        config.pluginDirs.isEmpty ? [PluginCatalog.shippedDirectory] : config.pluginDirs
    }
}

/// The server as a service of the process's ServiceGroup: it runs until a graceful shutdown is
/// requested, reloading on every SIGHUP, then drains.
struct SpanhostService: Service {
    let server: Server
    let logger: Logger
    let outcome = Outcome()

    /// What the shutdown came to, for the exit code.
    actor Outcome {
        var lost = 0
        func set(_ value: Int) { lost = value }
    }

    func run() async throws {
        try await server.start()
        // A SIGHUP during a reload causes one more reload after it (reloads are serialized).
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            await server.reload(trigger: "SIGHUP")
        }
        logger.info("shutting down")
        await outcome.set(await server.shutdown().lostSpans)
    }
}

/// The supervisor as a service of the process's ServiceGroup: SIGHUP is passed to the worker,
/// a graceful shutdown stops the worker and takes its exit code.
struct SupervisorService: Service {
    let supervisor: Supervisor
    let logger: Logger
    let outcome = Outcome()

    actor Outcome {
        var code: Int32 = 0
        func set(_ value: Int32) { code = value }
    }

    func run() async throws {
        let supervisor = self.supervisor
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) { supervisor.reload() }
        }
        defer { signals.cancel() }
        do {
            let code = try await withGracefulShutdownHandler {
                try await supervisor.run()
            } onGracefulShutdown: {
                supervisor.stop()
            }
            await outcome.set(code)
        } catch {
            logger.critical("supervisor failed: \(error)")
            await outcome.set(2)
        }
    }
}
