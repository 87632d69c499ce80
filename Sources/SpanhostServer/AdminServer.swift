import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SpanhostConfig
import SpanhostConnectors
import SpanhostModel
import SpanhostPipeline
import SpanhostPluginHost
import SpanhostQueues
import SpanhostReceivers

/// The admin endpoint: health, the status report (JSON and Prometheus text), and reload.
final class AdminServer: Sendable {
    private enum Listeners: Sendable {
        /// A worker's socket, which only its supervisor reaches (the supervisor checks requests).
        case worker(HTTPServer)
        case own(AdminListeners)
    }
    private let listeners: Listeners

    private init(_ listeners: Listeners) { self.listeners = listeners }

    /// Where it listens, for the log.
    var description: String {
        switch listeners {
        case .worker(let server): return server.socketPath ?? ""
        case .own(let own): return "\(own.endpoint.host):\(own.tcp.localPort)" + (own.unix?.socketPath.map { " and \($0)" } ?? "")
        }
    }

    /// `workerSocket`: behind a supervisor, the Unix socket it forwards to; else the endpoints
    /// `config` sets.
    static func start(workerSocket: String?, config: ServiceConfig, group: any EventLoopGroup, status: StatusSource,
                      reload: @escaping @Sendable () async -> ReloadLog.Entry) async throws -> AdminServer {
        let routes: HTTPServer.Handler = { request, loop in route(request, loop, status: status, reload: reload) }
        if let workerSocket {
            return AdminServer(.worker(try await HTTPServer.start(.unix(path: workerSocket), maxBodyBytes: 1 << 16, group: group,
                                                                  handler: routes)))
        }
        return AdminServer(.own(try await AdminListeners.start(config: config, group: group, route: routes)))
    }

    /// Reads `admin.auth`'s token file again (on reload); the tokens in use stay if it fails.
    func reloadToken() throws {
        if case .own(let own) = listeners { try own.authenticator?.reload() }
    }

    func close() async {
        switch listeners {
        case .worker(let server): await server.close()
        case .own(let own): await own.close()
        }
    }

    private static func route(_ request: HTTPRequest, _ loop: any EventLoop, status: StatusSource,
                              reload: @escaping @Sendable () async -> ReloadLog.Entry) -> EventLoopFuture<HTTPResponse> {
        switch (request.method, request.path) {
        case (.GET, "/healthz"):
            return loop.makeSucceededFuture(.text(.ok, status.receivers.accepting.value ? "ok" : "shutting down"))
        case (.GET, "/"), (.GET, "/index.html"):
            return loop.makeSucceededFuture(HTTPResponse(status: .ok, headers: ["Content-Type": "text/html; charset=utf-8"],
                                                         body: Array(AdminPage.html(status.report()).utf8)))
        case (.GET, "/status"):
            return loop.makeSucceededFuture(json(status.report()))
        case (.GET, "/errors"):
            return loop.makeSucceededFuture(json(["signatures": status.current.value.errors.signatures()]))
        case (.POST, "/tap"):
            return loop.makeSucceededFuture(startTap(request, status.current.value))
        case (.GET, let path) where path.hasPrefix("/tap/"):
            return loop.makeSucceededFuture(pollTap(path, status.current.value))
        case (.GET, "/metrics"):
            return loop.makeSucceededFuture(HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4"],
                                                         body: status.report().prometheusText() + status.derivedMetrics()))
        case (.POST, "/-/reload"):
            let promise = loop.makePromise(of: HTTPResponse.self)
            Task {
                let entry = await reload()
                var response = json(entry)
                if !entry.ok { response.status = .badRequest }
                promise.succeed(response)
            }
            return promise.futureResult
        default:
            return loop.makeSucceededFuture(.text(.notFound, "unknown admin path; try GET /healthz, GET /status, GET /errors, GET /metrics, POST /tap or POST /-/reload"))
        }
    }

    /// POST /tap {"pipeline", "point", "condition"}: starts a live tap (see Tap) and answers its id.
    private static func startTap(_ request: HTTPRequest, _ generation: Generation) -> HTTPResponse {
        struct Ask: Decodable { var pipeline: String; var point: Int; var condition: String? }
        guard let ask = try? JSONDecoder().decode(Ask.self, from: Data(request.body.readableBytesView)) else {
            return .text(.badRequest, "expected JSON {\"pipeline\": ..., \"point\": 0, \"condition\": \"...\"}")
        }
        guard let pipeline = generation.pipelines.first(where: { $0.id == ask.pipeline }) else {
            return .text(.badRequest, "no pipeline \(ask.pipeline)")
        }
        guard (0...pipeline.processors.count).contains(ask.point) else {
            return .text(.badRequest, "point: 0 (after the receivers) to \(pipeline.processors.count) (before the exporters)")
        }
        do {
            let tap = try generation.taps.start(pipeline: ask.pipeline, point: ask.point, condition: ask.condition ?? "")
            return json(["id": tap.id])
        } catch {
            return .text(.badRequest, "\(error)")
        }
    }

    /// GET /tap/<id>/<after>: the batches the tap kept after sequence number `after`, as OTLP JSON.
    private static func pollTap(_ path: String, _ generation: Generation) -> HTTPResponse {
        struct Batch: Encodable { var seq: Int; var otlp: String }
        struct Poll: Encodable { var batches: [Batch]; var skipped: Int }
        let parts = path.split(separator: "/").map(String.init)  // ["tap", id, after]
        guard parts.count >= 2, let tap = generation.taps.tap(parts[1]) else {
            return .text(.notFound, "no such tap (it ends 30 s after its last poll); start one with POST /tap")
        }
        let (batches, skipped) = tap.poll(after: parts.count > 2 ? Int(parts[2]) ?? 0 : 0)
        return json(Poll(batches: batches.map { Batch(seq: $0.seq, otlp: $0.json) }, skipped: skipped))
    }

    private static func json<T: Encodable>(_ value: T) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let body = (try? encoder.encode(value)) ?? Data()
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
    }
}

