import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SpanhostConfig
import SpanhostConnectors
import SpanhostPipeline
import SpanhostReceivers

/// Where metrics pipelines send the connectors' metrics: the scrape endpoints of `prometheus`
/// exporters (each answers `GET /metrics` with the series of the connectors whose metrics
/// pipelines end in it, read from the current generation at the time of the scrape), and the
/// pushes of `otlphttp` exporters. After every start and reload, `apply` binds the endpoints the
/// config added, closes the ones it removed, and restarts the pushes.
actor MetricsEndpoints {
    private struct Served: Sendable {
        var settings: PrometheusExporterSettings
        var connectors: [ComponentID]
    }
    /// What each endpoint serves; read by the handlers, so behind its own lock.
    private let table = NIOLockedValueBox<[String: Served]>([:])
    private var servers: [String: HTTPServer] = [:]
    private var pushers: [MetricsPusher] = []
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
        pushers.forEach { $0.stop() }
        pushers = config.metricsExporters.compactMap { exporter in
            guard case .otlphttp(let settings) = exporter.kind else { return nil }
            let connectors = config.metricsPipelines.filter { $0.exporters.contains(exporter.id) }.flatMap(\.connectors)
            let interval = config.connectors.filter { connectors.contains($0.id) }.map(\.flushInterval).min() ?? .seconds(60)
            return MetricsPusher(id: exporter.id, settings: settings, connectors: connectors, interval: max(interval, .seconds(1)),
                                 current: current, logger: logger)
        }
        for (key, server) in servers where wanted[key] == nil {
            await server.close()
            servers[key] = nil
        }
        for (key, served) in wanted where servers[key] == nil {
            do {
                servers[key] = try await HTTPServer.start(.tcp(host: served.settings.endpoint.host, port: served.settings.endpoint.port),
                                                          maxBodyBytes: 1 << 12, group: group, handler: handler(key))
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
        pushers.forEach { $0.stop() }
        pushers = []
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
                connectors.first { $0.config.id == id }?.connector.families.forEach { text.write($0) }
            }
            return loop.makeSucceededFuture(HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4"],
                                                         body: Array(text.text.utf8)))
        }
    }
}

/// An `otlphttp` exporter of a metrics pipeline: a thread of its own that, every `interval`,
/// posts the connectors' metrics as OTLP/JSON (HTTP/1.0, one connection a push). A failed push
/// is logged; the next one carries the totals (the points are cumulative).
final class MetricsPusher: Sendable {
    let id: ComponentID
    private let settings: OTLPMetricsPushSettings
    private let connectors: [ComponentID]
    private let interval: Duration
    private let current: CurrentGeneration
    private let logger: Logger
    private let stopping = NIOLockedValueBox(false)
    private let started = Date()

    init(id: ComponentID, settings: OTLPMetricsPushSettings, connectors: [ComponentID], interval: Duration,
         current: CurrentGeneration, logger: Logger) {
        self.id = id
        self.settings = settings
        self.connectors = connectors
        self.interval = interval
        self.current = current
        self.logger = logger
        let thread = Thread { [self] in run() }
        thread.name = "metrics-push \(id)"
        thread.start()
    }

    func stop() { stopping.withLockedValue { $0 = true } }

    private func run() {
        let step = 0.05
        var waited = 0.0
        let period = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        while !stopping.withLockedValue({ $0 }) {
            Thread.sleep(forTimeInterval: step)
            waited += step
            guard waited >= period else { continue }
            waited = 0
            push()
        }
    }

    private func push() {
        let all = current.value.connectors
        let families = connectors.flatMap { id in all.first { $0.config.id == id }?.connector.families ?? [] }
        let body = OTLPMetricsJSON.encode(families, start: started)
        let status = HTTPPost.send(host: settings.host, port: settings.port, path: settings.path,
                                   headers: [("Content-Type", "application/json")] + settings.headers.sorted { $0.key < $1.key },
                                   body: body, timeoutSeconds: max(1, Int(settings.timeout.components.seconds)))
        if !(200..<300).contains(status ?? 0) {
            logger.warning("metrics push failed", metadata: ["exporter": "\(id)", "status": "\(status.map(String.init) ?? "no answer")"])
        }
    }
}

/// A blocking HTTP/1.0 POST over TCP; the answer's status code, or nil when there was none.
enum HTTPPost {
    static func send(host: String, port: Int, path: String, headers: [(String, String)], body: [UInt8], timeoutSeconds: Int) -> Int? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            cursor = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var time = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { continue }
            var head = "POST \(path) HTTP/1.0\r\nHost: \(host):\(port)\r\nContent-Length: \(body.count)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            let request = Array((head + "\r\n").utf8) + body
            var sent = 0
            while sent < request.count {
                let n = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { return nil }
                sent += n
            }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while received.count < 64 {
                let n = read(fd, &buffer, buffer.count)
                guard n > 0 else { break }
                received += buffer[0..<n]
            }
            // "HTTP/1.1 200 OK"
            let line = String(decoding: received.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
            return line.count >= 2 ? Int(line[1]) : nil
        }
        return nil
    }
}
