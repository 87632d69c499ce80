import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostQueues
import SpanhostPlugins
import SpanhostReceivers

/// Where a server's config comes from; called again on every reload.
public typealias ConfigSource = @Sendable () throws -> ServiceConfig

/// A running spanhostd: the current generation of pipelines, the receivers feeding it, the admin
/// endpoint, and hot reload.
public final class Server: @unchecked Sendable {
    private let loadConfig: ConfigSource
    private let pluginsDir: String
    private let cacheDir: String
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    /// Plugin calls run here, never on an event loop.
    private let pool: NIOThreadPool
    private let accepting = Flag(true)
    private let reloads = ReloadLog()
    /// Serializes reloads and shutdown; a trigger during a reload waits its turn.
    private let reloadTurn = Turnstile()

    private let stateLock = NSLock()
    private let current: CurrentGeneration
    private var config: ServiceConfig
    private var listeners: [Endpoint: Listener] = [:]
    private var receiverCounters: [ComponentID: ReceiverCounters] = [:]
    private var kafkaReceivers: [ComponentID: KafkaReceiver] = [:]
    private var admin: HTTPServer?
    /// What components retired by reloads did with the spans they accepted.
    private var retiredDelivery = DeliveryReport()

    /// One bound receiver endpoint; its handler is replaced by reloads.
    final class Listener: @unchecked Sendable {
        let lock = NSLock()
        var handler: any ReceiverHandler
        var server: HTTPServer?
        init(handler: any ReceiverHandler) { self.handler = handler }
        var current: any ReceiverHandler { lock.withLock { handler } }
    }

    /// A configured receiver: one of the built-in types.
    public enum ReceiverSettings {
        case otlp(OTLPReceiverSettings)
        case zipkin(ZipkinReceiverSettings)
        case kafka(KafkaReceiverSettings)

        /// The HTTP endpoint it listens on; nil for receivers that consume (kafka).
        var endpoint: Endpoint? {
            switch self {
            case .otlp(let s): return s.endpoint
            case .zipkin(let s): return s.endpoint
            case .kafka: return nil
            }
        }
    }

    /// Loads plugins and builds every component. Nothing listens yet.
    public init(config loadConfig: @escaping ConfigSource, pluginsDir: @escaping @Sendable (ServiceConfig) -> String,
                cacheDir: String, logger: Logger) throws {
        self.loadConfig = loadConfig
        self.logger = logger
        self.cacheDir = cacheDir
        let config = try loadConfig()
        self.pluginsDir = pluginsDir(config)
        _ = try Self.receiverSettings(config)
        let catalog = PluginCatalog.scan(directory: self.pluginsDir, cacheDirectory: cacheDir, pins: config.pluginPins, logger: logger)
        let generation = try Generation(config: config, catalog: catalog)
        self.config = config
        self.current = CurrentGeneration(generation)
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        pool = NIOThreadPool(numberOfThreads: max(4, System.coreCount * 2))
        pool.start()
    }

    /// Each used receiver's settings, checked: built-in types only, one receiver per endpoint.
    public static func receiverSettings(_ config: ServiceConfig) throws -> [ComponentID: ReceiverSettings] {
        var result: [ComponentID: ReceiverSettings] = [:]
        var endpoints: [Endpoint: ComponentID] = [:]
        let used = Set(config.pipelines.flatMap(\.receivers))
        for receiver in config.receivers {
            let path = "receivers.\(receiver.id)"
            let settings: ReceiverSettings
            switch receiver.id.type {
            case "otlp": settings = .otlp(try OTLPReceiverSettings(settings: receiver.settings, path: path))
            case "zipkin": settings = .zipkin(try ZipkinReceiverSettings(settings: receiver.settings, path: path))
            case "kafka": settings = .kafka(try KafkaReceiverSettings(settings: receiver.settings, path: path))
            default: throw ConfigError(path, "unknown receiver type '\(receiver.id.type)'; built-in receivers: otlp, zipkin, kafka")
            }
            guard used.contains(receiver.id) else { continue }
            if let endpoint = settings.endpoint {
                if let other = endpoints[endpoint] {
                    throw ConfigError("\(path) endpoint", "\(endpoint) is already used by receivers.\(other)")
                }
                endpoints[endpoint] = receiver.id
            }
            result[receiver.id] = settings
        }
        return result
    }

