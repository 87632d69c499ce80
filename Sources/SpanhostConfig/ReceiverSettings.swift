import Foundation

/// A configured receiver, one of the built-in types, with its settings checked. Receivers are
/// built like plugins: a type name, typed settings with their own validation, and a factory
/// in SpanhostServer (`ReceiverRegistry`) that turns them into running components.
public enum ReceiverSettings: Sendable, Equatable {
    case otlp(OTLPReceiverSettings)
    case zipkin(ZipkinReceiverSettings)
    case kafka(KafkaReceiverSettings)
    case jaeger(JaegerReceiverSettings)
    /// The Collector's `nop` receiver: takes nothing (Collector test configs use it).
    case nop

    /// The built-in receiver types.
    public static let types = ["otlp", "zipkin", "jaeger", "kafka", "nop"]

    public init(type: String, settings: ConfigValue, path: String) throws {
        switch type {
        case "otlp": self = .otlp(try OTLPReceiverSettings(settings: settings, path: path))
        case "zipkin": self = .zipkin(try ZipkinReceiverSettings(settings: settings, path: path))
        case "kafka": self = .kafka(try KafkaReceiverSettings(settings: settings, path: path))
        case "jaeger": self = .jaeger(try JaegerReceiverSettings(settings: settings, path: path))
        case "nop":
            try settings.requireKnownKeys([], path: path)
            self = .nop
        default: throw ConfigError(path, "unknown receiver type '\(type)'; built-in receivers: \(Self.types.joined(separator: ", "))")
        }
    }

    /// The HTTP endpoint it listens on; nil for receivers without one (kafka, jaeger without
    /// thrift_http).
    public var endpoint: Endpoint? {
        switch self {
        case .otlp(let s): return s.endpoint
        case .zipkin(let s): return s.endpoint
        case .jaeger(let s): return s.thriftHTTP?.endpoint
        case .kafka, .nop: return nil
        }
    }

    /// TLS and authentication of its HTTP listener; nil for receivers without one.
    public var security: ServerSecuritySettings? {
        switch self {
        case .otlp(let s): return s.security
        case .zipkin(let s): return s.security
        case .jaeger(let s): return s.thriftHTTP?.security
        case .kafka, .nop: return nil
        }
    }

    /// What the receiver runs apart from an HTTP listener: a Kafka consumer, UDP sockets. A
    /// reload keeps the running one when this is unchanged.
    public var source: SourceSettings? {
        switch self {
        case .kafka(let s): return .kafka(s)
        case .jaeger(let s): return s.agents.isEmpty ? nil : .jaegerAgent(s.agents)
        case .otlp, .zipkin, .nop: return nil
        }
    }

    /// Where its `tls` and `auth` keys are, under `path` (`receivers.<id>`).
    public func securityPath(_ path: String) -> String {
        switch self {
        case .otlp: return "\(path).protocols.http"
        case .jaeger: return "\(path).protocols.thrift_http"
        case .zipkin, .kafka, .nop: return path
        }
    }

    /// One line for each receiver a pipeline uses that listens on an address other machines
    /// reach with neither TLS nor authentication: said at start, on reload and by --check.
    public static func exposureWarnings(in config: ServiceConfig) throws -> [String] {
        try used(in: config).sorted { $0.key.description < $1.key.description }.compactMap { id, settings in
            guard let endpoint = settings.endpoint, !endpoint.isLoopback,
                  let security = settings.security, security.tls == nil, security.authenticator == nil else { return nil }
            return "receiver \(id) listens on \(endpoint), reachable from other machines, without TLS or authentication; "
                + "set tls and auth (README, Security) or bind 127.0.0.1"
        }
    }

