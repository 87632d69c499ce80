import Yams

/// Turns YAML text into a `ConfigValue`, expanding `${env:VAR}`, `${env:VAR:-default}` and `$$`
/// in every scalar the way the OpenTelemetry Collector does.
public enum YAMLLoader {
    /// A `${NAME}` without a default whose variable is not set: it expands to nothing, as in the
    /// Collector, and an error at its path names it.
    public struct UnsetVariable: Sendable, Equatable {
        public var path: String
        public var name: String
    }

    public static func load(_ text: String, environment: [String: String]) throws -> ConfigValue {
        try loadNoting(text, environment: environment).value
    }

    /// The value, and the unset variables it referenced.
    public static func loadNoting(_ text: String, environment: [String: String]) throws -> (value: ConfigValue, unset: [UnsetVariable]) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError("", "not valid YAML: \(error)")
        }
        guard let node else { return (.emptyMap, []) }
        var unset: [UnsetVariable] = []
        return (try convert(node, path: "", environment: environment, unset: &unset), unset)
    }

    private static func convert(_ node: Node, path: String, environment: [String: String],
                                unset: inout [UnsetVariable]) throws -> ConfigValue {
        switch node {
        case .scalar(let scalar):
            let (expanded, missing) = try expandNoting(scalar.string, path: path, environment: environment)
            unset += missing.map { UnsetVariable(path: path, name: $0) }
            // A quoted scalar stays a string; a plain one is typed by its (expanded) spelling.
            return scalar.style == .plain ? typed(expanded) : .string(expanded)
        case .mapping(let mapping):
            var entries: [ConfigValue.Entry] = []
            for (key, value) in mapping {
                guard let name = key.string else { throw ConfigError(path, "map keys must be strings") }
                let childPath = path.isEmpty ? name : "\(path).\(name)"
                if entries.contains(where: { $0.key == name }) { throw ConfigError(childPath, "key appears twice") }
                entries.append(.init(key: name, value: try convert(value, path: childPath, environment: environment, unset: &unset)))
            }
            return .map(entries)
        case .sequence(let sequence):
            var items: [ConfigValue] = []
            for (index, item) in sequence.enumerated() {
                items.append(try convert(item, path: "\(path).\(index)", environment: environment, unset: &unset))
            }
            return .list(items)
        case .alias:
            throw ConfigError(path, "YAML aliases are not supported")
        }
    }

    /// Types a plain scalar the way YAML 1.2's core schema does, except that the word `null`
    /// stays a string: it is the name of the null exporter (`exporters: [null]`). Write `~` or
    /// nothing for an empty value.
    static func typed(_ text: String) -> ConfigValue {
        switch text {
        case "", "~": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: break
        }
        if let i = Int64(text) ?? underscored(text) { return .int(i) }
        if text.first.map({ $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." }) == true, let d = Double(text) {
            return .double(d)
        }
        return .string(text)
    }

    /// `100_000`: an integer with underscores between its digits, as the Collector's YAML reads it.
    static func underscored(_ text: String) -> Int64? {
        let digits = text.drop { $0 == "-" || $0 == "+" }
        guard text.contains("_"), digits.first?.isASCII == true, digits.first?.isNumber == true, digits.last != "_",
              digits.allSatisfy({ $0 == "_" || ($0.isASCII && $0.isNumber) }), text.count - digits.count <= 1
        else { return nil }
        return Int64(text.filter { $0 != "_" })
    }

    /// Expands `${env:NAME}`, `${NAME}`, `${env:NAME:-default}` and `$$`. An unset variable without a
    /// default expands to the empty string, as in the Collector.
    public static func expand(_ text: String, path: String, environment: [String: String]) throws -> String {
        try expandNoting(text, path: path, environment: environment).text
    }

    /// `expand`, with the names of the unset variables it met.
    static func expandNoting(_ text: String, path: String, environment: [String: String]) throws -> (text: String, unset: [String]) {
        guard text.contains("$") else { return (text, []) }
        var unset: [String] = []
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.first == "$" {
                out += "$"
                rest = after.dropFirst()
            } else if after.first == "{" {
                guard let close = after.firstIndex(of: "}") else {
                    throw ConfigError(path, "unterminated '${' in \"\(text)\"")
                }
                let inner = after[after.index(after: after.startIndex)..<close]
                // `${NAME}` is `${env:NAME}`, as in the Collector, whose default scheme is env.
                let bare = inner.prefix { $0 != ":" }.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
                    && (inner.firstIndex(of: ":").map { inner[$0...].hasPrefix(":-") } ?? true)
                guard inner.hasPrefix("env:") || bare else {
                    throw ConfigError(path, "unsupported substitution '${\(inner)}': use ${NAME}, ${env:NAME} or ${env:NAME:-default}")
                }
                let spec = inner.hasPrefix("env:") ? inner.dropFirst(4) : inner
                let name: Substring
                var fallback: Substring? = nil
                if let sep = spec.range(of: ":-") {
                    name = spec[..<sep.lowerBound]
                    fallback = spec[sep.upperBound...]
                } else {
                    name = spec
                }
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw ConfigError(path, "invalid environment variable name '\(name)'")
                }
                if let value = environment[String(name)], !(value.isEmpty && fallback != nil) {
                    out += value
                } else {
                    out += fallback ?? ""
                    if fallback == nil { unset.append(String(name)) }
                }
                rest = after[after.index(after: close)...]
            } else {
                out += "$"
                rest = after
            }
        }
        out += rest
        return (out, unset)
    }
}

extension ConfigError {
    /// This error, saying which unset variables its key (or a key below it) came from.
    public func naming(_ unset: [YAMLLoader.UnsetVariable]) -> ConfigError {
        let names = unset.filter { $0.path == path || $0.path.hasPrefix(path + ".") || path.hasPrefix($0.path + ".") }.map(\.name)
        var named = self
        named.more = more.map { $0.naming(unset) }
        guard !names.isEmpty else { return named }
        let list = Array(Set(names)).sorted().map { "${\($0)}" }.joined(separator: ", ")
        named.message = "\(message) (\(list) \(Set(names).count == 1 ? "is" : "are") not set, so it expanded to nothing)"
        return named
    }
}