/// Assembles the status report from the running parts.
struct StatusSource: Sendable {
    let current: CurrentGeneration
    let receivers: ReceiverRegistry
    let coordinator: ReloadCoordinator

    /// The connectors' series (service graph, span metrics), in the Prometheus text format.
    func derivedMetrics() -> [UInt8] {
        var text = PrometheusText()
        for (_, connector) in current.value.connectors { connector.families.forEach { text.write($0) } }
        return Array(text.text.utf8)
    }

    func report() -> StatusReport {
        let generation = current.value
        let current = Set(generation.catalog.libraries.values.map(\.sha256))
        func component(_ instance: PluginInstance, queueDepth: Int? = nil, queue: QueueStats? = nil,
                       delay: (p50: Double, p99: Double)? = nil) -> StatusReport.Component {
            .init(id: "\(instance.id)", kind: instance.library.kind.rawValue, instance: instance.uid, health: instance.health,
                  nonblocking: instance.nonBlocking,
                  plugin: "\(instance.library.name)@\(instance.library.sha256.prefix(12))",
                  counters: instance.counters.snapshot, gauges: instance.gauges.snapshot.nilIfEmpty, queueDepth: queueDepth, queue: queue,
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
            receivers: receivers.counterSnapshot.map { .init(id: "\($0.id)", counters: $0.counters.snapshot, group: $0.counters.groupSnapshot) },
            exporters: generation.exporters.map { component($0.instance, queueDepth: $0.queueDepth, queue: $0.queue?.stats) },
            notifiers: generation.notifiers.map {
                var c = component($0.instance, queueDepth: $0.queueDepth, delay: $0.delayPercentiles)
                c.recent = $0.recentNotifications
                return c
            },
            pipelines: generation.pipelines.map { pipeline in
                .init(id: pipeline.id,
                      receivers: generation.config.pipelines.first { $0.id == pipeline.id }?.receivers.map(\.description) ?? [],
                      processors: pipeline.processors.map { component($0) },
                      exporters: pipeline.exporters.map { "\($0.id)" }, notifiers: pipeline.notifiers.map { "\($0.id)" },
                      connectors: pipeline.connectors.map { "\($0.id)" },
                      rules: pipeline.rules.counters, refusing: pipeline.refusing,
                      droppingFor: pipeline.dropping.nilIfEmpty,
                      droppedForQuarantine: pipeline.dropping.isEmpty ? nil : pipeline.droppedForQuarantine.load(ordering: .relaxed))
            },
            connectors: generation.connectors.map(\.connector.status),
            reloads: coordinator.log.summary,
            memory: .init(batchBytes: SpanBatch.liveBytes, arenaMappedBytes: SpanBatch.arenaMappedBytes,
                          requestBodyBytes: RequestBodies.inFlightBytes, limitBytes: coordinator.currentConfig.memoryLimitBytes))
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
        /// Kafka receivers: the consumer group member.
        var group: ReceiverCounters.Group?
    }
    struct Component: Encodable {
        var id, kind: String
        /// Process-unique instance number: unchanged when a reload carries the component over.
        var instance: Int
        var health: String
        /// "declared" or "demoted" (a call took longer than the budget) for plugins that declare
        /// SPANHOST_PLUGIN_NONBLOCKING; absent for the others.
        var nonblocking: String?
        var plugin: String
        var counters: [String: Int64]
        /// Levels the plugin set with host->gauge_set (absent when it set none).
        var gauges: [String: Int64]?
        var queueDepth: Int?
        /// Exporters: the sending queue (depth, spans, oldest item age, bytes in memory or on disk).
        var queue: QueueStats?
        /// Notifiers: milliseconds from an event's first occurrence to the notify call.
        var notifyDelayMs: [String: Double]?
        /// Notifiers: the last notifications they finished with, newest first.
        var recent: [NotifierRunner.RecentNotification]?
    }
    struct PipelineStatus: Encodable {
        var id: String
        var receivers: [String]
        var processors: [Component]
        var exporters: [String]
        var notifiers: [String]
        var connectors: [String]
        /// Per rule: events counted, fired, resolved, refused.
        var rules: [String: Int64]
        /// Why every batch is answered 503 (a component's plugin is quarantined), if so.
        var refusing: String?
        /// Quarantined exporters with `on_full: drop`: the pipeline flows to the others and
        /// drops their share, counted in droppedForQuarantine.
        var droppingFor: [String]?
        var droppedForQuarantine: Int?
    }
    var plugins: [Plugin]
    var refusedPlugins: [Refused]
    var receivers: [Receiver]
    var exporters: [Component]
    var notifiers: [Component]
    var pipelines: [PipelineStatus]
    /// servicegraph (calls between services, completeness) and spanmetrics.
    var connectors: [ConnectorStatus]
    var reloads: ReloadLog.Summary
    struct Memory: Encodable {
        /// Bytes held by span batches in memory (queues, processors, requests in flight).
        var batchBytes: Int
        /// Bytes mapped for batch arenas: in use, free in partly used slabs, or cached empty.
        var arenaMappedBytes: Int
        /// Bytes of request bodies being received or decoded.
        var requestBodyBytes: Int
        var limitBytes: Int?
    }
    var memory: Memory
}

extension Collection {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}