    /// Every receiver a pipeline uses, checked: all receivers are parsed (an unused one with a
    /// typo is still an error), and no two used ones share a TCP or a UDP endpoint.
    public static func used(in config: ServiceConfig) throws -> [ComponentID: ReceiverSettings] {
        var result: [ComponentID: ReceiverSettings] = [:]
        var endpoints: [Endpoint: ComponentID] = [:]
        var datagramEndpoints: [Endpoint: ComponentID] = [:]
        let used = Set(config.pipelines.flatMap(\.receivers))
        var errors: [ConfigError] = []
        for receiver in config.receivers {
            let path = "receivers.\(receiver.id)"
            // Every receiver's mistakes are reported together.
            guard let settings = try collecting(&errors, { try ReceiverSettings(type: receiver.id.type, settings: receiver.settings, path: path) })
            else { continue }
            guard used.contains(receiver.id) else { continue }
            if let endpoint = settings.endpoint {
                if let other = endpoints[endpoint] {
                    throw ConfigError("\(path) endpoint", "\(endpoint) is already used by receivers.\(other)")
                }
                endpoints[endpoint] = receiver.id
            }
            if case .jaegerAgent(let agents)? = settings.source {
                for agent in agents {
                    if let other = datagramEndpoints[agent.endpoint] {
                        throw ConfigError("\(path).protocols.\(agent.protocolName).endpoint",
                                          "UDP \(agent.endpoint) is already used by receivers.\(other)")
                    }
                    datagramEndpoints[agent.endpoint] = receiver.id
                }
            }
            _ = try collecting(&errors) { try config.authenticator(settings.security?.authenticator, path: settings.securityPath(path)) }
            result[receiver.id] = settings
        }
        if let error = ConfigError.all(errors) { throw error }
        return result
    }
}

extension Endpoint: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(port)
    }
}

/// A request's deadline for the pipelines: a positive duration.
private func parseRequestTimeout(_ value: ConfigValue, path: String) throws -> Duration {
    let d = try parseDuration(value, path: path)
    guard d > .zero else { throw ConfigError(path, "must be greater than zero") }
    return d
}

/// A body size limit in bytes: positive, at most 2 GiB (a decoded batch may take 16 times it).
private func parseBodySize(_ value: ConfigValue, path: String) throws -> Int {
    guard value.intValue != nil else { throw ConfigError(path, "must be a positive number of bytes, not \(value.kindName)") }
    return try parseCount(value, path: path, in: 1...(2 << 30))
}

/// How long a request may take to arrive, how many connections a listener keeps (with the
/// Collector's confighttp names where it has them), and how much one request may hold.
public struct HTTPConnectionSettings: Sendable, Equatable {
    /// From a request's first byte until its head is complete.
    public var readHeaderTimeout: Duration = .seconds(10)
    /// From a request's first byte until its body is complete.
    public var readTimeout: Duration = .seconds(60)
    /// Connections open at once; nil: 1000, or half the process's descriptor limit if lower.
    public var maxConnections: Int?

    /// Spans one request may hold.
    public var maxSpansPerRequest = 200_000
    /// Attributes one resource, scope, span, event or link may have.
    public var maxAttributesPerSpan = 10_000
    /// Request headers reach processors as the batch's client_metadata (`metadata.<name>`).
    public var includeMetadata = false

    public static let keys = ["read_header_timeout", "read_timeout", "max_connections", "max_spans_per_request", "max_attributes_per_span",
                              "include_metadata"]

    public init() {}

    init(settings: ConfigValue, path: String) throws {
        if let v = settings["include_metadata"] { includeMetadata = try parseBool(v, path: "\(path).include_metadata") }
        if let v = settings["max_spans_per_request"] {
            maxSpansPerRequest = try parseCount(v, path: "\(path).max_spans_per_request", in: 1...100_000_000)
        }
        if let v = settings["max_attributes_per_span"] {
            maxAttributesPerSpan = try parseCount(v, path: "\(path).max_attributes_per_span", in: 1...100_000_000)
        }
        if let v = settings["read_header_timeout"] { readHeaderTimeout = try parseRequestTimeout(v, path: "\(path).read_header_timeout") }
        if let v = settings["read_timeout"] { readTimeout = try parseRequestTimeout(v, path: "\(path).read_timeout") }
        if let v = settings["max_connections"] { maxConnections = try parseCount(v, path: "\(path).max_connections", in: 1...1_000_000) }
    }
}

