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

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return Double(s)
        default: return nil
        }
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
