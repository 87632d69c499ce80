/// A config value as written in YAML, with map keys kept in file order.
public indirect enum ConfigValue: Sendable, Equatable {
    case null
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case list([ConfigValue])
    case map([Entry])

    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: ConfigValue
        public init(key: String, value: ConfigValue) {
            self.key = key
            self.value = value
        }
    }

    public static let emptyMap = ConfigValue.map([])

    /// The value at `key` of a map, nil otherwise.
    public subscript(key: String) -> ConfigValue? {
        guard case .map(let entries) = self else { return nil }
        return entries.first(where: { $0.key == key })?.value
    }

    /// Follows a dotted path: map keys by name, list items by index ("actions.0.key").
    /// Keys that contain dots themselves ("properties.sasl.mechanism" where the key is
    /// "sasl.mechanism") match whole: the longest key that fits wins. The empty path is the
    /// value itself.
    public func lookup(_ path: String) -> ConfigValue? {
        lookup(parts: path.split(separator: ".", omittingEmptySubsequences: true)[...])
    }

    private func lookup(parts: ArraySlice<Substring>) -> ConfigValue? {
        guard let first = parts.first else { return self }
        switch self {
        case .map:
            for end in stride(from: parts.endIndex, to: parts.startIndex, by: -1) {
                let key = parts[parts.startIndex..<end].joined(separator: ".")
                if let next = self[key], let found = next.lookup(parts: parts[end...]) { return found }
            }
            return nil
        case .list(let items):
            guard let index = Int(first), items.indices.contains(index) else { return nil }
            return items[index].lookup(parts: parts.dropFirst())
        default:
            return nil
        }
    }

    public var mapEntries: [Entry]? {
        if case .map(let entries) = self { return entries }
        return nil
    }

    /// Strings as written; numbers and booleans in their YAML spelling.
    public var stringValue: String? {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return String(b)
        default: return nil
        }
    }

    /// Integers, and strings that spell one (values that came from `${env:...}`).
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9.2e18: return Int64(d)
        case .string(let s): return Int64(s)
        default: return nil
        }
    }

    /// Finite numbers only: no setting means infinity or NaN, and a conversion of either to an
    /// integer traps. Every number of the host, and every plugin's through the host table,
    /// is read here or in `intValue`.
    public var doubleValue: Double? {
        let d: Double?
        switch self {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        case .string(let s): d = Double(s)
        default: d = nil
        }
        return d.flatMap { $0.isFinite ? $0 : nil }
    }

    public var boolValue: Bool? {
        switch self {
        case .bool(let b): return b
        case .string(let s):
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: return nil
            }
        default: return nil
        }
    }

    /// A short name of the kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a number"
        case .bool: return "a boolean"
        case .list: return "a list"
        case .map: return "a map"
        }
    }
}

/// A tagged JSON form that keeps every case and the order of map keys: how settings reach an
/// isolated plugin's process.
extension ConfigValue: Codable {
    private enum Tag: String, Codable { case null, string, int, double, bool, list, map }
    private enum Keys: String, CodingKey { case t, v }
    private struct Pair: Codable {
        var key: String
        var value: ConfigValue
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .null: try c.encode(Tag.null, forKey: .t)
        case .string(let v): try c.encode(Tag.string, forKey: .t); try c.encode(v, forKey: .v)
        case .int(let v): try c.encode(Tag.int, forKey: .t); try c.encode(v, forKey: .v)
        case .double(let v): try c.encode(Tag.double, forKey: .t); try c.encode(String(v), forKey: .v)
        case .bool(let v): try c.encode(Tag.bool, forKey: .t); try c.encode(v, forKey: .v)
        case .list(let v): try c.encode(Tag.list, forKey: .t); try c.encode(v, forKey: .v)
        case .map(let v): try c.encode(Tag.map, forKey: .t); try c.encode(v.map { Pair(key: $0.key, value: $0.value) }, forKey: .v)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        switch try c.decode(Tag.self, forKey: .t) {
        case .null: self = .null
        case .string: self = .string(try c.decode(String.self, forKey: .v))
        case .int: self = .int(try c.decode(Int64.self, forKey: .v))
        case .double: self = .double(Double(try c.decode(String.self, forKey: .v)) ?? .nan)
        case .bool: self = .bool(try c.decode(Bool.self, forKey: .v))
        case .list: self = .list(try c.decode([ConfigValue].self, forKey: .v))
        case .map: self = .map(try c.decode([Pair].self, forKey: .v).map { Entry(key: $0.key, value: $0.value) })
        }
    }
}

extension ConfigValue {
    /// `self` with `overlay` on top, as the Collector merges several --config files: maps merge
    /// key by key (recursively; new keys after the existing ones), anything else in the overlay
    /// (a scalar, a list) replaces what was there.
    public func merged(with overlay: ConfigValue) -> ConfigValue {
        guard case .map(var entries) = self, case .map(let top) = overlay else { return overlay }
        for entry in top {
            if let index = entries.firstIndex(where: { $0.key == entry.key }) {
                entries[index].value = entries[index].value.merged(with: entry.value)
            } else {
                entries.append(entry)
            }
        }
        return .map(entries)
    }
}