/// `tls` and `auth` of an HTTP server, as the Collector's confighttp writes them.
public struct ServerSecuritySettings: Sendable, Equatable {
    public var tls: TLSServerSettings?
    /// The id of an enabled `bearertokenauth` extension.
    public var authenticator: ComponentID?

    public static let keys = ["tls", "auth"]

    public init(tls: TLSServerSettings? = nil, authenticator: ComponentID? = nil) {
        self.tls = tls
        self.authenticator = authenticator
    }

    init(settings: ConfigValue, path: String) throws {
        tls = try TLSServerSettings(settings: settings["tls"], path: "\(path).tls")
        authenticator = try parseAuthenticatorReference(settings["auth"], path: "\(path).auth")
    }
}

/// Settings of the `otlp` receiver (`receivers.otlp.protocols.http`).
public struct OTLPReceiverSettings: Sendable, Equatable {
    public var endpoint = Endpoint(host: "127.0.0.1", port: 4318)
    /// Limit on the body, before and after decompression (Collector default 20 MiB).
    public var maxRequestBodySize = 20 << 20
    public var tracesPath = "/v1/traces"
    /// How long a request may wait for the pipelines before it is answered 503.
    public var requestTimeout: Duration = .seconds(15)
    public var connections = HTTPConnectionSettings()
    public var security = ServerSecuritySettings()

    public init() {}

    public init(settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["protocols"], path: path)
        guard let protocols = settings["protocols"], protocols != .null else { return }
        if protocols["grpc"] != nil {
            throw ConfigError("\(path).protocols.grpc", "gRPC is not supported; use protocols.http")
        }
        try protocols.requireKnownKeys(["http"], path: "\(path).protocols")
        guard let http = protocols["http"], http != .null else { return }
        let p = "\(path).protocols.http"
        try http.requireKnownKeys(["endpoint", "max_request_body_size", "traces_url_path", "request_timeout"] + HTTPConnectionSettings.keys
                                  + ServerSecuritySettings.keys, path: p)
        connections = try HTTPConnectionSettings(settings: http, path: p)
        security = try ServerSecuritySettings(settings: http, path: p)
        if let v = http["request_timeout"] { requestTimeout = try parseRequestTimeout(v, path: "\(p).request_timeout") }
        if let v = http["endpoint"] { endpoint = try Endpoint(parsing: try requireString(v, "\(p).endpoint"), path: "\(p).endpoint") }
        if let v = http["max_request_body_size"] { maxRequestBodySize = try parseBodySize(v, path: "\(p).max_request_body_size") }
        if let v = http["traces_url_path"] {
            let s = try requireString(v, "\(p).traces_url_path")
            guard s.hasPrefix("/") else { throw ConfigError("\(p).traces_url_path", "must start with '/'") }
            tracesPath = s
        }
    }
}

/// Settings of the `zipkin` receiver.
public struct ZipkinReceiverSettings: Sendable, Equatable {
    public var endpoint = Endpoint(host: "127.0.0.1", port: 9411)
    public var maxRequestBodySize = 20 << 20
    public var requestTimeout: Duration = .seconds(15)
    public var connections = HTTPConnectionSettings()
    public var security = ServerSecuritySettings()

    public init() {}

    public init(settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["endpoint", "max_request_body_size", "request_timeout"] + HTTPConnectionSettings.keys
                                      + ServerSecuritySettings.keys, path: path)
        connections = try HTTPConnectionSettings(settings: settings, path: path)
        security = try ServerSecuritySettings(settings: settings, path: path)
        if let v = settings["endpoint"] { endpoint = try Endpoint(parsing: try requireString(v, "\(path).endpoint"), path: "\(path).endpoint") }
        if let v = settings["max_request_body_size"] { maxRequestBodySize = try parseBodySize(v, path: "\(path).max_request_body_size") }
        if let v = settings["request_timeout"] { requestTimeout = try parseRequestTimeout(v, path: "\(path).request_timeout") }
    }
}

/// What a receiver runs besides an HTTP listener.
public enum SourceSettings: Sendable, Equatable {
    case kafka(KafkaReceiverSettings)
    /// The Jaeger agent's UDP protocols.
    case jaegerAgent([JaegerAgentSettings])
}

