import Foundation

/// A `connectors:` entry: telemetry the host derives from the spans of the pipelines that list
/// it under `exporters:` (as the Collector's connectors). Its metrics are served at the admin
/// endpoint's /metrics, and go out through the exporters of the `metrics` pipelines that list
/// it under `receivers:` (see MetricsPipelineConfig).
///
///     connectors:
///       servicegraph:                  # calls between services: CLIENT/SERVER and PRODUCER/CONSUMER pairs
///         latency_histogram_buckets: [10ms, 100ms, 1s]
///         dimensions: [deployment.environment]
///         store: {ttl: 2s, max_items: 1000}
///         completeness_window: 1m      # share of traces with a root span, per service
///       spanmetrics:                   # calls, errors and durations per service and span name
///         histogram: {unit: ms, explicit: {buckets: [10ms, 100ms, 1s]}}
///         dimensions: [{name: http.method, default: GET}]
///         dimensions_cache_size: 1000
public struct ConnectorConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case serviceGraph(ServiceGraphSettings)
        case spanMetrics(SpanMetricsSettings)
        /// Between traces pipelines: what reaches it goes on, whole, into every pipeline that
        /// lists it under `receivers:`.
        case forward
        /// Between traces pipelines: each resource, span or request goes to the pipelines of the
        /// first route whose condition it meets, else to `default_pipelines`.
        case routing(RoutingSettings)
    }

    public var id: ComponentID
    public var kind: Kind

    public static let types = ["servicegraph", "spanmetrics", "forward", "routing"]

    /// forward and routing: connects traces pipelines, listed under the `receivers:` of the
    /// pipelines it feeds. The others derive metrics.
    public var joinsPipelines: Bool {
        switch kind {
        case .forward, .routing: return true
        case .serviceGraph, .spanMetrics: return false
        }
    }

    public init(id: ComponentID, settings: ConfigValue) throws {
        let path = "connectors.\(id)"
        self.id = id
        switch id.type {
        case "servicegraph": kind = .serviceGraph(try ServiceGraphSettings(settings, path: path))
        case "spanmetrics": kind = .spanMetrics(try SpanMetricsSettings(settings, path: path))
        case "forward":
            try settings.requireKnownKeys([], path: path)
            kind = .forward
        case "routing": kind = .routing(try RoutingSettings(settings, path: path))
        default:
            throw ConfigError(path, "unknown connector '\(id.type)'; expected one of \(Self.types.joined(separator: ", "))")
        }
    }

    /// How often the metrics go to pushing exporters (otlphttp); a scrape reads them when it comes.
    public var flushInterval: Duration {
        switch kind {
        case .serviceGraph(let s): return s.flushInterval
        case .spanMetrics(let s): return s.flushInterval
        case .forward, .routing: return .zero
        }
    }
}

/// The Collector's default latency buckets for both connectors.
private let defaultBuckets: [Duration] = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000].map { .milliseconds($0) }

private func parseBuckets(_ value: ConfigValue?, _ path: String) throws -> [Duration]? {
    guard let value, value != .null else { return nil }
    guard case .list(let items) = value, !items.isEmpty else { throw ConfigError(path, "must be a list of durations") }
    let list = try items.enumerated().map { try parseDuration($1, path: "\(path).\($0)") }
    guard zip(list, list.dropFirst()).allSatisfy({ $0 < $1 }) else { throw ConfigError(path, "must be in increasing order") }
    return list
}

private func cacheSize(_ value: ConfigValue?, _ path: String, _ fallback: Int) throws -> Int {
    guard let value, value != .null else { return fallback }
    return try parseCount(value, path: path, in: 1...1_000_000)
}

private func parseNames(_ value: ConfigValue?, _ path: String) throws -> [String] {
    guard let value, value != .null else { return [] }
    return try requireStringList(value, path)
}

/// A span or resource attribute that becomes a label; without `default`, series of spans that
/// lack it have no such label.
public struct MetricDimension: Sendable, Equatable {
    public var name: String
    public var defaultValue: String?
}

private func parseDimensions(_ value: ConfigValue?, _ path: String) throws -> [MetricDimension] {
    guard let value, value != .null else { return [] }
    guard case .list(let items) = value else { throw ConfigError(path, "must be a list of {name, default}") }
    return try items.enumerated().map { index, item in
        let itemPath = "\(path).\(index)"
        if let name = item.stringValue { return MetricDimension(name: name) }
        try item.requireKnownKeys(["name", "default"], path: itemPath)
        guard let name = item["name"] else { throw ConfigError("\(itemPath).name", "required") }
        return MetricDimension(name: try requireString(name, "\(itemPath).name"),
                               defaultValue: try item["default"].flatMap { $0 == .null ? nil : try requireString($0, "\(itemPath).default") })
    }
}

