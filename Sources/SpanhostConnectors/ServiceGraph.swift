import CSpanhost
import DequeModule
import Foundation
import SpanhostConfig
import SpanhostModel
import Synchronization

/// A connector the pipelines hand what their exporters get.
public protocol SpanConnector: AnyObject, Sendable {
    var id: ComponentID { get }
    func observe(_ batch: SpanBatch)
    /// Its metrics now, for the Prometheus and OTLP writers.
    var families: [MetricFamily] { get }
    /// Its figures for /status.
    var status: ConnectorStatus { get }
}

/// A connector's figures at /status.
public struct ConnectorStatus: Encodable, Sendable {
    public struct Edge: Encodable, Sendable {
        public var client, server: String
        public var connectionType: String?
        public var calls, failed: UInt64
        public var errorRate: Double
        public var serverP50Ms, serverP95Ms: Double
    }
    public struct Completeness: Encodable, Sendable {
        public var service: String
        public var traces, withRoot: Int
        public var ratio: Double
    }
    public var id: String
    public var counters: [String: Int64]
    public var edges: [Edge]?
    public var completeness: [Completeness]?
    public var series: Int?
}

/// The Collector's servicegraph connector: a call between two services is a CLIENT span and the
/// SERVER span whose parent it is (or PRODUCER and CONSUMER), matched by trace and span id
/// within `store.ttl`, whichever arrives first. Per (client, server) pair: calls, failed calls
/// (either side with status ERROR), and the server's and client's durations. Also trace
/// completeness per service: of the traces a service's spans were in during the last
/// `completeness_window`, the share whose root span arrived.
public final class ServiceGraph: SpanConnector {
    public let id: ComponentID
    let settings: ServiceGraphSettings

    private struct Key: Hashable {
        var trace0, trace1, span: UInt64
    }
    private struct Half {
        var service: String
        var seconds: Double
        var failed: Bool
        var isClient: Bool
        var messaging: Bool
        var expires: ContinuousClock.Instant
        /// The values of `dimensions` on this span (or its resource).
        var dimensions: [String?]
    }
    private struct Edge: Hashable {
        var client, server: String
        var messaging: Bool
        var clientDimensions, serverDimensions: [String?]
    }
    private struct EdgeStats {
        var calls: UInt64 = 0
        var failed: UInt64 = 0
        var server: BucketHistogram
        var client: BucketHistogram
    }
    /// Halves waiting for their other side, the edges found, and the completeness windows;
    /// changed under one lock.
    private struct Graph {
        let settings: ServiceGraphSettings
        var waiting: [Key: Half] = [:]
        var expiry = Deque<(Key, ContinuousClock.Instant)>()
        var edges: [Edge: EdgeStats] = [:]
        var counters: [String: Int64] = ["expired_halves": 0, "dropped_halves": 0]
        let maxEdges = 10_000

        // Trace completeness: the traces of the window being filled, and the last full window's figures.
        struct TraceSeen {
            var services: Set<String> = []
            var root = false
        }
        var traces: [Key: TraceSeen] = [:]
        var windowStart = ContinuousClock.now
        var lastWindow: [ConnectorStatus.Completeness] = []
        let maxTraces = 200_000

        init(settings: ServiceGraphSettings) { self.settings = settings }

        mutating func observe(_ batch: SpanBatch, now: ContinuousClock.Instant) {
            expire(now: now)
            roll(now: now)
            batch.forEachSpanFact { span, service in
                track(span, service)
                let kind = Int32(bitPattern: span.kind)
                switch kind {
                case SPANHOST_SPAN_KIND_CLIENT, SPANHOST_SPAN_KIND_PRODUCER:
                    let key = Key(trace0: span.traceID.0, trace1: span.traceID.1, span: span.spanID)
                    pair(key, Half(service: service, seconds: span.seconds, failed: span.failed, isClient: true,
                                   messaging: kind == SPANHOST_SPAN_KIND_PRODUCER, expires: now + settings.ttl,
                                   dimensions: settings.dimensions.map(span.attribute)))
                case SPANHOST_SPAN_KIND_SERVER, SPANHOST_SPAN_KIND_CONSUMER:
                    guard span.parentID != 0 else { return }  // a root server span has no caller to pair with
                    let key = Key(trace0: span.traceID.0, trace1: span.traceID.1, span: span.parentID)
                    pair(key, Half(service: service, seconds: span.seconds, failed: span.failed, isClient: false,
                                   messaging: kind == SPANHOST_SPAN_KIND_CONSUMER, expires: now + settings.ttl,
                                   dimensions: settings.dimensions.map(span.attribute)))
                default:
                    break
                }
            }
        }

        mutating func pair(_ key: Key, _ half: Half) {
            if let other = waiting[key], other.isClient != half.isClient {
                waiting[key] = nil
                let (client, server) = half.isClient ? (half, other) : (other, half)
                let edge = Edge(client: client.service, server: server.service, messaging: client.messaging || server.messaging,
                                clientDimensions: client.dimensions, serverDimensions: server.dimensions)
                if edges[edge] == nil {
                    guard edges.count < maxEdges else { counters["dropped_edges", default: 0] += 1; return }
                    let bounds = settings.buckets.map(\.seconds)
                    edges[edge] = EdgeStats(server: BucketHistogram(bounds: bounds), client: BucketHistogram(bounds: bounds))
                }
                edges[edge]!.calls += 1
                if client.failed || server.failed { edges[edge]!.failed += 1 }
                edges[edge]!.server.record(server.seconds)
                edges[edge]!.client.record(client.seconds)
                return
            }
            guard waiting.count < settings.maxItems else {
                counters["dropped_halves", default: 0] += 1
                return
            }
            waiting[key] = half
            expiry.append((key, half.expires))
        }

