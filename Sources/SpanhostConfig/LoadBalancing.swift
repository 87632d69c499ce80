/// The Collector's `loadbalancing` exporter: every span of a trace (routing_key traceID) or of
/// a service (routing_key service) goes to the same backend, picked on a consistent-hash ring,
/// so a change of backends moves only the keys it must. Each backend is an `otlphttp` exporter
/// with its own queue and retries; spanhost speaks OTLP/HTTP, so the protocol is `otlp_http`.
///
///     exporters:
///       loadbalancing:
///         routing_key: traceID                 # or service
///         protocol:
///           otlp_http: {timeout: 5s, compression: gzip}   # otlphttp settings, endpoint from the resolver
///         resolver:
///           static: {hostnames: [backend-1:4318, backend-2:4318]}
public struct LoadBalancerConfig: Sendable, Equatable {
    public enum RoutingKey: String, Sendable, Equatable {
        case traceID, service
    }
    public var id: ComponentID
    public var routingKey: RoutingKey
    public struct Backend: Sendable, Equatable {
        public var hostname: String
        public var exporter: ComponentID
    }
    /// One otlphttp exporter per hostname, in the resolver's order; their ids name the
    /// balancer and the hostname, so a reload keeps the ones still listed.
    public var backends: [Backend] = []

    /// Reads the balancer and makes its backends' exporter components.
    static func parse(_ component: ComponentConfig) throws -> (balancer: LoadBalancerConfig, backends: [ComponentConfig]) {
        let path = "exporters.\(component.id)"
        let settings = component.settings
        try settings.requireKnownKeys(["routing_key", "protocol", "resolver", "timeout", "retry_on_failure", "sending_queue"], path: path)
        let keyName = try settings["routing_key"].map { try requireString($0, "\(path).routing_key") } ?? "traceID"
        guard let key = RoutingKey(rawValue: keyName) else {
            throw ConfigError("\(path).routing_key", ["resource", "metric", "streamID", "attributes"].contains(keyName)
                ? "routing_key \(keyName) balances metrics or logs, which spanhost does not carry; use traceID or service"
                : "'\(keyName)' is not traceID or service")
        }
        guard let protocolSettings = settings["protocol"], protocolSettings != .null else {
            throw ConfigError("\(path).protocol", "required: otlp_http with the settings of an otlphttp exporter")
        }
        try protocolSettings.requireKnownKeys(["otlp", "otlp_http", "otlphttp"], path: "\(path).protocol")
        if protocolSettings["otlp"] != nil {
            throw ConfigError("\(path).protocol.otlp", "OTLP over gRPC is not supported by spanhost; use protocol.otlp_http (backends' port 4318)")
        }
        let backend = protocolSettings["otlp_http"] ?? protocolSettings["otlphttp"] ?? .emptyMap
        if backend["endpoint"] != nil {
            throw ConfigError("\(path).protocol.otlp_http.endpoint", "the resolver gives each backend's endpoint")
        }
        guard let resolver = settings["resolver"], resolver != .null else {
            throw ConfigError("\(path).resolver", "required: static: {hostnames: [host:port, ...]}")
        }
        try resolver.requireKnownKeys(["static", "dns", "k8s", "aws_cloud_map"], path: "\(path).resolver")
        for other in ["dns", "k8s", "aws_cloud_map"] where resolver[other] != nil {
            throw ConfigError("\(path).resolver.\(other)", "Collector key `\(other)` is not supported by spanhost: list the backends under resolver.static.hostnames (a reload applies a new list)")
        }
        try resolver["static"]?.requireKnownKeys(["hostnames"], path: "\(path).resolver.static")
        guard case .list(let items)? = resolver["static"]?["hostnames"], !items.isEmpty else {
            throw ConfigError("\(path).resolver.static.hostnames", "required: the backends, host:port each")
        }
        var balancer = LoadBalancerConfig(id: component.id, routingKey: key)
        var exporters: [ComponentConfig] = []
        // The balancer's own queue, retry and timeout apply to each backend unless its protocol sets them.
        var shared: [ConfigValue.Entry] = []
        for name in ["timeout", "retry_on_failure", "sending_queue"] {
            if let value = settings[name] { shared.append(.init(key: name, value: value)) }
        }
        for (index, item) in items.enumerated() {
            let hostname = try requireString(item, "\(path).resolver.static.hostnames.\(index)")
            guard !hostname.isEmpty, !balancer.backends.contains(where: { $0.hostname == hostname }) else {
                throw ConfigError("\(path).resolver.static.hostnames.\(index)", "'\(hostname)' is empty or listed twice")
            }
            let endpoint = hostname.hasPrefix("http://") || hostname.hasPrefix("https://") ? hostname : "http://\(hostname)"
            let id = ComponentID(type: "otlphttp", name: "\(component.id)/\(hostname)")
            let own = ConfigValue.map(shared).merged(with: backend == .null ? .emptyMap : backend)
            exporters.append(ComponentConfig(id: id, kind: .exporter,
                                             settings: own.merged(with: .map([.init(key: "endpoint", value: .string(endpoint))]))))
            balancer.backends.append(Backend(hostname: hostname, exporter: id))
        }
        return (balancer, exporters)
    }
}

extension ServiceConfig {
    /// Each `loadbalancing` exporter a pipeline lists becomes a balancer over otlphttp
    /// exporters, one per backend; the pipelines list the balancer under `balancers`.
    static func adoptLoadBalancers(_ config: inout ServiceConfig) throws {
        let used = Set(config.pipelines.flatMap(\.exporters))
        var errors: [ConfigError] = []
        for component in config.exporters where component.id.type == "loadbalancing" {
            guard used.contains(component.id), let parsed = try collecting(&errors, { try LoadBalancerConfig.parse(component) }) else { continue }
            config.loadBalancers.append(parsed.balancer)
            config.exporters += parsed.backends
        }
        if let error = ConfigError.all(errors) { throw error }
        config.exporters.removeAll { $0.id.type == "loadbalancing" }
        for i in config.pipelines.indices {
            config.pipelines[i].balancers = config.pipelines[i].exporters.filter { $0.type == "loadbalancing" }
            config.pipelines[i].exporters.removeAll { $0.type == "loadbalancing" }
        }
    }
}