public struct ServiceGraphSettings: Sendable, Equatable {
    public var buckets = defaultBuckets
    /// Attributes of the client span (then its resource) and of the server span added to each
    /// edge as `client_<name>` and `server_<name>`.
    public var dimensions: [String] = []
    /// How long half of a call (a client span without its server span, or the reverse) waits
    /// for the other half.
    public var ttl: Duration = .seconds(2)
    /// Halves waiting at most; past it new halves are counted as dropped.
    public var maxItems = 1000
    /// Window over which trace completeness is measured.
    public var completenessWindow: Duration = .seconds(60)
    public var flushInterval: Duration = .seconds(60)
    public init() {}

    init(_ settings: ConfigValue, path: String) throws {
        // cache_loop, store_expiration_loop: expiry runs on every batch and scrape here.
        // virtual_node_*, database_name_attribute(s): unpaired halves are not drawn as virtual nodes.
        try settings.requireKnownKeys(["latency_histogram_buckets", "dimensions", "store", "completeness_window", "metrics_flush_interval",
                                       "metrics_exporter", "cache_loop", "store_expiration_loop", "virtual_node_peer_attributes",
                                       "virtual_node_extra_label", "database_name_attribute", "database_name_attributes",
                                       "exponential_histogram_max_size"], path: path)
        try settings["store"]?.requireKnownKeys(["ttl", "max_items"], path: "\(path).store")
        if let size = settings["exponential_histogram_max_size"], size != .null, size.intValue != 0 {
            throw ConfigError("\(path).exponential_histogram_max_size", CollectorKeys.exponentialHistograms)
        }
        for key in ["cache_loop", "store_expiration_loop"] { if let v = settings[key] { _ = try parseDuration(v, path: "\(path).\(key)") } }
        _ = try parseNames(settings["virtual_node_peer_attributes"], "\(path).virtual_node_peer_attributes")
        _ = try parseNames(settings["database_name_attributes"], "\(path).database_name_attributes")
        if let b = try parseBuckets(settings["latency_histogram_buckets"], "\(path).latency_histogram_buckets") { buckets = b }
        dimensions = try parseNames(settings["dimensions"], "\(path).dimensions")
        if let ttl = settings["store"]?["ttl"] { self.ttl = try parseDuration(ttl, path: "\(path).store.ttl") }
        maxItems = try cacheSize(settings["store"]?["max_items"], "\(path).store.max_items", maxItems)
        if let window = settings["completeness_window"] {
            completenessWindow = try parseDuration(window, path: "\(path).completeness_window")
            guard completenessWindow >= .seconds(1) else { throw ConfigError("\(path).completeness_window", "must be at least 1s") }
        }
        if let v = settings["metrics_flush_interval"] { flushInterval = try parseDuration(v, path: "\(path).metrics_flush_interval") }
    }
}

public struct SpanMetricsSettings: Sendable, Equatable {
    public static let defaultLabels = ["service.name", "span.name", "span.kind", "status.code"]

    public var buckets = defaultBuckets
    /// Durations are recorded in milliseconds (the Collector's default) or seconds.
    public var unitSeconds = false
    public var histogramDisabled = false
    public var dimensions: [MetricDimension] = []
    /// Default labels (`service.name`, `span.name`, `span.kind`, `status.code`) left out.
    public var excluded: Set<String> = []
    /// Metric names start with it (`traces.span.metrics.calls`, Prometheus `traces_span_metrics_calls_total`).
    public var namespace = "traces.span.metrics"
    /// Distinct series at most; spans of further series are counted in one overflow series.
    public var maxSeries = 1000
    /// Series without a new span for this long are no longer exported (nil: never).
    public var expiration: Duration?
    /// With `events.enabled`, the span events counted per these event attributes.
    public var eventDimensions: [MetricDimension]?
    public var delta = false
    public var flushInterval: Duration = .seconds(15)
    public init() {}

