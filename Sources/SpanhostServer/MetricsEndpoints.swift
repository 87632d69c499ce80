import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SpanhostConfig
import SpanhostDerived
import SpanhostPipeline
import SpanhostReceivers

/// The scrape endpoints of the `prometheus` exporters of metrics pipelines. Each answers
/// `GET /metrics` with the series of the connectors whose metrics pipelines end in it, read from
/// the current generation at the time of the scrape. After every start and reload, `apply`
/// binds the endpoints the config added and closes the ones it removed.
actor MetricsEndpoints {
    private struct Served: Sendable {
        var settings: PrometheusExporterSettings
        var connectors: [ComponentID]
    }
    /// What each endpoint serves; read by the handlers, so behind its own lock.
    private let table = NIOLockedValueBox<[String: Served]>([:])
    private var servers: [String: HTTPServer] = [:]
    private let current: CurrentGeneration
    private let group: any EventLoopGroup
    private let logger: Logger

    init(current: CurrentGeneration, group: any EventLoopGroup, logger: Logger) {
        self.current = current
        self.group = group
        self.logger = logger
    }

    /// Serves what `config` asks for. An endpoint that cannot be bound is logged and left out;
    /// `strict` (at start) throws instead.
    func apply(_ config: ServiceConfig, strict: Bool) async throws {
        var wanted: [String: Served] = [:]
        for exporter in config.metricsExporters {
            guard case .prometheus(let settings) = exporter.kind else { continue }
            let connectors = config.metricsPipelines.filter { $0.exporters.contains(exporter.id) }.flatMap(\.connectors)
            let key = "\(settings.endpoint)"
            if let other = wanted[key], other.settings != settings {
                throw ConfigError("exporters.\(exporter.id).endpoint", "\(key) is served by another prometheus exporter with other settings")
            }
            wanted[key, default: Served(settings: settings, connectors: [])].connectors += connectors
        }
        table.withLockedValue { $0 = wanted }
        for (key, server) in servers where wanted[key] == nil {
            await server.close()
            servers[key] = nil
        }
        for (key, served) in wanted where servers[key] == nil {
            do {
                servers[key] = try await HTTPServer.start(.tcp(host: served.settings.endpoint.host, port: served.settings.endpoint.port),
                                                          maxBodyBytes: { 1 << 12 }, group: group, handler: handler(key))
                logger.info("prometheus exporter listening", metadata: ["endpoint": "\(key)"])
            } catch {
                if strict { throw ConfigError("exporters.prometheus.endpoint", "cannot listen on \(key): \(error)") }
                logger.error("prometheus exporter: cannot listen", metadata: ["endpoint": "\(key)", "error": "\(error)"])
            }
        }
    }

    func close() async {
        for server in servers.values { await server.close() }
        servers = [:]
    }

    private nonisolated func handler(_ key: String) -> HTTPServer.Handler {
        let table = self.table, current = self.current
        return { request, loop in
            guard request.method == .GET, request.path == "/metrics" || request.path.hasPrefix("/metrics?") else {
                return loop.makeSucceededFuture(.text(.notFound, "the prometheus exporter answers GET /metrics"))
            }
            guard let served = table.withLockedValue({ $0[key] }) else {
                return loop.makeSucceededFuture(.text(.serviceUnavailable, "this endpoint was removed by a reload"))
            }
            var text = PrometheusText(namespace: served.settings.namespace, constLabels: served.settings.constLabels)
            let connectors = current.value.connectors
            for id in served.connectors {
                connectors.first { $0.config.id == id }?.connector.prometheus(into: &text)
            }
            return loop.makeSucceededFuture(HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4"],
                                                         body: Array(text.text.utf8)))
        }
    }
}
