/// One alert rule from the top-level `rules:` section, validated. A pipeline lists the rules it
/// evaluates under `rules:`; their events go to that pipeline's notifiers.
///
///     rules:
///       error_span:                    # every error span, deduplicated by signature
///         group_wait: 1s
///         cooldown: 1m
///         repeat_wait: 20s             # repeats in a cooldown go out this long after the first
///         signature: [service, span_name, exception.type]   # what makes two errors the same
///         fold_into_error_flow: true   # with error_flow in the pipeline, its event stands for the trace
///         fold_wait: 30s               # ... unless none came for the trace by then
///       error_rate/checkout:           # per service, over a sliding window
///         per: request                 # what is counted: request (root and SERVER spans), trace (roots), span
///         threshold: 0.05
///         min_count: 20
///         window: 1m
///       latency/p95:                   # per service (or service and span name)
///         percentile: 95
///         threshold: 2s
///         resolve_threshold: 1500ms    # resolves only below this (default: threshold)
///         for: 30s                     # fires only once the condition held this long
///         group_by: service            # or span_name
///       raised:                        # how events raised by processors (error_flow) are deduplicated
///         group_wait: 1s
///         cooldown: 1m
///         repeat_wait: 20s
///       no_data:                       # fewer than min_count spans in window
///         window: 5m
///         min_count: 1
///         group_by: service            # per service seen (or listed in services), or total
///
/// error_rate and latency resolve only on evidence: at least min_count spans in the window, under
/// the resolve threshold. A service that falls silent stays firing (no_data is the rule for that).
public struct RuleConfig: Sendable, Equatable {
    public enum Condition: Sendable, Equatable {
        /// Any span with status ERROR or an `exception` event.
        case errorSpan
        /// Errors / spans of one service over `window` above `threshold` (0...1).
        case errorRate(threshold: Double)
        /// The `percentile` of span durations over `window` above `threshold`.
        case latency(percentile: Double, threshold: Duration, bySpanName: Bool)
        /// Fewer than `minCount` spans over `window`, per service or in total.
        case noData(byService: Bool)
        /// Not a condition: the deduplication (`group_wait`, `cooldown`) of events processors
        /// raise (error_flow), for the pipelines that list it.
        case raised
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
    /// error_span and raised: occurrences during a cooldown are reported at most this long
    /// after the first of them (or when the cooldown ends, if sooner).
    public var repeatWait: Duration
    /// error_span: what makes two error spans the same error (the deduplication key): `service`,
    /// `span_name`, `exception.type`, `exception.message`, `status_message`, or a span
    /// attribute's name.
    public var signature: [String] = ["service", "span_name", "exception.type"]
    /// error_rate and latency: which spans are counted.
    public enum Unit: String, Sendable, Equatable {
        /// Requests a service served: root spans and SERVER spans (the default).
        case request
        /// Traces: root spans only (a trace's entry, erroneous when it is).
        case trace
        /// Every span.
        case span
    }
    public var per = Unit.request
    /// Only spans of these services count (empty: all).
    public var services: [String]
    /// error_span, in a pipeline with an error_flow processor: error spans are held for their
    /// trace's error_flow event, which stands for them, and sent on their own only when no such
    /// event came within `foldWait`. nil: never folded.
    public var foldWait: Duration?
    /// error_rate and latency: how long the condition must hold before it fires.
    public var holdFor: Duration
    /// error_rate (a rate) and latency (milliseconds): a firing key resolves only at or under
    /// this; nil: the threshold itself.
    public var resolveThreshold: Double?
    /// `where`: OTTL conditions; only spans for which one holds count (empty: all).
    public var whereConditions: [String] = []

    public static let types = ["error_span", "error_rate", "latency", "no_data", "raised"]