    init(_ settings: ConfigValue, path: String) throws {
        // resource_metrics_cache_size, resource_metrics_key_attributes, delta_temporality: series
        // are keyed by their labels alone here, so there is no per-resource cache to size.
        // exemplars: the Prometheus text format written here carries none.
        try settings.requireKnownKeys(["histogram", "dimensions", "exclude_dimensions", "dimensions_cache_size", "namespace",
                                       "aggregation_temporality", "metrics_flush_interval", "metrics_expiration", "exemplars",
                                       "events", "resource_metrics_cache_size", "resource_metrics_key_attributes",
                                       "delta_temporality", "aggregation_cardinality_limit"], path: path)
        let histogram = settings["histogram"]
        try histogram?.requireKnownKeys(["disable", "unit", "explicit", "exponential"], path: "\(path).histogram")
        try histogram?["explicit"]?.requireKnownKeys(["buckets"], path: "\(path).histogram.explicit")
        if let e = histogram?["exponential"], e != .null { throw ConfigError("\(path).histogram.exponential", CollectorKeys.exponentialHistograms) }
        if let b = try parseBuckets(histogram?["explicit"]?["buckets"], "\(path).histogram.explicit.buckets") { buckets = b }
        if let v = histogram?["disable"] { histogramDisabled = try parseBool(v, path: "\(path).histogram.disable") }
        switch try histogram?["unit"].map({ try requireString($0, "\(path).histogram.unit") }) {
        case nil, "ms": unitSeconds = false
        case "s": unitSeconds = true
        case let other?: throw ConfigError("\(path).histogram.unit", "'\(other)' is not a unit; expected ms or s")
        }
        dimensions = try parseDimensions(settings["dimensions"], "\(path).dimensions")
        for (index, name) in try parseNames(settings["exclude_dimensions"], "\(path).exclude_dimensions").enumerated() {
            guard Self.defaultLabels.contains(name) else {
                throw ConfigError("\(path).exclude_dimensions.\(index)", "'\(name)' is not a default dimension; expected one of \(Self.defaultLabels.joined(separator: ", "))")
            }
            excluded.insert(name)
        }
        let all = Self.defaultLabels.filter { !excluded.contains($0) } + dimensions.map(\.name)
        if let twice = all.first(where: { name in all.filter { $0 == name }.count > 1 }) {
            throw ConfigError("\(path).dimensions", "'\(twice)' is listed twice (the default dimensions are \(Self.defaultLabels.joined(separator: ", ")))")
        }
        if let v = settings["namespace"], v != .null { namespace = try requireString(v, "\(path).namespace") }
        maxSeries = try cacheSize(settings["dimensions_cache_size"] ?? settings["aggregation_cardinality_limit"], "\(path).dimensions_cache_size", maxSeries)
        _ = try cacheSize(settings["resource_metrics_cache_size"], "\(path).resource_metrics_cache_size", 1000)
        _ = try parseNames(settings["resource_metrics_key_attributes"], "\(path).resource_metrics_key_attributes")
        try settings["delta_temporality"]?.requireKnownKeys(["metric_timestamp_cache_size"], path: "\(path).delta_temporality")
        _ = try cacheSize(settings["delta_temporality"]?["metric_timestamp_cache_size"], "\(path).delta_temporality.metric_timestamp_cache_size", 10_000)
        switch try settings["aggregation_temporality"].map({ try requireString($0, "\(path).aggregation_temporality") }) {
        case nil, "AGGREGATION_TEMPORALITY_CUMULATIVE": delta = false
        case "AGGREGATION_TEMPORALITY_DELTA": delta = true
        case let other?:
            throw ConfigError("\(path).aggregation_temporality", "'\(other)' is not a temporality; expected AGGREGATION_TEMPORALITY_CUMULATIVE or AGGREGATION_TEMPORALITY_DELTA")
        }
        if let v = settings["metrics_flush_interval"] { flushInterval = try parseDuration(v, path: "\(path).metrics_flush_interval") }
        if let v = settings["metrics_expiration"] {
            let d = try parseDuration(v, path: "\(path).metrics_expiration")
            expiration = d == .zero ? nil : d
        }
        try settings["exemplars"]?.requireKnownKeys(["enabled", "max_per_data_point"], path: "\(path).exemplars")
        if let v = settings["exemplars"]?["enabled"] { _ = try parseBool(v, path: "\(path).exemplars.enabled") }
        if let events = settings["events"], events != .null {
            try events.requireKnownKeys(["enabled", "dimensions"], path: "\(path).events")
            if try events["enabled"].map({ try parseBool($0, path: "\(path).events.enabled") }) ?? false {
                eventDimensions = try parseDimensions(events["dimensions"], "\(path).events.dimensions")
                guard !eventDimensions!.isEmpty else { throw ConfigError("\(path).events.dimensions", "required when events are enabled") }
            }
        }
    }
}