    /// Starts the generation, binds receivers and the admin endpoint.
    public func start() async throws {
        _ = current.swap(to: current.value)  // activates the first generation
        try await bindReceivers(for: config)
        try swapKafkaReceivers(try prepareKafkaReceivers(for: config), config: config)
        let adminEndpoint = config.adminEndpoint
        admin = try await HTTPServer.start(host: adminEndpoint.host, port: adminEndpoint.port, maxBodyBytes: { 1 << 16 },
                                           group: group) { [self] request, loop in adminRoute(request, loop) }
        logger.info("admin listening", metadata: ["endpoint": "\(adminEndpoint.host):\(admin?.localPort ?? 0)"])
    }

    /// Binds endpoints that `config` has and no listener serves yet, and points every listener
    /// at its receiver's handler. Returns the newly bound endpoints.
    @discardableResult
    private func bindReceivers(for config: ServiceConfig) async throws -> [Endpoint] {
        let settings = try Self.receiverSettings(config)
        var bound: [Endpoint] = []
        do {
            for (id, receiver) in settings.sorted(by: { $0.key.description < $1.key.description }) {
                guard let endpoint = receiver.endpoint,
                      let handler = makeHandler(id: id, settings: receiver, memoryLimit: config.memoryLimitBytes) else { continue }
                if let listener = stateLock.withLock({ listeners[endpoint] }) {
                    listener.lock.withLock { listener.handler = handler }
                    continue
                }
                let listener = Listener(handler: handler)
                let pool = self.pool
                listener.server = try await HTTPServer.start(
                    host: endpoint.host, port: endpoint.port,
                    maxBodyBytes: { listener.current.maxRequestBodySize }, group: group
                ) { request, loop in listener.current.handle(request, on: loop, pool: pool) }
                stateLock.withLock { listeners[endpoint] = listener }
                bound.append(endpoint)
                logger.info("receiver listening", metadata: ["receiver": "\(id)", "endpoint": "\(endpoint.host):\(listener.server?.localPort ?? 0)"])
            }
        } catch {
            for endpoint in bound { await closeListener(endpoint) }
            throw error
        }
        return bound
    }

    private func closeListener(_ endpoint: Endpoint) async {
        guard let listener = stateLock.withLock({ listeners.removeValue(forKey: endpoint) }) else { return }
        await listener.server?.close()
        logger.info("receiver closed", metadata: ["endpoint": "\(endpoint)"])
    }

    private func counters(for id: ComponentID) -> ReceiverCounters {
        stateLock.withLock {
            if let existing = receiverCounters[id] { return existing }
            let made = ReceiverCounters()
            receiverCounters[id] = made
            return made
        }
    }

    private func makeHandler(id: ComponentID, settings: ReceiverSettings, memoryLimit limit: Int?) -> (any ReceiverHandler)? {
        let counters = counters(for: id)
        let accepting = self.accepting
        let current = self.current
        let refusal: @Sendable () -> String? = {
            guard accepting.value else { return "spanhost is shutting down" }
            if let limit, SpanBatch.liveBytes > limit {
                return "memory limit reached: \(SpanBatch.liveBytes >> 20) MiB of spans held, limit \(limit >> 20) MiB"
            }
            return nil
        }
        let sink: BatchSink = { batch in current.consume(batch, from: id) }
        switch settings {
        case .otlp(let s): return OTLPHTTPHandler(settings: s, counters: counters, refusal: refusal, sink: sink)
        case .zipkin(let s): return ZipkinHTTPHandler(settings: s, counters: counters, refusal: refusal, sink: sink)
        case .kafka: return nil
        }
    }