/// Settings of the `jaeger` receiver (the Collector's `receivers.jaeger.protocols`): Thrift
/// over HTTP as the Jaeger collector takes it, and the Jaeger agent's UDP ports.
public struct JaegerReceiverSettings: Sendable, Equatable {
    public var thriftHTTP: ThriftHTTPSettings?
    /// thrift_compact, then thrift_binary, as configured.
    public var agents: [JaegerAgentSettings] = []

    public struct ThriftHTTPSettings: Sendable, Equatable {
        public var endpoint = Endpoint(host: "127.0.0.1", port: 14268)
        public var maxRequestBodySize = 20 << 20
        public var requestTimeout: Duration = .seconds(15)
        public var connections = HTTPConnectionSettings()
        public var security = ServerSecuritySettings()
        public init() {}
    }

    static let protocolNames = ["thrift_http", "thrift_compact", "thrift_binary", "grpc"]

    public init() {}

    public init(settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["protocols"], path: path)
        let protocols = settings["protocols"] ?? .null
        if protocols != .null { try protocols.requireKnownKeys(Self.protocolNames, path: "\(path).protocols") }
        if protocols["grpc"] != nil {
            throw ConfigError("\(path).protocols.grpc", "gRPC is not supported; Jaeger clients send Thrift over HTTP (thrift_http) or UDP "
                              + "(thrift_compact, thrift_binary), or use the otlp receiver")
        }
        if let http = protocols["thrift_http"] {
            let p = "\(path).protocols.thrift_http"
            var s = ThriftHTTPSettings()
            if http != .null {
                try http.requireKnownKeys(["endpoint", "max_request_body_size", "request_timeout"] + HTTPConnectionSettings.keys
                                          + ServerSecuritySettings.keys, path: p)
                s.connections = try HTTPConnectionSettings(settings: http, path: p)
                s.security = try ServerSecuritySettings(settings: http, path: p)
                if let v = http["endpoint"] { s.endpoint = try Endpoint(parsing: try requireString(v, "\(p).endpoint"), path: "\(p).endpoint") }
                if let v = http["max_request_body_size"] { s.maxRequestBodySize = try parseBodySize(v, path: "\(p).max_request_body_size") }
                if let v = http["request_timeout"] { s.requestTimeout = try parseRequestTimeout(v, path: "\(p).request_timeout") }
            }
            thriftHTTP = s
        }
        for (name, form) in [("thrift_compact", JaegerAgentSettings.Form.compact), ("thrift_binary", .binary)] {
            guard let udp = protocols[name] else { continue }
            agents.append(try JaegerAgentSettings(form: form, settings: udp, path: "\(path).protocols.\(name)"))
        }
        if thriftHTTP == nil && agents.isEmpty {
            throw ConfigError("\(path).protocols", "name at least one protocol: thrift_http, thrift_compact or thrift_binary")
        }
    }
}

/// One UDP port of the Jaeger agent protocol (`thrift_compact` or `thrift_binary`).
public struct JaegerAgentSettings: Sendable, Equatable {
    public enum Form: Sendable, Equatable { case compact, binary }
    public var form: Form
    public var endpoint: Endpoint
    /// Datagrams waiting for the pipelines; past it new ones are dropped and counted.
    public var queueSize = 1000
    /// The largest datagram read; a longer one is cut short and fails to decode.
    public var maxPacketSize = 65000
    /// Datagrams decoded and run through the pipelines at once.
    public var workers = 10
    /// SO_RCVBUF; nil keeps the system's.
    public var socketBufferSize: Int?

    public var protocolName: String { form == .compact ? "thrift_compact" : "thrift_binary" }