/// The Collector's `routing` connector for traces.
///
///     connectors:
///       routing:
///         default_pipelines: [traces/other]
///         error_mode: ignore                       # propagate (default), ignore or silent
///         table:
///           - context: request                     # the request's headers (receiver include_metadata)
///             condition: request["X-Tenant"] == "acme"
///             pipelines: [traces/acme]
///           - condition: attributes["env"] == "prod"   # context resource (default): resource attributes
///             pipelines: [traces/prod]
///           - context: span
///             statement: route() where attributes["http.route"] == "/checkout"
///             pipelines: [traces/checkout]
public struct RoutingSettings: Sendable, Equatable {
    public enum Context: String, Sendable, Equatable {
        case resource, span, request
    }
    /// `request["key"] == "value"` (or `!=`): the request context's whole grammar.
    public struct RequestCondition: Sendable, Equatable {
        public var header: String
        public var value: String
        public var equal: Bool
    }
    public struct Route: Sendable, Equatable {
        public var context: Context
        /// An OTTL condition (resource and span contexts).
        public var condition: String
        public var request: RequestCondition?
        public var pipelines: [String]
    }
    public var routes: [Route] = []
    public var defaultPipelines: [String] = []
    /// propagate: a condition that fails to run fails the request; ignore and silent: the data
    /// goes to the default pipelines.
    public var propagateErrors = true

    init(_ settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["table", "default_pipelines", "error_mode", "match_once"], path: path)
        if let v = settings["match_once"] {
            // Removed in the Collector v0.120.0; `true` is what it does now.
            guard try parseBool(v, path: "\(path).match_once") else {
                throw ConfigError("\(path).match_once", "match_once: false was removed from the Collector's routing connector; split the table into several routers")
            }
        }
        switch try settings["error_mode"].map({ try requireString($0, "\(path).error_mode") }) {
        case nil, "propagate": propagateErrors = true
        case "ignore", "silent": propagateErrors = false
        case let other?: throw ConfigError("\(path).error_mode", "'\(other)' is not propagate, ignore or silent")
        }
        func pipelines(_ value: ConfigValue?, _ path: String) throws -> [String] {
            guard let value, value != .null else { return [] }
            guard case .list(let items) = value else { throw ConfigError(path, "must be a list of pipeline ids") }
            return try items.enumerated().map { try requireString($1, "\(path).\($0)") }
        }
        defaultPipelines = try pipelines(settings["default_pipelines"], "\(path).default_pipelines")
        guard case .list(let table)? = settings["table"], !table.isEmpty else {
            throw ConfigError("\(path).table", "required: a list of {condition or statement, pipelines}")
        }
        routes = try table.enumerated().map { index, item in
            let p = "\(path).table.\(index)"
            try item.requireKnownKeys(["context", "condition", "statement", "pipelines"], path: p)
            let contextName = try item["context"].map { try requireString($0, "\(p).context") } ?? "resource"
            guard let context = Context(rawValue: contextName) else {
                throw ConfigError("\(p).context", ["metric", "datapoint", "log"].contains(contextName)
                    ? "the \(contextName) context routes metrics or logs, which spanhost does not carry; use resource, span or request"
                    : "'\(contextName)' is not resource, span or request")
            }
            let condition = try item["condition"].map { try requireString($0, "\(p).condition") }
            let statement = try item["statement"].map { try requireString($0, "\(p).statement") }
            var text: String
            switch (condition, statement) {
            case (let c?, nil): text = c
            case (nil, let s?):
                guard context != .request else { throw ConfigError("\(p).statement", "the request context takes a condition, not a statement") }
                guard let range = s.range(of: #"^\s*route\(\s*\)\s+where\s+"#, options: .regularExpression) else {
                    throw ConfigError("\(p).statement", "must be `route() where <condition>`")
                }
                text = String(s[range.upperBound...])
            case (nil, nil): throw ConfigError(p, "give condition or statement")
            default: throw ConfigError(p, "give condition or statement, not both")
            }
            var request: RequestCondition?
            if context == .request {
                let pattern = #"^\s*request\[\s*"([^"]+)"\s*\]\s*(==|!=)\s*"([^"]*)"\s*$"#
                guard let regex = try? NSRegularExpression(pattern: pattern),
                      let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                      let key = Range(m.range(at: 1), in: text), let op = Range(m.range(at: 2), in: text),
                      let value = Range(m.range(at: 3), in: text) else {
                    throw ConfigError("\(p).condition", "the request context takes `request[\"key\"] == \"value\"` or `!=`, as the Collector")
                }
                request = RequestCondition(header: String(text[key]), value: String(text[value]), equal: text[op] == "==")
                text = ""
            }
            let list = try pipelines(item["pipelines"], "\(p).pipelines")
            guard !list.isEmpty else { throw ConfigError("\(p).pipelines", "required: the pipelines this route feeds") }
            return Route(context: context, condition: text, request: request, pipelines: list)
        }
    }

    /// Every pipeline a route or the default names.
    public var allPipelines: [String] { routes.flatMap(\.pipelines) + defaultPipelines }
}
