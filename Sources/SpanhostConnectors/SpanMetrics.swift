import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel
import Synchronization

/// The Collector's spanmetrics connector: per service, span name, kind and status code (less
/// `exclude_dimensions`, plus `dimensions`), the calls and a histogram of durations (rate, errors
/// and duration: RED), and with `events` the span events per event attributes. The number of
/// series is bounded by `dimensions_cache_size`; spans of further series are counted in one
/// overflow series labelled otel_metric_overflow="true".
public final class SpanMetrics: SpanConnector {
    public let id: ComponentID
    let settings: SpanMetricsSettings
    /// Label values in `labelNames` order; nil where a dimension without default was absent.
    private typealias Series = [String?]
    private struct Figures {
        var durations: BucketHistogram
        var lastSeen: ContinuousClock.Instant
    }
    private struct Tallies {
        var series: [Series: Figures] = [:]
        var events: [Series: UInt64] = [:]
        var overflow: BucketHistogram
    }
    private let tallies: Mutex<Tallies>
    private let bounds: [Double]
    private let labelNames: [String]
    private let eventLabelNames: [String]
    private let names: (calls: String, duration: String, events: String)

    public init(id: ComponentID, settings: SpanMetricsSettings) {
        self.id = id
        self.settings = settings
        let scale = settings.unitSeconds ? 1.0 : 1000.0
        bounds = settings.buckets.map { $0.seconds * scale }
        tallies = Mutex(Tallies(overflow: BucketHistogram(bounds: bounds)))
        let defaults = SpanMetricsSettings.defaultLabels.filter { !settings.excluded.contains($0) }
        labelNames = (defaults + settings.dimensions.map(\.name)).map(PrometheusText.labelName)
        eventLabelNames = labelNames + (settings.eventDimensions ?? []).map { PrometheusText.labelName($0.name) }
        let prefix = settings.namespace.isEmpty ? "" : PrometheusText.labelName(settings.namespace) + "_"
        names = ("\(prefix)calls_total", "\(prefix)duration_\(settings.unitSeconds ? "seconds" : "milliseconds")", "\(prefix)events_total")
    }

    private static let kinds = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                                "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]
    private static let statuses = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]

    private func labels(_ span: SpanFacts, _ service: String) -> Series {
        var values: Series = []
        for name in SpanMetricsSettings.defaultLabels where !settings.excluded.contains(name) {
            switch name {
            case "service.name": values.append(service)
            case "span.name": values.append(span.name)
            case "span.kind": values.append(Int(span.kind) < Self.kinds.count ? Self.kinds[Int(span.kind)] : "SPAN_KIND_UNSPECIFIED")
            default:
                let code = Int(span.span.pointee.status_code)
                values.append(code < Self.statuses.count ? Self.statuses[code] : "STATUS_CODE_UNSET")
            }
        }
        for dimension in settings.dimensions { values.append(span.attribute(dimension.name) ?? dimension.defaultValue) }
        return values
    }

    public func observe(_ batch: SpanBatch) {
        let now = ContinuousClock.now
        let scale = settings.unitSeconds ? 1.0 : 1000.0
        tallies.withLock { tallies in
            batch.forEachSpanFact { span, service in
                let key = labels(span, service)
                if tallies.series[key] == nil {
                    guard tallies.series.count < settings.maxSeries else { return tallies.overflow.record(span.seconds * scale) }
                    tallies.series[key] = Figures(durations: BucketHistogram(bounds: bounds), lastSeen: now)
                }
                tallies.series[key]!.durations.record(span.seconds * scale)
                tallies.series[key]!.lastSeen = now
                guard let eventDimensions = settings.eventDimensions else { return }
                let s = span.span.pointee
                for i in 0..<s.events_count {
                    guard let event = s.events[i], tallies.events.count < settings.maxSeries else { continue }
                    let eventKey = key + eventDimensions.map { attributeText(event.pointee.attributes, $0.name) ?? $0.defaultValue }
                    tallies.events[eventKey, default: 0] += 1
                }
            }
        }
    }

    public var status: ConnectorStatus {
        tallies.withLock {
            ConnectorStatus(id: "\(id)", counters: ["overflow_spans": Int64($0.overflow.count)], series: $0.series.count)
        }
    }

    public var families: [MetricFamily] {
        tallies.withLock { tallies in
            // Series not seen for `metrics_expiration` go.
            if let expiration = settings.expiration {
                let now = ContinuousClock.now
                tallies.series = tallies.series.filter { now - $0.value.lastSeen < expiration }
            }
            func pairs(_ names: [String], _ values: Series) -> [(String, String)] {
                zip(names, values).compactMap { name, value in value.map { (name, $0) } }
            }
            let sorted = tallies.series.map { (pairs(labelNames, $0.key), $0.value.durations) }
                .sorted { $0.0.map { "\($0.0)=\($0.1)" }.lexicographicallyPrecedes($1.0.map { "\($0.0)=\($0.1)" }) }
            let overflowLabels = [("otel_metric_overflow", "true")]
            var calls = MetricFamily(names.calls, otel: "\(settings.namespace).calls", .counter, unit: "1",
                                     help: "spans per service, span name, kind, status and dimensions")
            var durations = MetricFamily(names.duration, otel: "\(settings.namespace).duration", .histogram, unit: settings.unitSeconds ? "s" : "ms",
                                         help: "span durations per service, span name, kind, status and dimensions")
            for (labels, h) in sorted {
                calls.add(labels, Double(h.count))
                durations.add(labels, h)
            }
            if tallies.overflow.count > 0 {
                calls.add(overflowLabels, Double(tallies.overflow.count))
                durations.add(overflowLabels, tallies.overflow)
            }
            var result = [calls] + (settings.histogramDisabled ? [] : [durations])
            if settings.eventDimensions != nil {
                var events = MetricFamily(names.events, otel: "\(settings.namespace).events", .counter, unit: "1",
                                          help: "span events per span dimensions and event attributes")
                for (labels, n) in tallies.events.map({ (pairs(eventLabelNames, $0.key), $0.value) }).sorted(by: { "\($0.0)" < "\($1.0)" }) {
                    events.add(labels, Double(n))
                }
                result.append(events)
            }
            return result
        }
    }
}

extension ConnectorConfig {
    /// The connector these settings describe, or `previous` when it was built from the same
    /// settings (a reload then keeps its counts and waiting halves); nil for the connectors
    /// that join pipelines (the generation builds those).
    public func connector(previous: (config: ConnectorConfig, connector: SpanConnector)?) -> SpanConnector? {
        if let previous, previous.config == self { return previous.connector }
        switch kind {
        case .serviceGraph(let s): return ServiceGraph(id: id, settings: s)
        case .spanMetrics(let s): return SpanMetrics(id: id, settings: s)
        case .forward, .routing: return nil
        }
    }
}