    public init(form: Form, settings: ConfigValue = .null, path: String = "") throws {
        self.form = form
        endpoint = Endpoint(host: "127.0.0.1", port: form == .compact ? 6831 : 6832)
        guard settings != .null else { return }
        try settings.requireKnownKeys(["endpoint", "queue_size", "max_packet_size", "workers", "socket_buffer_size"], path: path)
        if let v = settings["endpoint"] { endpoint = try Endpoint(parsing: try requireString(v, "\(path).endpoint"), path: "\(path).endpoint") }
        if let v = settings["queue_size"] { queueSize = try parseCount(v, path: "\(path).queue_size", in: 1...1_000_000) }
        if let v = settings["max_packet_size"] { maxPacketSize = try parseCount(v, path: "\(path).max_packet_size", in: 64...65535) }
        if let v = settings["workers"] { workers = try parseCount(v, path: "\(path).workers", in: 1...1000) }
        if let v = settings["socket_buffer_size"] {
            let size = try parseCount(v, path: "\(path).socket_buffer_size", in: 0...(1 << 30))
            socketBufferSize = size == 0 ? nil : size
        }
    }
}

/// Settings of the `kafka` receiver.
public struct KafkaReceiverSettings: Sendable, Equatable {
    /// How message payloads are encoded.
    public enum Encoding: Sendable, Equatable {
        case otlpProto
        case otlpJSON
        /// Omegi agent events, whose timestamps are local time at this offset.
        case omegi(utcOffsetSeconds: Int32)
    }

    public var brokers: String
    public var topics: [String] = ["otlp_spans"]
    public var groupID = "spanhost"
    public var initialOffset = "latest"
    public var encoding: Encoding = .otlpProto
    /// The group member's lease: without a heartbeat for this long, its partitions go to others.
    public var sessionTimeout: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(3)
    /// How partitions are shared: range, roundrobin or cooperative-sticky (incremental handovers).
    public var rebalanceStrategy = "range"
    /// Longest gap between polls before the member is considered stuck (it polls while held too).
    public var maxPollInterval: Duration = .seconds(300)
    /// librdkafka properties, set last.
    public var properties: [String: String] = [:]

    /// The group settings as librdkafka properties.
    public var groupProperties: [(key: String, value: String)] {
        func ms(_ d: Duration) -> String { String(Int64(d.milliseconds.rounded())) }
        return [("session.timeout.ms", ms(sessionTimeout)), ("heartbeat.interval.ms", ms(heartbeatInterval)),
                ("partition.assignment.strategy", rebalanceStrategy), ("max.poll.interval.ms", ms(maxPollInterval))]
    }

    /// Config key -> librdkafka property.
    public static let groupKeys = ["session_timeout": "session.timeout.ms", "heartbeat_interval": "heartbeat.interval.ms",
                            "group_rebalance_strategy": "partition.assignment.strategy", "max_poll_interval": "max.poll.interval.ms"]

