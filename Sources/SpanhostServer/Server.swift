import Foundation
import Logging
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostPlugins
import SpanhostReceivers

/// A running spanhostd: plugin catalog, the current generation of pipelines, receivers and the
/// admin endpoint.
public final class Server: @unchecked Sendable {
    public let config: ServiceConfig
    public let catalog: PluginCatalog
    public let generation: Generation
    private let receivers: [(id: ComponentID, handler: OTLPHTTPHandler)]
    private var listeners: [HTTPServer] = []
    private var admin: HTTPServer?
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let accepting = AcceptingFlag()

    /// Loads plugins and builds every component. Nothing listens yet.
    public init(config: ServiceConfig, pluginsDir: String, cacheDir: String, logger: Logger) throws {
        self.config = config
        self.logger = logger
        var receivers: [(ComponentID, OTLPReceiverSettings)] = []
        for receiver in config.receivers {
            let path = "receivers.\(receiver.id)"
            guard receiver.id.type == "otlp" else {
                throw ConfigError(path, "unknown receiver type '\(receiver.id.type)'; built-in receivers: otlp")
            }
            receivers.append((receiver.id, try OTLPReceiverSettings(settings: receiver.settings, path: path)))
        }
        catalog = PluginCatalog.scan(directory: pluginsDir, cacheDirectory: cacheDir, pins: config.pluginPins, logger: logger)
        generation = try Generation(config: config, catalog: catalog)
        let accepting = self.accepting
        let generation = self.generation
        self.receivers = receivers.map { id, settings in
            (id, OTLPHTTPHandler(settings: settings, counters: ReceiverCounters(), isAccepting: { accepting.value }) { batch in
                generation.consume(batch, from: id)
            })
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    }

    /// Binds receivers and the admin endpoint.
    public func start() async throws {
        let used = Set(config.pipelines.flatMap(\.receivers))
        for (id, handler) in receivers where used.contains(id) {
            let endpoint = handler.settings.endpoint
            let server = try await HTTPServer.start(host: endpoint.host, port: endpoint.port,
                                                    maxBodyBytes: handler.settings.maxRequestBodySize, group: group,
                                                    handler: handler.handle)
            listeners.append(server)
            logger.info("receiver listening", metadata: ["receiver": "\(id)", "endpoint": "\(endpoint.host):\(server.localPort)"])
        }
        let adminEndpoint = config.adminEndpoint
        admin = try await HTTPServer.start(host: adminEndpoint.host, port: adminEndpoint.port, maxBodyBytes: 1 << 16,
                                           group: group) { [self] request in adminRoute(request) }
        logger.info("admin listening", metadata: ["endpoint": "\(adminEndpoint.host):\(admin?.localPort ?? 0)"])
    }

    /// Stops taking data (receivers answer 503), drains exporters until the configured
    /// deadline, and shuts every plugin instance down. Returns spans not delivered.
    public func shutdown() async -> Int {
        accepting.value = false
        for listener in listeners { await listener.close() }
        let undelivered = generation.shutdown(timeout: config.shutdownTimeout)
        if undelivered > 0 {
            logger.error("shutdown finished with undelivered spans", metadata: ["undelivered_spans": "\(undelivered)"])
        } else {
            logger.info("shutdown complete: every accepted span was handed to its exporters")
        }
        await admin?.close()
        try? await group.shutdownGracefully()
        return undelivered
    }

    private func adminRoute(_ request: HTTPRequest) -> HTTPResponse {
        switch (request.method, request.path) {
        case (.GET, "/healthz"):
            return .text(.ok, accepting.value ? "ok" : "shutting down")
        case (.GET, "/status"):
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let body = (try? encoder.encode(status())) ?? Data()
            return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
        default:
            return .text(.notFound, "unknown admin path; try /healthz or /status")
        }
    }

    func status() -> StatusReport {
        StatusReport(
            plugins: catalog.libraries.values.sorted { $0.name < $1.name }.map {
                .init(name: $0.name, kind: $0.kind.rawValue, version: $0.version, abi: "\($0.abiMajor).\($0.abiMinor)",
                      file: $0.sourcePath, loadedFrom: $0.loadedPath, sha256: $0.sha256)
            },
            refusedPlugins: catalog.refused.map { .init(file: $0.file, reason: $0.error.description) },
            receivers: receivers.map { .init(id: "\($0.id)", kind: "receiver", counters: $0.handler.counters.snapshot, queueDepth: nil) },
            exporters: generation.exporters.map {
                .init(id: "\($0.id)", kind: "exporter", counters: $0.counters.snapshot, queueDepth: $0.queueDepth)
            },
            pipelines: generation.pipelines.map { pipeline in
                .init(id: pipeline.id,
                      processors: pipeline.processors.map { .init(id: "\($0.id)", kind: "processor", counters: $0.counters.snapshot, queueDepth: nil) },
                      exporters: pipeline.exporters.map { "\($0.id)" },
                      notifiers: pipeline.notifiers.map { "\($0.id)" })
            })
    }
}

/// The JSON document served at /status.
struct StatusReport: Encodable {
    struct Plugin: Encodable {
        var name, kind, version, abi, file, loadedFrom, sha256: String
    }
    struct Refused: Encodable {
        var file, reason: String
    }
    struct Component: Encodable {
        var id, kind: String
        var counters: [String: Int64]
        var queueDepth: Int?
    }
    struct PipelineStatus: Encodable {
        var id: String
        var processors: [Component]
        var exporters: [String]
        var notifiers: [String]
    }
    var plugins: [Plugin]
    var refusedPlugins: [Refused]
    var receivers: [Component]
    var exporters: [Component]
    var pipelines: [PipelineStatus]
}

/// Whether receivers take data; false once shutdown begins.
final class AcceptingFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = true
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}
