/// A component id as written in the config: `type` or `type/name`.
public struct ComponentID: Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var name: String?

    public init(type: String, name: String? = nil) {
        self.type = type
        self.name = name
    }

    /// The plugin this component runs: the one its type names, or the first-party plugin of a
    /// Collector type spelled another way (the Collector now calls otlphttp `otlp_http`; its
    /// `nop` exporter discards, as `null` does).
    public var pluginName: String { ["otlp_http": "otlphttp", "nop": "null"][type] ?? type }

    public init(parsing text: String, path: String) throws {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let type = parts.first, !type.isEmpty, !type.contains(where: { $0.isWhitespace }) else {
            throw ConfigError(path, "'\(text)' is not a valid id: use type or type/name")
        }
        self.type = String(type)
        if parts.count == 2 {
            guard !parts[1].isEmpty else { throw ConfigError(path, "'\(text)' has an empty name after '/'") }
            self.name = String(parts[1])
        }
    }

    public var description: String { name.map { "\(type)/\($0)" } ?? type }
}

public enum ComponentKind: String, Sendable, CaseIterable {
    case receiver, processor, exporter, notifier

    /// The config section that defines components of this kind.
    public var section: String { rawValue + "s" }
}

/// One configured component: its id and its settings map.
public struct ComponentConfig: Sendable, Equatable {
    public var id: ComponentID
    public var kind: ComponentKind
    public var settings: ConfigValue
}

public struct PipelineConfig: Sendable, Equatable {
    public var id: String
    public var receivers: [ComponentID]
    public var processors: [ComponentID]
    public var exporters: [ComponentID]
    public var notifiers: [ComponentID]
    /// Alert rules evaluated on every batch entering the pipeline; their events go to `notifiers`.
    public var rules: [ComponentID] = []
    /// Connectors listed under `exporters:`: they see what the exporters get.
    public var connectors: [ComponentID] = []
    /// `loadbalancing` exporters listed under `exporters:` (see LoadBalancerConfig).
    public var balancers: [ComponentID] = []
}

/// host:port, as in `127.0.0.1:4318`.
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String, path: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port)
        else { throw ConfigError(path, "'\(text)' is not host:port") }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "0.0.0.0" : host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