    public init(settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["brokers", "topics", "topic", "group_id", "initial_offset", "encoding", "time_zone", "properties",
                                       "protocol_version", "traces", "metrics", "logs", "profiles"] + Self.groupKeys.keys.sorted(), path: path)
        // The Collector's newer shape: topic(s) and encoding under `traces:`; the other
        // signals' sections are accepted and never consumed (spanhost carries traces).
        var settings = settings
        if let traces = settings["traces"], traces != .null {
            try traces.requireKnownKeys(["topic", "topics", "encoding"], path: "\(path).traces")
            for key in ["topic", "topics", "encoding"] where traces[key] != nil && settings[key] != nil {
                throw ConfigError("\(path).traces.\(key)", "set \(key) here or at the top, not both")
            }
            settings = settings.merged(with: traces)
        }
        switch settings["brokers"] {
        case .list(let items)?: brokers = try items.enumerated().map { try requireString($1, "\(path).brokers.\($0)") }.joined(separator: ",")
        case let value?: brokers = try requireString(value, "\(path).brokers")
        case nil: brokers = "localhost:9092"  // the Collector's default
        }
        // The Collector's protocol_version: the broker version librdkafka assumes when a broker
        // cannot tell it (librdkafka asks brokers that can).
        if let v = settings["protocol_version"] {
            properties["broker.version.fallback"] = try requireString(v, "\(path).protocol_version")
        }
        if case .list(let items)? = settings["topics"] {
            topics = try items.enumerated().map { try requireString($1, "\(path).topics.\($0)") }
        } else if let topic = settings["topic"] {
            topics = [try requireString(topic, "\(path).topic")]
        }
        if topics.isEmpty { topics = ["otlp_spans"] }  // the Collector's default
        if let v = settings["group_id"] { groupID = try requireString(v, "\(path).group_id") }
        if let v = settings["initial_offset"] {
            initialOffset = try requireString(v, "\(path).initial_offset")
            guard ["latest", "earliest"].contains(initialOffset) else {
                throw ConfigError("\(path).initial_offset", "'\(initialOffset)' is not latest or earliest")
            }
        }
        if let v = settings["encoding"] {
            switch try requireString(v, "\(path).encoding") {
            case "otlp_proto": encoding = .otlpProto
            case "otlp_json": encoding = .otlpJSON
            case "omegi":
                let zone = try settings["time_zone"].map { try requireString($0, "\(path).time_zone") } ?? "UTC"
                encoding = .omegi(utcOffsetSeconds: try Self.utcOffset(zone, path: "\(path).time_zone"))
            case let other:
                throw ConfigError("\(path).encoding", "'\(other)' is not otlp_proto, otlp_json or omegi")
            }
        }
        if settings["time_zone"] != nil && settings["encoding"]?.stringValue != "omegi" {
            throw ConfigError("\(path).time_zone", "applies only to encoding: omegi")
        }
        for entry in settings["properties"]?.mapEntries ?? [] {
            properties[entry.key] = try requireString(entry.value, "\(path).properties.\(entry.key)")
        }
        for (key, property) in Self.groupKeys.sorted(by: { $0.key < $1.key }) where settings[key] != nil {
            // Take the group settings from the properties when they are given there.
            if properties[property] != nil {
                throw ConfigError("\(path).\(key)", "set either \(key) or properties.\(property), not both")
            }
        }
        func positive(_ key: String) throws -> Duration? {
            guard let v = settings[key] else { return nil }
            let d = try parseDuration(v, path: "\(path).\(key)")
            guard d >= .milliseconds(1) else { throw ConfigError("\(path).\(key)", "must be at least 1ms") }
            return d
        }
        if let d = try positive("session_timeout") { sessionTimeout = d }
        if let d = try positive("heartbeat_interval") { heartbeatInterval = d }
        if let d = try positive("max_poll_interval") { maxPollInterval = d }
        if let v = settings["group_rebalance_strategy"] {
            let strategy = try requireString(v, "\(path).group_rebalance_strategy")
            guard ["range", "roundrobin", "cooperative-sticky"].contains(strategy) else {
                throw ConfigError("\(path).group_rebalance_strategy", "'\(strategy)' is not range, roundrobin or cooperative-sticky")
            }
            rebalanceStrategy = strategy
        }
        guard heartbeatInterval < sessionTimeout else {
            throw ConfigError("\(path).heartbeat_interval", "must be shorter than session_timeout (\(sessionTimeout))")
        }
    }

    /// Seconds east of UTC for `UTC`, `+09:00` / `-0500`, or a zone name like `Asia/Seoul`. A
    /// named zone's offset is taken once, at load: zones with daylight saving time shift by an
    /// hour until the next reload after a change.
    static func utcOffset(_ zone: String, path: String) throws -> Int32 {
        if zone == "UTC" || zone == "Z" { return 0 }
        if let sign = zone.first, sign == "+" || sign == "-" {
            let digits = zone.dropFirst().filter { $0 != ":" }
            guard digits.count == 4, let hhmm = Int(digits), hhmm / 100 <= 14, hhmm % 100 < 60 else {
                throw ConfigError(path, "'\(zone)' is not an offset like +09:00")
            }
            let seconds = Int32(hhmm / 100 * 3600 + hhmm % 100 * 60)
            return sign == "-" ? -seconds : seconds
        }
        guard let tz = TimeZone(identifier: zone) else {
            throw ConfigError(path, "'\(zone)' is not a time zone; use UTC, an offset like +09:00 or a name like Asia/Seoul")
        }
        return Int32(tz.secondsFromGMT())
    }
}