    public init(id: ComponentID, settings: ConfigValue) throws {
        let path = "rules.\(id)"
        self.id = id
        let allowed: [String]
        switch id.type {
        case "error_span": allowed = ["group_wait", "cooldown", "repeat_wait", "signature", "services", "where", "fold_into_error_flow", "fold_wait"]
        case "raised": allowed = ["group_wait", "cooldown", "repeat_wait"]
        case "error_rate": allowed = ["threshold", "resolve_threshold", "for", "min_count", "window", "cooldown", "services", "where", "per"]
        case "latency": allowed = ["percentile", "threshold", "resolve_threshold", "for", "min_count", "window", "group_by", "cooldown", "services", "where", "per"]
        case "no_data": allowed = ["window", "min_count", "group_by", "cooldown", "services", "where"]
        default: throw ConfigError(path, "unknown rule type '\(id.type)'; expected \(Self.types.joined(separator: ", "))")
        }
        for entry in settings.mapEntries ?? [] where !allowed.contains(entry.key) {
            throw ConfigError("\(path).\(entry.key)", "unknown key; expected \(allowed.joined(separator: ", "))")
        }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let value = settings[key] else { return fallback }
            let d = try parseDuration(value, path: "\(path).\(key)")
            guard d > .zero || key == "group_wait" || key == "for" else { throw ConfigError("\(path).\(key)", "must be greater than zero") }
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
        repeatWait = min(try duration("repeat_wait", .seconds(20)), cooldown)
        if let value = settings["per"] {
            guard let unit = value.stringValue.flatMap(Unit.init(rawValue:)) else {
                throw ConfigError("\(path).per", "must be request (root and SERVER spans), trace (root spans) or span")
            }
            per = unit
        }
        if let value = settings["signature"] {
            signature = try requireStringList(value, "\(path).signature")
            guard !signature.isEmpty else { throw ConfigError("\(path).signature", "name at least one field, e.g. [service, span_name]") }
        }
        minCount = Int(try number("min_count", id.type == "no_data" ? 1 : 20, 1...1_000_000_000))
        holdFor = try duration("for", .zero)
        if let list = settings["services"] {
            guard case .list(let items) = list else { throw ConfigError("\(path).services", "must be a list of service names") }
            services = try items.enumerated().map { try requireString($1, "\(path).services.\($0)") }
        } else {
            services = []
        }
        switch settings["where"] {
        case .list(let items)?: whereConditions = try items.enumerated().map { try requireString($1, "\(path).where.\($0)") }
        case let value?: whereConditions = [try requireString(value, "\(path).where")]
        case nil: break
        }
        switch id.type {
        case "error_span":
            condition = .errorSpan
            let fold = try settings["fold_into_error_flow"].map { value -> Bool in
                guard let b = value.boolValue else { throw ConfigError("\(path).fold_into_error_flow", "must be true or false") }
                return b
            } ?? true
            foldWait = fold ? try duration("fold_wait", .seconds(30)) : nil
        case "raised":
            condition = .raised
        case "error_rate":
            let threshold = try number("threshold", 0.05, 0...1)
            condition = .errorRate(threshold: threshold)
            if settings["resolve_threshold"] != nil {
                let resolve = try number("resolve_threshold", threshold, 0...threshold)
                resolveThreshold = resolve
            }
        case "no_data":
            switch try settings["group_by"].map({ try requireString($0, "\(path).group_by") }) ?? "service" {
            case "service": condition = .noData(byService: true)
            case "total": condition = .noData(byService: false)
            case let other: throw ConfigError("\(path).group_by", "'\(other)' is not service or total")
            }
        default:
            let bySpanName: Bool
            switch try settings["group_by"].map({ try requireString($0, "\(path).group_by") }) ?? "service" {
            case "service": bySpanName = false
            case "span_name": bySpanName = true
            case let other: throw ConfigError("\(path).group_by", "'\(other)' is not service or span_name")
            }
            let threshold = try duration("threshold", .seconds(2))
            condition = .latency(percentile: try number("percentile", 95, 1...99.99), threshold: threshold, bySpanName: bySpanName)
            if settings["resolve_threshold"] != nil {
                let resolve = try duration("resolve_threshold", threshold)
                guard resolve <= threshold else {
                    throw ConfigError("\(path).resolve_threshold", "must not be above threshold (\(threshold))")
                }
                resolveThreshold = resolve.milliseconds
            }
        }
    }
}
