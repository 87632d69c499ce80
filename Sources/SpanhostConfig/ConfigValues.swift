import Foundation

/// Reads a string (numbers are accepted in their spelling).
public func requireString(_ value: ConfigValue, _ path: String) throws -> String {
    guard let s = value.stringValue else { throw ConfigError(path, "must be a string, not \(value.kindName)") }
    return s
}

/// Reads a list of strings.
public func requireStringList(_ value: ConfigValue, _ path: String) throws -> [String] {
    guard case .list(let items) = value else { throw ConfigError(path, "must be a list of strings, not \(value.kindName)") }
    return try items.enumerated().map { try requireString($1, "\(path).\($0)") }
}

/// Durations as the Collector writes them: "200ms", "5s", "1m30s", "1h"; a bare number is seconds.
public func parseDuration(_ value: ConfigValue, path: String) throws -> Duration {
    /// Checked in floating point before any integer conversion, so no value can overflow.
    func checked(_ ms: Double, _ text: String) throws -> Duration {
        guard ms.isFinite, ms >= 0 else { throw ConfigError(path, "'\(text)' must be a non-negative duration") }
        guard ms <= maxConfigDurationMs else {
            throw ConfigError(path, "'\(text)' is too long; the longest duration accepted is \(Int(maxConfigDurationMs / 3_600_000))h")
        }
        return .nanoseconds(Int64((ms * 1_000_000).rounded()))
    }
    if let seconds = value.doubleValue, value.stringValue.map({ Double($0) != nil }) ?? true {
        guard seconds >= 0 else { throw ConfigError(path, "must not be negative") }
        return try checked(seconds * 1000, value.stringValue ?? "")
    }
    guard let text = value.stringValue, !text.isEmpty else {
        throw ConfigError(path, "must be a duration like 500ms, 5s or 1m")
    }
    var totalMs = 0.0
    var number = ""
    var unit = ""
    func flush() throws {
        guard let n = Double(number) else { throw ConfigError(path, "'\(text)' is not a duration like 500ms, 5s or 1m") }
        let ms: Double
        switch unit {
        case "ns": ms = n / 1_000_000
        case "us", "µs": ms = n / 1000
        case "ms": ms = n
        case "s": ms = n * 1000
        case "m": ms = n * 60_000
        case "h": ms = n * 3_600_000
        default: throw ConfigError(path, "'\(text)' has unknown unit '\(unit)'; use ms, s, m or h")
        }
        totalMs += ms
        number = ""
        unit = ""
    }
    for ch in text {
        if ch.isNumber || ch == "." {
            if !unit.isEmpty { try flush() }
            number.append(ch)
        } else {
            unit.append(ch)
        }
    }
    try flush()
    return try checked(totalMs, text)
}

/// The longest duration a config value may give: ten years. Longer values are mistakes, and
/// refusing them keeps every later conversion (nanoseconds in 64 bits, deadlines) in range.
public let maxConfigDurationMs: Double = 10 * 365 * 86_400_000

extension Duration {
    /// The duration in seconds, for APIs that take a TimeInterval.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in milliseconds, for figures shown to people.
    public var milliseconds: Double { seconds * 1000 }
}
