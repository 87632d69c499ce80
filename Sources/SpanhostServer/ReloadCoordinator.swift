import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostPluginHost
import Synchronization

/// Where a server's config comes from; called again on every reload.
public typealias ConfigSource = @Sendable () throws -> ServiceConfig

/// Runs reloads and the shutdown, one at a time.
///
/// The rules of a reload, which is one transaction:
/// 1. **Build beside.** The new config is read and checked, and every plugin instance it names
///    is created once in a child process (`spanhostd --preflight`, as `--check` does), so a
///    plugin that crashes or aborts in its constructor or create fails the reload, not the
///    server. Only then are plugins scanned here and the whole new generation built next to
///    the running one: instances created and started,
///    exporter and notifier runners made (queues opened, not re-limited), receivers prepared
///    (new endpoints bound, new Kafka consumers created, not consuming). Components whose
///    plugin file and settings are unchanged are taken over, not rebuilt.
/// 2. **Nothing shared changes before commit.** Listeners keep their handlers, a shared disk
///    queue keeps its limits, running consumers keep consuming, rule engines keep their state.
///    Any failure in step 1 discards what was built for it and leaves the running generation
///    exactly as it was; the failure is logged, counted and answered.
/// 3. **Commit in one step.** The current generation is swapped; only then do listeners take
///    their new handlers, new runners apply their queue limits and start, and consumers are
///    replaced.
/// 4. **Retire the old.** Components the new generation did not take over flush what they
///    hold into the exporters' queues and drain until `shutdown_timeout`; what they could not
///    deliver is kept on disk or counted as lost, and added to the shutdown report.
/// 5. **One at a time.** Reloads and the shutdown take turns in arrival order: a trigger
///    during a reload waits, and no reload starts after shutdown began.
///
/// The blocking parts (plugin create and destroy, draining, Kafka stop) run on threads of
/// their own, never on the Swift concurrency pool.
final class ReloadCoordinator: Sendable {
    private let loadConfig: ConfigSource
    private let pluginDirs: @Sendable (ServiceConfig) -> [String]
    private let cacheDir: String
    /// Arguments that make a `spanhostd --preflight` child read the same config; nil skips
    /// the child (tests that build a server in-process).
    private let preflightArguments: [String]?
    private let quarantineFile: String?
    private let logger: Logger
    private let current: CurrentGeneration
    private let receivers: ReceiverRegistry
    let log = ReloadLog()
    private let turn = Turnstile()

    /// The config of the current generation, and what components retired by reloads did
    /// with the spans they accepted.
    private let state: Mutex<(config: ServiceConfig, retiredDelivery: DeliveryReport)>

    init(config: ServiceConfig, loadConfig: @escaping ConfigSource, pluginDirs: @escaping @Sendable (ServiceConfig) -> [String], cacheDir: String,
         preflightArguments: [String]?, quarantineFile: String?, current: CurrentGeneration, receivers: ReceiverRegistry,
         logger: Logger) {
        self.preflightArguments = preflightArguments
        self.quarantineFile = quarantineFile
        self.state = Mutex((config, DeliveryReport()))
        self.loadConfig = loadConfig
        self.pluginDirs = pluginDirs
        self.cacheDir = cacheDir
        self.current = current
        self.receivers = receivers
        self.logger = logger
    }

    /// The config of the current generation.
    var currentConfig: ServiceConfig { state.withLock { $0.config } }

    /// Starts the first generation and its receivers.
    func start() async throws {
        _ = current.swap(to: current.value)  // activates the first generation
        await receivers.commit(try await receivers.prepare(currentConfig))
    }

    /// Re-reads the config, rescans plugins and builds a new generation next to the running one;
    /// swaps only if everything was built (see the rules above).
    func reload(trigger: String) async -> ReloadLog.Entry {
        await turn.enter()
        let entry = await transaction(trigger: trigger)
        await turn.leave()
        return entry
    }

