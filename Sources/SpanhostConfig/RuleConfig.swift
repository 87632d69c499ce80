/// One alert rule from the top-level `rules:` section, validated. A pipeline lists the rules it
/// evaluates under `rules:`; their events go to that pipeline's notifiers.
///
///     rules:
///       error_span:                    # every error span, deduplicated
///         group_wait: 1s
///         cooldown: 1m
///       error_rate/checkout:           # per service, over a sliding window
///         threshold: 0.05
///         min_count: 20
///         window: 1m
///       latency/p95:                   # per service (or service and span name)
///         percentile: 95
///         threshold: 2s
///         group_by: service            # or span_name
public struct RuleConfig: Sendable, Equatable {
    public enum Condition: Sendable, Equatable {
        /// Any span with status ERROR or an `exception` event.
        case errorSpan
        /// Errors / spans of one service over `window` above `threshold` (0...1).
        case errorRate(threshold: Double)
        /// The `percentile` of span durations over `window` above `threshold`.
        case latency(percentile: Double, threshold: Duration, bySpanName: Bool)
    }

    public var id: ComponentID
    public var condition: Condition
    /// Sliding window for error_rate and latency.
    public var window: Duration
    /// error_rate and latency: no verdict on fewer spans than this in the window.
    public var minCount: Int
    /// error_span: occurrences of one key within this time become one notification.
    public var groupWait: Duration
    /// After a notification for a key, further occurrences wait this long and are then
    /// reported together with their count. error_rate and latency: the least time between two
    /// "firing" notifications for one key.
    public var cooldown: Duration
    /// Only spans of these services count (empty: all).
    public var services: [String]

    public static let types = ["error_span", "error_rate", "latency"]

    public init(id: ComponentID, settings: ConfigValue) throws {
        let path = "rules.\(id)"
        self.id = id
        let allowed: [String]
        switch id.type {
        case "error_span": allowed = ["group_wait", "cooldown", "services"]
        case "error_rate": allowed = ["threshold", "min_count", "window", "cooldown", "services"]
        case "latency": allowed = ["percentile", "threshold", "min_count", "window", "group_by", "cooldown", "services"]
        default: throw ConfigError(path, "unknown rule type '\(id.type)'; expected \(Self.types.joined(separator: ", "))")
        }
        for entry in settings.mapEntries ?? [] where !allowed.contains(entry.key) {
            throw ConfigError("\(path).\(entry.key)", "unknown key; expected \(allowed.joined(separator: ", "))")
        }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let value = settings[key] else { return fallback }
            let d = try parseDuration(value, path: "\(path).\(key)")
            guard d > .zero || key == "group_wait" else { throw ConfigError("\(path).\(key)", "must be greater than zero") }
            return d
        }
        func number(_ key: String, _ fallback: Double, _ range: ClosedRange<Double>) throws -> Double {
            guard let value = settings[key] else { return fallback }
            guard let n = value.doubleValue, range.contains(n) else {
                throw ConfigError("\(path).\(key)", "must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        window = try duration("window", .seconds(60))
        groupWait = try duration("group_wait", .seconds(1))
        cooldown = try duration("cooldown", .seconds(60))
        minCount = Int(try number("min_count", 20, 1...1_000_000_000))
        if let list = settings["services"] {
            guard case .list(let items) = list else { throw ConfigError("\(path).services", "must be a list of service names") }
            services = try items.enumerated().map { try requireString($1, "\(path).services.\($0)") }
        } else {
            services = []
        }
        switch id.type {
        case "error_span":
            condition = .errorSpan
        case "error_rate":
            condition = .errorRate(threshold: try number("threshold", 0.05, 0...1))
        default:
            let bySpanName: Bool
            switch try settings["group_by"].map({ try requireString($0, "\(path).group_by") }) ?? "service" {
            case "service": bySpanName = false
            case "span_name": bySpanName = true
            case let other: throw ConfigError("\(path).group_by", "'\(other)' is not service or span_name")
            }
            condition = .latency(percentile: try number("percentile", 95, 1...99.99),
                                 threshold: try duration("threshold", .seconds(2)), bySpanName: bySpanName)
        }
    }
}
