import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel

/// The Collector's spanmetrics connector: per service, span name, kind and status code, the
/// calls and a histogram of durations (rate, errors and duration: RED). The number of series is
/// bounded by `dimensions_cache_size`; spans of further series are counted in one overflow
/// series labelled otel_metric_overflow="true".
public final class SpanMetrics: SpanConnector, @unchecked Sendable {
    public let id: ComponentID
    let settings: SpanMetricsSettings
    private let lock = NSLock()
    private struct Series: Hashable {
        var service, name: String
        var kind, status: UInt32
    }
    private var series: [Series: BucketHistogram] = [:]
    private var overflow: BucketHistogram
    private let bounds: [Double]

    public init(id: ComponentID, settings: SpanMetricsSettings) {
        self.id = id
        self.settings = settings
        bounds = settings.buckets.map(\.seconds)
        overflow = BucketHistogram(bounds: bounds)
    }

    public func observe(_ batch: SpanBatch) {
        lock.withLock {
            batch.forEachSpanFact { span, service in
                let key = Series(service: service, name: span.name, kind: span.kind, status: span.span.pointee.status_code)
                if series[key] == nil {
                    guard series.count < settings.maxSeries else { return overflow.record(span.seconds) }
                    series[key] = BucketHistogram(bounds: bounds)
                }
                series[key]!.record(span.seconds)
            }
        }
    }

    private static let kinds = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                                "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]
    private static let statuses = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]

    public var status: ConnectorStatus {
        lock.withLock {
            ConnectorStatus(id: "\(id)", counters: ["overflow_spans": Int64(overflow.count)], series: series.count)
        }
    }

    public func prometheus(into text: inout PrometheusText) {
        lock.withLock {
            let sorted = series.sorted { ($0.key.service, $0.key.name, $0.key.kind, $0.key.status) < ($1.key.service, $1.key.name, $1.key.kind, $1.key.status) }
            func labels(_ s: Series) -> [(String, String)] {
                [("service_name", s.service), ("span_name", s.name),
                 ("span_kind", Int(s.kind) < Self.kinds.count ? Self.kinds[Int(s.kind)] : "SPAN_KIND_UNSPECIFIED"),
                 ("status_code", Int(s.status) < Self.statuses.count ? Self.statuses[Int(s.status)] : "STATUS_CODE_UNSET")]
            }
            let overflowLabels = [("otel_metric_overflow", "true")]
            text.header("traces_span_metrics_calls_total", "counter", "spans per service, span name, kind and status")
            for (key, h) in sorted { text.sample("traces_span_metrics_calls_total", labels(key), Double(h.count)) }
            if overflow.count > 0 { text.sample("traces_span_metrics_calls_total", overflowLabels, Double(overflow.count)) }
            for (key, h) in sorted {
                text.histogram("traces_span_metrics_duration_seconds", labels(key), h, "span durations per service, span name, kind and status")
            }
            if overflow.count > 0 {
                text.histogram("traces_span_metrics_duration_seconds", overflowLabels, overflow, "span durations per service, span name, kind and status")
            }
        }
    }
}

extension ConnectorConfig {
    /// The connector these settings describe, or `previous` when it was built from the same
    /// settings (a reload then keeps its counts and waiting halves).
    public func connector(previous: (config: ConnectorConfig, connector: SpanConnector)?) -> SpanConnector {
        if let previous, previous.config == self { return previous.connector }
        switch kind {
        case .serviceGraph(let s): return ServiceGraph(id: id, settings: s)
        case .spanMetrics(let s): return SpanMetrics(id: id, settings: s)
        }
    }
}
