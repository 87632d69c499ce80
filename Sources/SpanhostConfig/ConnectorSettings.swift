/// A `connectors:` entry: telemetry the host derives from the spans of the pipelines that list
/// it under `exporters:` (as the Collector's connectors), served at /metrics and /status.
///
///     connectors:
///       servicegraph:                  # calls between services: CLIENT/SERVER and PRODUCER/CONSUMER pairs
///         latency_histogram_buckets: [10ms, 100ms, 1s]
///         store: {ttl: 2s, max_items: 1000}
///         completeness_window: 1m      # share of traces with a root span, per service
///       spanmetrics:                   # calls, errors and durations per service and span name
///         histogram: {explicit: {buckets: [10ms, 100ms, 1s]}}
///         dimensions_cache_size: 1000
public struct ConnectorConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case serviceGraph(ServiceGraphSettings)
        case spanMetrics(SpanMetricsSettings)
    }

    public var id: ComponentID
    public var kind: Kind

    public static let types = ["servicegraph", "spanmetrics"]

    public init(id: ComponentID, settings: ConfigValue) throws {
        let path = "connectors.\(id)"
        self.id = id
        func check(_ allowed: [String], in value: ConfigValue?, at path: String) throws {
            for entry in value?.mapEntries ?? [] where !allowed.contains(entry.key) {
                throw ConfigError("\(path).\(entry.key)", "unknown key; expected \(allowed.joined(separator: ", "))")
            }
        }
        func buckets(_ value: ConfigValue?, _ path: String) throws -> [Duration]? {
            guard let value, value != .null else { return nil }
            guard case .list(let items) = value, !items.isEmpty else { throw ConfigError(path, "must be a list of durations") }
            let list = try items.enumerated().map { try parseDuration($1, path: "\(path).\($0)") }
            guard zip(list, list.dropFirst()).allSatisfy({ $0 < $1 }) else { throw ConfigError(path, "must be in increasing order") }
            return list
        }
        func count(_ value: ConfigValue?, _ path: String, _ fallback: Int) throws -> Int {
            guard let value, value != .null else { return fallback }
            guard let n = value.intValue, n >= 1, n <= 1_000_000 else { throw ConfigError(path, "must be an integer from 1 to 1000000") }
            return Int(n)
        }
        switch id.type {
        case "servicegraph":
            try check(["latency_histogram_buckets", "store", "completeness_window"], in: settings, at: path)
            try check(["ttl", "max_items"], in: settings["store"], at: "\(path).store")
            var s = ServiceGraphSettings()
            if let b = try buckets(settings["latency_histogram_buckets"], "\(path).latency_histogram_buckets") { s.buckets = b }
            if let ttl = settings["store"]?["ttl"] { s.ttl = try parseDuration(ttl, path: "\(path).store.ttl") }
            s.maxItems = try count(settings["store"]?["max_items"], "\(path).store.max_items", s.maxItems)
            if let window = settings["completeness_window"] {
                s.completenessWindow = try parseDuration(window, path: "\(path).completeness_window")
                guard s.completenessWindow >= .seconds(1) else { throw ConfigError("\(path).completeness_window", "must be at least 1s") }
            }
            kind = .serviceGraph(s)
        case "spanmetrics":
            try check(["histogram", "dimensions_cache_size"], in: settings, at: path)
            try check(["explicit"], in: settings["histogram"], at: "\(path).histogram")
            try check(["buckets"], in: settings["histogram"]?["explicit"], at: "\(path).histogram.explicit")
            var s = SpanMetricsSettings()
            if let b = try buckets(settings["histogram"]?["explicit"]?["buckets"], "\(path).histogram.explicit.buckets") { s.buckets = b }
            s.maxSeries = try count(settings["dimensions_cache_size"], "\(path).dimensions_cache_size", s.maxSeries)
            kind = .spanMetrics(s)
        default:
            throw ConfigError(path, "unknown connector '\(id.type)'; expected \(Self.types.joined(separator: " or "))")
        }
    }
}

public struct ServiceGraphSettings: Sendable, Equatable {
    /// Upper bounds of the latency histogram buckets (the Collector's defaults).
    public var buckets: [Duration] = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000].map { .milliseconds($0) }
    /// How long half of a call (a client span without its server span, or the reverse) waits
    /// for the other half.
    public var ttl: Duration = .seconds(2)
    /// Halves waiting at most; past it new halves are counted as dropped.
    public var maxItems = 1000
    /// Window over which trace completeness is measured.
    public var completenessWindow: Duration = .seconds(60)
    public init() {}
}

public struct SpanMetricsSettings: Sendable, Equatable {
    public var buckets: [Duration] = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000].map { .milliseconds($0) }
    /// Distinct (service, span name, kind, status) series at most; spans of further series are
    /// counted in one overflow series.
    public var maxSeries = 1000
    public init() {}
}