    /// Kafka receivers of `config` that are not running with the same settings yet: created
    /// (not started) so a bad one fails the reload before anything changes.
    private func prepareKafkaReceivers(for config: ServiceConfig) throws -> [KafkaReceiver] {
        var made: [KafkaReceiver] = []
        do {
            for (id, receiver) in try Self.receiverSettings(config) {
                guard case .kafka(let settings) = receiver else { continue }
                if let running = stateLock.withLock({ kafkaReceivers[id] }), running.settings == settings { continue }
                let current = self.current
                made.append(try KafkaReceiver(id: id, settings: settings, counters: counters(for: id)) { batch in
                    current.consume(batch, from: id)
                })
            }
        } catch {
            for receiver in made { receiver.stop() }
            throw error
        }
        return made
    }

    /// Starts `fresh` receivers and stops running ones that `config` no longer has as they are.
    private func swapKafkaReceivers(_ fresh: [KafkaReceiver], config: ServiceConfig) throws {
        let wanted = Set(try Self.receiverSettings(config).compactMap { id, s -> ComponentID? in
            if case .kafka = s { return id } else { return nil }
        })
        let replaced = Set(fresh.map(\.id))
        let retiring = stateLock.withLock { kafkaReceivers.filter { !wanted.contains($0.key) || replaced.contains($0.key) } }
        for (id, receiver) in retiring {
            receiver.stop()
            stateLock.withLock { _ = kafkaReceivers.removeValue(forKey: id) }
            logger.info("kafka receiver stopped", metadata: ["receiver": "\(id)"])
        }
        for receiver in fresh {
            receiver.start()
            stateLock.withLock { kafkaReceivers[receiver.id] = receiver }
            logger.info("kafka receiver consuming", metadata: ["receiver": "\(receiver.id)", "topics": "\(receiver.settings.topics)"])
        }
    }

    /// Re-reads the config, rescans plugins and builds a new generation next to the running one;
    /// swaps only if everything was built. Serialized: concurrent triggers run one after another.
    @discardableResult
    public func reload(trigger: String) async -> ReloadLog.Entry {
        await reloadTurn.enter()
        let started = ContinuousClock.now
        let entry: ReloadLog.Entry
        do {
            let config = try loadConfig()
            let old = current.value
            let catalog = PluginCatalog.scan(directory: pluginsDir, cacheDirectory: cacheDir, pins: config.pluginPins, logger: logger)
            let next = try Generation(config: config, catalog: catalog, previous: old)
            let newEndpoints: [Endpoint]
            let freshKafka: [KafkaReceiver]
            do {
                freshKafka = try prepareKafkaReceivers(for: config)
                do {
                    newEndpoints = try await bindReceivers(for: config)
                } catch {
                    for receiver in freshKafka { receiver.stop() }
                    throw error
                }
            } catch {
                _ = next.retire(keeping: old, deadline: .now)  // discard what was built for it
                throw error
            }
            _ = current.swap(to: next)
            try swapKafkaReceivers(freshKafka, config: config)
            let keep = Set(try Self.receiverSettings(config).values.compactMap(\.endpoint))
            for endpoint in stateLock.withLock({ Array(listeners.keys) }) where !keep.contains(endpoint) {
                await closeListener(endpoint)
            }
            stateLock.withLock { self.config = config }
            let retired = old.retire(keeping: next, deadline: .now + config.shutdownTimeout)
            stateLock.withLock { retiredDelivery.add(retired) }
            let closed = PluginCatalog.closeUnused(keeping: catalog)
            let message = "carried over \(next.carriedOver) components; bound \(newEndpoints.count) new endpoints; "
                + "\(retired.lostSpans) spans lost by retired components; closed \(closed) unused plugin images"
            entry = reloads.record(trigger: trigger, ok: true, message: message, took: .now - started)
            logger.info("reload succeeded", metadata: ["trigger": "\(trigger)", "detail": "\(message)"])
        } catch {
            entry = reloads.record(trigger: trigger, ok: false, message: "\(error)", took: .now - started)
            logger.error("reload failed; the running pipelines are unchanged", metadata: ["trigger": "\(trigger)", "error": "\(error)"])
        }
        await reloadTurn.leave()
        return entry
    }