    private func transaction(trigger: String) async -> ReloadLog.Entry {
        let started = ContinuousClock.now
        do {
            let (config, next, old, catalog) = try await onOwnThread("reload build") { [self] in
                let config = try loadConfig()
                _ = try ReceiverSettings.used(in: config)
                if let arguments = preflightArguments,
                   case .invalid(let problem) = ConfigCheck.run(config: config, childArguments: arguments) {
                    throw ReloadError.preflightFailed(problem)
                }
                let old = current.value
                let catalog = PluginCatalog.load(config.pluginNames, from: pluginDirs(config), cacheDirectory: cacheDir, pins: config.pluginPins, requirePins: config.requirePins,
                                                 quarantine: Quarantine.read(quarantineFile), logger: logger)
                return (config, try Generation(config: config, catalog: catalog, previous: old), old, catalog)
            }
            let change: ReceiverRegistry.Change
            do {
                change = try await receivers.prepare(config)
            } catch {
                await onOwnThread("reload discard") { _ = next.retire(keeping: old, deadline: .now) }
                throw error
            }
            // Commit.
            _ = current.swap(to: next)
            await receivers.commit(change)
            state.withLock { $0.config = config }
            // Retire.
            let retired = await onOwnThread("reload retire") { old.retire(keeping: next, deadline: .now + config.shutdownTimeout) }
            state.withLock { $0.retiredDelivery.add(retired) }
            let closed = PluginCatalog.closeUnused(keeping: catalog)
            var message = "carried over \(next.carriedOver) components; bound \(change.bound.count) new endpoints; "
                + "\(retired.lostSpans) spans lost by retired components; closed \(closed) unused plugin images"
            if !next.skipped.isEmpty {
                message += "; LEFT OUT because their plugin is quarantined: \(next.skipped.joined(separator: ", "))"
            }
            if !next.refusingPipelines.isEmpty {
                message += "; REFUSING DATA because a plugin is quarantined: \(next.refusingPipelines.keys.sorted().joined(separator: ", "))"
            }
            if !next.droppingPipelines.isEmpty {
                message += "; DROPPING a quarantined exporter's share: \(next.droppingPipelines.keys.sorted().joined(separator: ", "))"
            }
            next.logQuarantine(logger)
            logger.info("reload succeeded", metadata: ["trigger": "\(trigger)", "detail": "\(message)"])
            return log.record(trigger: trigger, ok: true, message: message, took: .now - started)
        } catch {
            logger.error("reload failed; the running pipelines are unchanged", metadata: ["trigger": "\(trigger)", "error": "\(error)"])
            return log.record(trigger: trigger, ok: false, message: "\(error)", took: .now - started)
        }
    }

    /// Stops taking data (receivers answer 503), flushes processors, drains exporters until
    /// the configured deadline, and shuts every plugin instance down. Returns what became of
    /// every span accepted since start (retired components included). Takes the reload turn
    /// and keeps it: a reload in progress finishes first, none starts after.
    func shutdown() async -> DeliveryReport {
        await turn.enter()
        let timeout = currentConfig.shutdownTimeout
        var report = await onOwnThread("shutdown") { [self] in
            receivers.stopAccepting()
            return current.close().shutdown(timeout: timeout)
        }
        report.add(state.withLock { $0.retiredDelivery })
        await receivers.close()
        return report
    }
}

enum ReloadError: Error, CustomStringConvertible {
    /// The new config's plugins failed when created in the preflight child.
    case preflightFailed(String)

    var description: String {
        switch self {
        case .preflightFailed(let problem): return "the new config failed its plugin check: \(problem)"
        }
    }
}

/// Runs blocking work on a thread of its own and waits for it without holding a thread of the
/// Swift concurrency pool. Reloads and shutdown are rare, and a thread each keeps them
/// independent of pools a hung plugin call may be holding.
func onOwnThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}

func onOwnThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}

/// Outcomes of reloads, for /status and the admin reload answer.
public final class ReloadLog: Sendable {
    public struct Entry: Encodable, Sendable {
        public var time: String
        public var trigger: String
        public var ok: Bool
        public var message: String
        public var tookMs: Int
    }
    public struct Summary: Encodable, Sendable {
        var succeeded: Int
        var failed: Int
        var last: Entry?
        /// The last ten, newest first.
        var recent: [Entry]
    }
    private let kept = Mutex(Summary(succeeded: 0, failed: 0, last: nil, recent: []))

    func record(trigger: String, ok: Bool, message: String, took: Duration) -> Entry {
        let entry = Entry(time: ISO8601DateFormatter().string(from: Date()), trigger: trigger, ok: ok, message: message,
                          tookMs: Int(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000))
        kept.withLock { kept in
            if ok { kept.succeeded += 1 } else { kept.failed += 1 }
            kept.last = entry
            kept.recent = Array(([entry] + kept.recent).prefix(10))
        }
        return entry
    }

    var summary: Summary { kept.withLock { $0 } }
}

/// One at a time, in arrival order, across suspension points.
actor Turnstile {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}