        mutating func expire(now: ContinuousClock.Instant) {
            while let (key, at) = expiry.first, at <= now {
                expiry.removeFirst()
                if let half = waiting[key], half.expires == at {
                    waiting[key] = nil
                    counters["expired_halves", default: 0] += 1
                }
            }
        }

        mutating func track(_ span: SpanFacts, _ service: String) {
            let key = Key(trace0: span.traceID.0, trace1: span.traceID.1, span: 0)
            if traces[key] == nil {
                guard traces.count < maxTraces else { counters["untracked_traces", default: 0] += 1; return }
                traces[key] = TraceSeen()
            }
            traces[key]!.services.insert(service)
            if span.parentID == 0 { traces[key]!.root = true }
        }

        /// Closes the completeness window when it is over.
        mutating func roll(now: ContinuousClock.Instant) {
            guard now - windowStart >= settings.completenessWindow else { return }
            var figures: [String: (traces: Int, withRoot: Int)] = [:]
            for seen in traces.values {
                for service in seen.services {
                    figures[service, default: (0, 0)].traces += 1
                    if seen.root { figures[service, default: (0, 0)].withRoot += 1 }
                }
            }
            lastWindow = figures.sorted { $0.key < $1.key }.map {
                .init(service: $0.key, traces: $0.value.traces, withRoot: $0.value.withRoot,
                      ratio: Double($0.value.withRoot) / Double(max($0.value.traces, 1)))
            }
            traces.removeAll(keepingCapacity: true)
            windowStart = now
        }

        mutating func status(_ id: ComponentID) -> ConnectorStatus {
            expire(now: .now)
            roll(now: .now)
            let list = edges.sorted { ($0.key.client, $0.key.server) < ($1.key.client, $1.key.server) }.map { edge, stats in
                ConnectorStatus.Edge(client: edge.client, server: edge.server, connectionType: edge.messaging ? "messaging_system" : nil,
                                     calls: stats.calls, failed: stats.failed,
                                     errorRate: Double(stats.failed) / Double(max(stats.calls, 1)),
                                     serverP50Ms: stats.server.quantile(0.5) * 1000, serverP95Ms: stats.server.quantile(0.95) * 1000)
            }
            return ConnectorStatus(id: "\(id)", counters: counters, edges: list, completeness: lastWindow)
        }

        mutating func families(_ id: ComponentID) -> [MetricFamily] {
            expire(now: .now)
            roll(now: .now)
            let sorted = edges.sorted { ($0.key.client, $0.key.server) < ($1.key.client, $1.key.server) }
            func labels(_ edge: Edge) -> [(String, String)] {
                var pairs = [("client", edge.client), ("server", edge.server)] + (edge.messaging ? [("connection_type", "messaging_system")] : [])
                for (index, name) in settings.dimensions.enumerated() {
                    let label = PrometheusText.labelName(name)
                    if let value = edge.clientDimensions[index] { pairs.append(("client_\(label)", value)) }
                    if let value = edge.serverDimensions[index] { pairs.append(("server_\(label)", value)) }
                }
                return pairs
            }
            var requests = MetricFamily("traces_service_graph_request_total", .counter, unit: "1", help: "calls between two services")
            var failed = MetricFamily("traces_service_graph_request_failed_total", .counter, unit: "1",
                                      help: "calls where the client or the server span failed")
            var server = MetricFamily("traces_service_graph_request_server_seconds", .histogram, unit: "s", help: "server span durations of calls")
            var client = MetricFamily("traces_service_graph_request_client_seconds", .histogram, unit: "s", help: "client span durations of calls")
            for (edge, stats) in sorted {
                let l = labels(edge)
                requests.add(l, Double(stats.calls))
                failed.add(l, Double(stats.failed))
                server.add(l, stats.server)
                client.add(l, stats.client)
            }
            var completeness = MetricFamily("spanhost_trace_completeness_ratio", .gauge, unit: "1",
                                            help: "traces with a root span / traces seen, per service, last window")
            for figure in lastWindow { completeness.add([("connector", "\(id)"), ("service", figure.service)], figure.ratio) }
            return [requests, failed, server, client, completeness]
        }
    }
    private let graph: Mutex<Graph>

    public init(id: ComponentID, settings: ServiceGraphSettings) {
        self.id = id
        self.settings = settings
        graph = Mutex(Graph(settings: settings))
    }

    public func observe(_ batch: SpanBatch) { observe(batch, now: .now) }

    func observe(_ batch: SpanBatch, now: ContinuousClock.Instant) { graph.withLock { $0.observe(batch, now: now) } }

    public var status: ConnectorStatus { graph.withLock { $0.status(id) } }

    public var families: [MetricFamily] { graph.withLock { $0.families(id) } }
}
