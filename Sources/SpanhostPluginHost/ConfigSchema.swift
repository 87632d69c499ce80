import CSpanhost
import SpanhostConfig

/// The config keys a plugin declares in its descriptor (ABI 1.2), and the check of an
/// instance's settings against them before `create` runs.
public struct ConfigSchema: Sendable, Equatable {
    public enum KeyType: UInt32, Sendable, CaseIterable {
        case string = 1, int, double, bool, duration, bytes, list, map, stringList, scalar

        /// As `spanhost plugins describe` and error messages name it.
        public var name: String {
            switch self {
            case .string: return "string"
            case .int: return "int"
            case .double: return "number"
            case .bool: return "bool"
            case .duration: return "duration"
            case .bytes: return "bytes"
            case .list: return "list"
            case .map: return "map"
            case .stringList: return "string list"
            case .scalar: return "scalar"
            }
        }

        /// What a value of this type looks like, for error messages.
        var example: String {
            switch self {
            case .string: return "a string"
            case .int: return "an integer"
            case .double: return "a number"
            case .bool: return "true or false"
            case .duration: return "a duration like 500ms, 5s or 1m30s"
            case .bytes: return "a size like 1048576, 512KiB or 64MiB"
            case .list: return "a list"
            case .map: return "a map"
            case .stringList: return "a list of strings (or one string)"
            case .scalar: return "a string, number or boolean"
            }
        }
    }

    public struct Key: Sendable, Equatable {
        /// Dotted, with "*" for any list item or map key.
        public var path: String
        public var type: KeyType
        public var required: Bool
        public var defaultValue: String?
        public var doc: String
        public init(path: String, type: KeyType, required: Bool, defaultValue: String?, doc: String) {
            self.path = path
            self.type = type
            self.required = required
            self.defaultValue = defaultValue
            self.doc = doc
        }
        var components: [String] { path.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
    }

    public let keys: [Key]

    public init(keys: [Key]) { self.keys = keys }

    /// Reads the C array, refusing entries a host cannot use.
    init(pointer: UnsafePointer<spanhost_config_key>, count: Int) throws(SchemaError) {
        var keys: [Key] = []
        for index in 0..<count {
            let entry = pointer[index]
            guard let pathPointer = entry.path, case let path = String(cString: pathPointer), !path.isEmpty,
                  !path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
                throw SchemaError(index: index, reason: "path is missing or has an empty part")
            }
            guard let type = KeyType(rawValue: entry.type) else {
                throw SchemaError(index: index, reason: "'\(path)' has unknown type \(entry.type)")
            }
            keys.append(Key(path: path, type: type, required: entry.required != 0,
                            defaultValue: entry.default_value.map { String(cString: $0) },
                            doc: entry.doc.map { String(cString: $0) } ?? ""))
        }
        self.keys = keys
    }

    /// Refuses a schema that declares a host key (see "Host keys" in spanhost.h): the host
    /// would read the key as its own.
    func refuseHostKeys(_ hostKeys: [String]) throws(SchemaError) {
        for (index, key) in keys.enumerated() {
            let top = key.components[0]
            if hostKeys.contains(top) || top.hasPrefix(SPANHOST_HOST_KEY_PREFIX) {
                throw SchemaError(index: index, reason: "'\(top)' is a host key (the host reads it for every component of this kind); "
                                  + "name the plugin's key otherwise")
            }
        }
    }

    public struct SchemaError: Error, CustomStringConvertible {
        var index: Int
        var reason: String
        public var description: String { "config_schema[\(index)]: \(reason)" }
    }

    /// A problem with one settings key: its dotted path and what is wrong.
    public struct Problem: Error, Equatable, CustomStringConvertible {
        public var key: String
        public var message: String
        public var description: String { "\(key): \(message)" }
    }

    /// The first problem in `settings`, or nil. Top-level keys in `hostKeys` belong to the host.
    public func check(_ settings: ConfigValue, hostKeys: [String] = []) -> Problem? {
        do {
            try walk(settings == .null ? .map([]) : settings, pattern: [], path: [], hostKeys: hostKeys)
            return nil
        } catch {
            return error
        }
    }

    private func matches(_ key: [String], prefix pattern: [String]) -> Bool {
        guard key.count >= pattern.count else { return false }
        return zip(key, pattern).allSatisfy { $0 == $1 }
    }