    /// Stops taking data (receivers answer 503), flushes processors, drains exporters until
    /// the configured deadline, and shuts every plugin instance down. Returns what became of
    /// every span accepted since start (retired components included).
    public func shutdown() async -> DeliveryReport {
        // Takes the reload turn and keeps it: a reload in progress finishes first, none starts after.
        await reloadTurn.enter()
        accepting.value = false
        for receiver in stateLock.withLock({ Array(kafkaReceivers.values) }) { receiver.stop() }
        var report = current.close().shutdown(timeout: stateLock.withLock { config.shutdownTimeout })
        report.add(stateLock.withLock { retiredDelivery })
        for endpoint in stateLock.withLock({ Array(listeners.keys) }) { await closeListener(endpoint) }
        if report.lostSpans > 0 {
            logger.error("shutdown finished: \(report.lostSpans) accepted spans were lost", metadata: ["delivery": "\(report.summary)"])
        } else {
            logger.info("shutdown finished: no accepted span was lost", metadata: ["delivery": "\(report.summary)"])
        }
        await admin?.close()
        pool.shutdownGracefully { _ in }  // not awaited: a thread stuck in a hung plugin never returns
        try? await group.shutdownGracefully()
        return report
    }

    private func adminRoute(_ request: HTTPRequest, _ loop: any EventLoop) -> EventLoopFuture<HTTPResponse> {
        switch (request.method, request.path) {
        case (.GET, "/healthz"):
            return loop.makeSucceededFuture(.text(.ok, accepting.value ? "ok" : "shutting down"))
        case (.GET, "/status"):
            return loop.makeSucceededFuture(json(status()))
        case (.GET, "/metrics"):
            return loop.makeSucceededFuture(HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4"],
                                                         body: status().prometheusText()))
        case (.POST, "/-/reload"):
            let promise = loop.makePromise(of: HTTPResponse.self)
            Task {
                let entry = await self.reload(trigger: "admin")
                var response = self.json(entry)
                if !entry.ok { response.status = .badRequest }
                promise.succeed(response)
            }
            return promise.futureResult
        default:
            return loop.makeSucceededFuture(.text(.notFound, "unknown admin path; try GET /healthz, GET /status, GET /metrics or POST /-/reload"))
        }
    }

    private func json<T: Encodable>(_ value: T) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let body = (try? encoder.encode(value)) ?? Data()
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
    }

    func status() -> StatusReport {
        let generation = current.value
        let current = Set(generation.catalog.libraries.values.map(\.sha256))
        func component(_ instance: PluginInstance, queueDepth: Int? = nil, queue: QueueStats? = nil,
                       delay: (p50: Double, p99: Double)? = nil) -> StatusReport.Component {
            .init(id: "\(instance.id)", kind: instance.library.kind.rawValue, instance: instance.uid, health: instance.health,
                  plugin: "\(instance.library.name)@\(instance.library.sha256.prefix(12))",
                  counters: instance.counters.snapshot, queueDepth: queueDepth, queue: queue,
                  notifyDelayMs: delay.map { ["p50": $0.p50, "p99": $0.p99] })
        }
        return StatusReport(
            plugins: PluginCatalog.loadedImages.sorted { ($0.name, $0.sourcePath) < ($1.name, $1.sourcePath) }.map {
                .init(name: $0.name, kind: $0.kind.rawValue, version: $0.version, abi: "\($0.abiMajor).\($0.abiMinor)",
                      file: $0.sourcePath, loadedFrom: $0.loadedPath, sha256: $0.sha256,
                      state: current.contains($0.sha256) ? "current" : "retained", instances: $0.instanceCount,
                      unloadable: $0.isUnloadable)
            },
            refusedPlugins: generation.catalog.refused.map { .init(file: $0.file, reason: $0.error.description) },
            receivers: stateLock.withLock { receiverCounters }.sorted { $0.key.description < $1.key.description }.map {
                .init(id: "\($0.key)", counters: $0.value.snapshot)
            },
            exporters: generation.exporters.map { component($0.instance, queueDepth: $0.queueDepth, queue: $0.queue?.stats) },
            notifiers: generation.notifiers.map { component($0.instance, queueDepth: $0.queueDepth, delay: $0.delayPercentiles) },
            pipelines: generation.pipelines.map { pipeline in
                .init(id: pipeline.id, processors: pipeline.processors.map { component($0) },
                      exporters: pipeline.exporters.map { "\($0.id)" }, notifiers: pipeline.notifiers.map { "\($0.id)" },
                      rules: pipeline.rules.counters)
            },
            reloads: reloads.summary,
            memory: .init(batchBytes: SpanBatch.liveBytes, limitBytes: stateLock.withLock { config.memoryLimitBytes }))
    }
}

