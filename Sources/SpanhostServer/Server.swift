import CSpanhost
import Foundation
import Logging
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostPipeline
import SpanhostQueues
import SpanhostPluginHost
import SpanhostReceivers
import Synchronization

/// A running spanhostd, put together from its parts: the current generation of pipelines, the
/// receivers feeding it (ReceiverRegistry), reloads and shutdown (ReloadCoordinator), and the
/// admin endpoint (AdminServer).
public final class Server: Sendable {
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    /// Plugin calls run here, never on an event loop.
    private let pool: NIOThreadPool
    private let current: CurrentGeneration
    private let receivers: ReceiverRegistry
    private let coordinator: ReloadCoordinator
    private let metrics: MetricsEndpoints
    private let admin = AdminSlot()
    private let trimmer = MemoryTrimmer()
    private let handoff: WorkerHandoff?

    /// Loads plugins and builds every component. Nothing listens yet. With `preflightArguments`
    /// (what makes a `spanhostd` child read the same config), every reload first creates the
    /// new config's plugins in such a child.
    public init(config loadConfig: @escaping ConfigSource, pluginDirs: @escaping @Sendable (ServiceConfig) -> [String],
                cacheDir: String, preflightArguments: [String]?, handoff: WorkerHandoff? = nil, logger: Logger) throws {
        self.logger = logger
        self.handoff = handoff
        // Handed-over descriptors stay ours: children (exec notifiers, preflight) must not inherit them.
        let handed = (handoff.map { Array($0.listeners.values) } ?? []) + (handoff?.crashRecordFD.map { [$0] } ?? [])
        for fd in handed {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        // A plugin that crashes the process is named: in the supervisor's record, or on stderr.
        sh_crash_records_install(handoff?.crashRecordFD ?? STDERR_FILENO)
        let quarantine = handoff?.quarantineFile
        DiskQueue.previousProcessCrashed(in: handoff?.crashedComponent)
        let config = try loadConfig()
        _ = try ReceiverSettings.used(in: config)
        let catalog = PluginCatalog.load(config.pluginNames, from: pluginDirs(config), cacheDirectory: cacheDir, pins: config.pluginPins, requirePins: config.requirePins,
                                         quarantine: Quarantine.read(quarantine), logger: logger)
        let generation = try Generation(config: config, catalog: catalog)
        generation.logQuarantine(logger)
        current = CurrentGeneration(generation)
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        pool = NIOThreadPool(numberOfThreads: max(4, System.coreCount * 2))
        pool.start()
        receivers = ReceiverRegistry(group: group, pool: pool, current: current, inherited: handoff?.listeners ?? [:], logger: logger)
        metrics = MetricsEndpoints(current: current, group: group, logger: logger)
        coordinator = ReloadCoordinator(config: config, loadConfig: loadConfig, pluginDirs: pluginDirs, cacheDir: cacheDir,
                                        preflightArguments: preflightArguments, quarantineFile: quarantine, current: current, receivers: receivers, logger: logger)
    }

    /// Starts the generation, binds receivers and the admin endpoint.
    public func start() async throws {
        try await coordinator.start()
        try await metrics.apply(coordinator.currentConfig, strict: true)
        // Spans processors held when the previous process was killed go back to them.
        HeldSpanReplay.start(current, logger: logger)
        let server = try await AdminServer.start(
            workerSocket: handoff?.adminSocket, config: coordinator.currentConfig, group: group,
            status: StatusSource(current: current, receivers: receivers, coordinator: coordinator)
        ) { [self] in await reload(trigger: "admin") }
        admin.set(server)
        trimmer.start()
        logger.info("admin listening", metadata: ["endpoint": "\(server.description)"])
    }

    /// Re-reads the config and swaps in a new generation if it builds (see ReloadCoordinator);
    /// the admin endpoint's token file is read again too.
    @discardableResult
    public func reload(trigger: String) async -> ReloadLog.Entry {
        let entry = await coordinator.reload(trigger: trigger)
        if entry.ok { try? await metrics.apply(coordinator.currentConfig, strict: false) }
        do { try admin.current?.reloadToken() } catch {
            logger.error("admin.auth: keeping the tokens in use", metadata: ["error": "\(error)"])
        }
        return entry
    }

    /// Stops taking data, drains, and shuts every component down. Returns what became of every
    /// span accepted since start.
    public func shutdown() async -> DeliveryReport {
        let report = await coordinator.shutdown()
        if report.lostSpans > 0 {
            logger.error("shutdown finished: \(report.lostSpans) accepted spans were lost", metadata: ["delivery": "\(report.summary)"])
        } else {
            logger.info("shutdown finished: no accepted span was lost", metadata: ["delivery": "\(report.summary)"])
        }
        await admin.take()?.close()
        await metrics.close()
        trimmer.stop()
        pool.shutdownGracefully { _ in }  // not awaited: a thread stuck in a hung plugin never returns
        try? await group.shutdownGracefully()
        return report
    }
}

/// The admin server, once started.
private final class AdminSlot: Sendable {
    private let server = Mutex<AdminServer?>(nil)
    func set(_ server: AdminServer) { self.server.withLock { $0 = server } }
    var current: AdminServer? { server.withLock { $0 } }
    func take() -> AdminServer? { server.withLock { server in defer { server = nil }; return server } }
}
