import Foundation

/// One metric a connector derives, with its points: what the Prometheus text (scrapes, the admin
/// /metrics) and OTLP (otlphttp exporters of metrics pipelines) writers render.
public struct MetricFamily: Sendable {
    public enum Kind: Sendable { case counter, gauge, histogram }
    public struct Point: Sendable {
        public var labels: [(String, String)]
        public var value: Double
        public var histogram: BucketHistogram?
    }
    /// As Prometheus writes it: `traces_span_metrics_calls_total`.
    public var name: String
    /// As OTLP names it: `traces.span.metrics.calls`.
    public var otelName: String
    public var kind: Kind
    public var unit: String
    public var help: String
    public var points: [Point] = []

    init(_ name: String, otel: String? = nil, _ kind: Kind, unit: String = "", help: String) {
        self.name = name
        otelName = otel ?? name
        self.kind = kind
        self.unit = unit
        self.help = help
    }

    mutating func add(_ labels: [(String, String)], _ value: Double) { points.append(Point(labels: labels, value: value)) }

    mutating func add(_ labels: [(String, String)], _ histogram: BucketHistogram) {
        points.append(Point(labels: labels, value: 0, histogram: histogram))
    }
}

extension PrometheusText {
    /// Writes a family: one header, then its samples (a histogram's buckets, sum and count).
    public mutating func write(_ family: MetricFamily) {
        switch family.kind {
        case .counter, .gauge:
            header(family.name, family.kind == .counter ? "counter" : "gauge", family.help)
            for point in family.points { sample(family.name, point.labels, point.value) }
        case .histogram:
            for point in family.points { if let h = point.histogram { histogram(family.name, point.labels, h, family.help) } }
        }
    }
}

/// OTLP/JSON `ExportMetricsServiceRequest` of connectors' families: cumulative sums, gauges and
/// explicit-bucket histograms, their points' labels as attributes.
public enum OTLPMetricsJSON {
    public static func encode(_ families: [MetricFamily], start: Date, now: Date = Date()) -> [UInt8] {
        let startNanos = String(UInt64(start.timeIntervalSince1970 * 1e9)), nowNanos = String(UInt64(now.timeIntervalSince1970 * 1e9))
        func attributes(_ labels: [(String, String)]) -> [[String: Any]] {
            labels.map { ["key": $0.0, "value": ["stringValue": $0.1]] }
        }
        let metrics: [[String: Any]] = families.filter { !$0.points.isEmpty }.map { family in
            var metric: [String: Any] = ["name": family.otelName, "description": family.help, "unit": family.unit]
            switch family.kind {
            case .counter:
                metric["sum"] = ["aggregationTemporality": 2, "isMonotonic": true, "dataPoints": family.points.map { point in
                    ["attributes": attributes(point.labels), "startTimeUnixNano": startNanos, "timeUnixNano": nowNanos,
                     "asInt": String(Int64(point.value))] as [String: Any]
                }]
            case .gauge:
                metric["gauge"] = ["dataPoints": family.points.map { point in
                    ["attributes": attributes(point.labels), "timeUnixNano": nowNanos, "asDouble": point.value] as [String: Any]
                }]
            case .histogram:
                metric["histogram"] = ["aggregationTemporality": 2, "dataPoints": family.points.compactMap { point -> [String: Any]? in
                    guard let h = point.histogram else { return nil }
                    return ["attributes": attributes(point.labels), "startTimeUnixNano": startNanos, "timeUnixNano": nowNanos,
                            "count": String(h.count), "sum": h.sum, "bucketCounts": h.counts.map(String.init), "explicitBounds": h.bounds]
                }]
            }
            return metric
        }
        let request: [String: Any] = ["resourceMetrics": [["resource": ["attributes": [["key": "service.name", "value": ["stringValue": "spanhost"]]]],
                                                            "scopeMetrics": [["scope": ["name": "spanhost.connectors"], "metrics": metrics]]]]]
        return Array((try? JSONSerialization.data(withJSONObject: request, options: [.sortedKeys])) ?? Data())
    }
}