/// The JSON document served at /status.
struct StatusReport: Encodable {
    struct Plugin: Encodable {
        var name, kind, version, abi, file, loadedFrom, sha256: String
        /// "current" (in the plugin directory now) or "retained" (an older image still mapped).
        var state: String
        var instances: Int
        var unloadable: Bool
    }
    struct Refused: Encodable {
        var file, reason: String
    }
    struct Receiver: Encodable {
        var id: String
        var counters: [String: Int64]
    }
    struct Component: Encodable {
        var id, kind: String
        /// Process-unique instance number: unchanged when a reload carries the component over.
        var instance: Int
        var health: String
        var plugin: String
        var counters: [String: Int64]
        var queueDepth: Int?
        /// Exporters: the sending queue (depth, spans, oldest item age, bytes in memory or on disk).
        var queue: QueueStats?
        /// Notifiers: milliseconds from an event's first occurrence to the notify call.
        var notifyDelayMs: [String: Double]?
    }
    struct PipelineStatus: Encodable {
        var id: String
        var processors: [Component]
        var exporters: [String]
        var notifiers: [String]
        /// Per rule: events counted, fired, resolved, refused.
        var rules: [String: Int64]
    }
    var plugins: [Plugin]
    var refusedPlugins: [Refused]
    var receivers: [Receiver]
    var exporters: [Component]
    var notifiers: [Component]
    var pipelines: [PipelineStatus]
    var reloads: ReloadLog.Summary
    struct Memory: Encodable {
        /// Bytes held by span batches in memory (queues, processors, requests in flight).
        var batchBytes: Int
        var limitBytes: Int?
    }
    var memory: Memory
}

/// Outcomes of reloads, for /status and the admin reload answer.
public final class ReloadLog: @unchecked Sendable {
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
    }
    private let lock = NSLock()
    private var succeeded = 0
    private var failed = 0
    private var last: Entry?

    func record(trigger: String, ok: Bool, message: String, took: Duration) -> Entry {
        let entry = Entry(time: ISO8601DateFormatter().string(from: Date()), trigger: trigger, ok: ok, message: message,
                          tookMs: Int(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000))
        lock.withLock {
            if ok { succeeded += 1 } else { failed += 1 }
            last = entry
        }
        return entry
    }

    var summary: Summary { lock.withLock { Summary(succeeded: succeeded, failed: failed, last: last) } }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag: Bool
    init(_ value: Bool) { flag = value }
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}

extension Endpoint: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(port)
    }
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