    /// The declared key at exactly `pattern`.
    private func key(at pattern: [String]) -> Key? { keys.first { $0.components == pattern } }

    /// Whether anything is declared below `pattern`.
    private func hasChildren(_ pattern: [String]) -> Bool {
        keys.contains { $0.components.count > pattern.count && matches($0.components, prefix: pattern) }
    }

    private func walk(_ value: ConfigValue, pattern: [String], path: [String], hostKeys: [String]) throws(Problem) {
        let dotted = path.joined(separator: ".")
        // A key declared with a plain type and with keys below takes either form: a list item
        // that is a statement or a group of statements.
        let eitherForm: Bool = {
            guard let declared = key(at: pattern), declared.type != .list, declared.type != .map, hasChildren(pattern),
                  case .map = value else { return false }
            return true
        }()
        if !eitherForm, let declared = key(at: pattern) {
            try typeCheck(value, declared, dotted)
            // A list or map with nothing declared below it is free-form: the plugin checks it.
            if (declared.type == .list || declared.type == .map) && !hasChildren(pattern) { return }
            if declared.type != .list && declared.type != .map { return }
        }
        switch value {
        case .map(let entries):
            let names = Set(keys.compactMap { key -> String? in
                let c = key.components
                return c.count > pattern.count && matches(c, prefix: pattern) ? c[pattern.count] : nil
            })
            for entry in entries {
                if path.isEmpty && hostKeys.contains(entry.key) { continue }
                let next = names.contains(entry.key) ? entry.key : names.contains("*") ? "*" : nil
                guard let next else {
                    let here = pattern.isEmpty ? "" : pattern.joined(separator: ".") + "."
                    let valid = names.filter { $0 != "*" }.sorted().map { here + $0 }
                    throw Problem(key: (path + [entry.key]).joined(separator: "."),
                                  message: valid.isEmpty ? "unknown key; the plugin takes no settings here"
                                      : "unknown key; valid keys here: \(valid.joined(separator: ", "))")
                }
                if entry.value == .null { continue }  // `key: ~` is the same as leaving it out
                try walk(entry.value, pattern: pattern + [next], path: path + [entry.key], hostKeys: hostKeys)
            }
            for required in keys where required.required {
                let c = required.components
                guard c.count == pattern.count + 1, matches(c, prefix: pattern), c.last != "*" else { continue }
                if !entries.contains(where: { $0.key == c.last! && $0.value != .null }) {
                    throw Problem(key: (path + [c.last!]).joined(separator: "."), message: "required: \(required.type.example)")
                }
            }
        case .list(let items):
            for (index, item) in items.enumerated() {
                try walk(item, pattern: pattern + ["*"], path: path + [String(index)], hostKeys: [])
            }
        default:
            if hasChildren(pattern) {
                throw Problem(key: dotted.isEmpty ? "(settings)" : dotted, message: "must be a map of settings")
            }
        }
    }

    private func typeCheck(_ value: ConfigValue, _ key: Key, _ path: String) throws(Problem) {
        let ok: Bool
        switch key.type {
        case .string, .scalar: ok = value.isScalar
        case .int: ok = value.intValue != nil
        case .double: ok = value.doubleValue != nil
        case .bool: ok = value.boolValue != nil
        case .duration: ok = (try? parseDuration(value, path: path)) != nil
        case .bytes: ok = (try? parseBytes(value, path: path)) != nil
        case .list: if case .list = value { ok = true } else { ok = false }
        case .map: if case .map = value { ok = true } else { ok = false }
        case .stringList:
            if case .list(let items) = value { ok = items.allSatisfy(\.isScalar) } else { ok = value.isScalar }
        }
        if !ok {
            throw Problem(key: path, message: "must be \(key.type.example), not \(value.shortDescription)")
        }
    }
}

extension ConfigValue {
    var isScalar: Bool {
        switch self {
        case .string, .int, .double, .bool: return true
        default: return false
        }
    }

    /// The value as an error message quotes it.
    var shortDescription: String {
        switch self {
        case .null: return "nothing"
        case .list: return "a list"
        case .map: return "a map"
        default: return "'\(stringValue ?? "")'"
        }
    }
}
