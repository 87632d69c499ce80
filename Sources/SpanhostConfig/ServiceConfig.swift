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

/// The whole config of a spanhostd process, validated.
public struct ServiceConfig: Sendable, Equatable {
    public var receivers: [ComponentConfig]
    public var processors: [ComponentConfig]
    public var exporters: [ComponentConfig]
    public var notifiers: [ComponentConfig]
    /// The top-level `rules:` section.
    public var rules: [RuleConfig] = []
    /// The top-level `connectors:` section.
    public var connectors: [ConnectorConfig] = []
    public var pipelines: [PipelineConfig]
    /// `metrics` pipelines: the connectors' metrics to metrics exporters.
    public var metricsPipelines: [MetricsPipelineConfig] = []
    public var metricsExporters: [MetricsExporterConfig] = []
    /// `loadbalancing` exporters: each spreads spans over otlphttp exporters in `exporters`.
    public var loadBalancers: [LoadBalancerConfig] = []
    /// Where plugin `.so` files are found, searched in order; empty means "beside the executable".
    public var pluginDirs: [String] = []
    /// Where content-addressed copies of plugins are loaded from; nil means a default.
    public var pluginCacheDir: String?
    /// sha256 pins: plugin file name -> expected hex digest.
    public var pluginPins: [String: String]
    /// `plugins.require_pins`: a plugin file without a pin is refused.
    public var requirePins = false
    /// `plugins.functions`: plugins loaded for the functions they add to expressions.
    public var functionLibraries: [String] = []
    public var adminEndpoint: Endpoint
    /// `admin.auth`: the authenticator every admin request but `GET /healthz` must pass.
    public var adminAuth: ComponentID?
    /// `admin.unix_socket`: a Unix socket (mode 0600) also serving the admin endpoint; its
    /// file permissions are its access control, so requests on it need no token.
    public var adminUnixSocket: String?
    /// Enabled `bearertokenauth` extensions, by id.
    public var authenticators: [ComponentID: BearerTokenAuthSettings] = [:]
    /// Enabled `health_check` extensions.
    public var healthChecks: [HealthCheckSettings] = []
    /// How long shutdown waits for exporters to drain.
    public var shutdownTimeout: Duration
    /// How long the plugin check of a reload, `--check` or `spanhost validate` may take: every
    /// component's create runs in a child, and one that blocks must not hold a reload forever.
    public var preflightTimeout: Duration = .seconds(60)
    /// Receivers answer 503 while batches in memory hold more than this many bytes (nil: no limit).
    public var memoryLimitBytes: Int?
    public var supervisor = SupervisorSettings()

    public static let defaultAdminEndpoint = Endpoint(host: "127.0.0.1", port: 13133)

    /// The config used when spanhostd starts without --config.
    public static let embeddedDefault = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:4318
        exporters:
          debug:
            verbosity: normal
        service:
          pipelines:
            traces:
              receivers: [otlp]
              exporters: [debug]
        """

    /// The plugins this config names: a component of type `x` is the plugin in file `x.so` (see pluginName).
    /// Only these files are opened; others in the plugin directories are never loaded.
    public var pluginNames: Set<String> {
        Set((processors + exporters + notifiers).map(\.id.pluginName) + functionLibraries)
    }

    /// The exporters a pipeline sends to: its own, and its balancers' backends.
    public func exporterIDs(of pipeline: PipelineConfig) -> [ComponentID] {
        pipeline.exporters + pipeline.balancers.flatMap { id in loadBalancers.first { $0.id == id }?.backends.map(\.exporter) ?? [] }
    }

    public func components(_ kind: ComponentKind) -> [ComponentConfig] {
        switch kind {
        case .receiver: return receivers
        case .processor: return processors
        case .exporter: return exporters
        case .notifier: return notifiers
        }
    }

    public func component(_ kind: ComponentKind, _ id: ComponentID) -> ComponentConfig? {
        components(kind).first { $0.id == id }
    }

    public static func parse(yaml: String, environment: [String: String]) throws -> ServiceConfig {
        let (value, unset) = try YAMLLoader.loadNoting(yaml, environment: environment)
        do {
            return try parse(value)
        } catch let error as ConfigError {
            throw error.naming(unset)
        }
    }

    public static func parse(_ root: ConfigValue) throws -> ServiceConfig {
        guard let top = root.mapEntries else { throw ConfigError("", "the config must be a map") }
        let known: Set<String> = ["receivers", "processors", "exporters", "notifiers", "rules", "service", "plugins", "admin", "extensions", "connectors"]
        for entry in top where !known.contains(entry.key) {
            throw ConfigError(entry.key, "unknown section; expected one of \(known.sorted().joined(separator: ", "))")
        }

        func section(_ kind: ComponentKind) throws -> [ComponentConfig] {
            guard let value = root[kind.section], value != .null else { return [] }
            guard let entries = value.mapEntries else { throw ConfigError(kind.section, "must be a map of component ids") }
            return try entries.map { entry in
                let path = "\(kind.section).\(entry.key)"
                let settings = entry.value == .null ? ConfigValue.emptyMap : entry.value
                guard settings.mapEntries != nil else { throw ConfigError(path, "settings must be a map, not \(settings.kindName)") }
                return ComponentConfig(id: try ComponentID(parsing: entry.key, path: path), kind: kind, settings: settings)
            }
        }

        var config = ServiceConfig(
            receivers: try section(.receiver), processors: try section(.processor),
            exporters: try section(.exporter), notifiers: try section(.notifier),
            pipelines: [], pluginCacheDir: nil, pluginPins: [:],
            adminEndpoint: defaultAdminEndpoint, shutdownTimeout: .seconds(10), memoryLimitBytes: nil)

        if let connectors = root["connectors"], connectors != .null {
            guard let entries = connectors.mapEntries else { throw ConfigError("connectors", "must be a map of connector ids") }
            config.connectors = try entries.map { entry in
                let path = "connectors.\(entry.key)"
                return try ConnectorConfig(id: try ComponentID(parsing: entry.key, path: path),
                                           settings: entry.value == .null ? .emptyMap : entry.value)
            }
        }

        if let rules = root["rules"], rules != .null {
            guard let entries = rules.mapEntries else { throw ConfigError("rules", "must be a map of rule ids") }
            config.rules = try entries.map { entry in
                let path = "rules.\(entry.key)"
                let settings = entry.value == .null ? ConfigValue.emptyMap : entry.value
                guard settings.mapEntries != nil else { throw ConfigError(path, "settings must be a map, not \(settings.kindName)") }
                return try RuleConfig(id: try ComponentID(parsing: entry.key, path: path), settings: settings)
            }
        }
        if let plugins = root["plugins"], plugins != .null {
            guard plugins.mapEntries != nil else { throw ConfigError("plugins", "must be a map") }
            for entry in plugins.mapEntries! where !["dir", "dirs", "cache_dir", "pins", "require_pins", "functions"].contains(entry.key) {
                throw ConfigError("plugins.\(entry.key)", "unknown key; expected dir, dirs, cache_dir, pins, require_pins or functions")
            }
            switch plugins["functions"] {
            case .list(let items)?: config.functionLibraries = try items.enumerated().map { try requireString($1, "plugins.functions.\($0)") }
            case let value?: config.functionLibraries = [try requireString(value, "plugins.functions")]
            case nil: break
            }
            if plugins["dir"] != nil && plugins["dirs"] != nil { throw ConfigError("plugins.dirs", "set dir or dirs, not both") }
            if let v = plugins["require_pins"] { config.requirePins = try parseBool(v, path: "plugins.require_pins") }
            let dirsKey = plugins["dirs"] != nil ? "dirs" : "dir"
            switch plugins[dirsKey] {
            case .list(let items)?:
                config.pluginDirs = try items.enumerated().map { try requireString($1, "plugins.\(dirsKey).\($0)") }
                guard !config.pluginDirs.isEmpty else { throw ConfigError("plugins.\(dirsKey)", "name at least one directory") }
            case let value?: config.pluginDirs = [try requireString(value, "plugins.\(dirsKey)")]
            case nil: break
            }
            config.pluginCacheDir = try plugins["cache_dir"].map { try requireString($0, "plugins.cache_dir") }
            if let pins = plugins["pins"] {
                guard let entries = pins.mapEntries else { throw ConfigError("plugins.pins", "must map file names to sha256 digests") }
                for pin in entries {
                    let digest = try requireString(pin.value, "plugins.pins.\(pin.key)").lowercased()
                    guard digest.count == 64, digest.allSatisfy(\.isHexDigit) else {
                        throw ConfigError("plugins.pins.\(pin.key)", "must be a sha256 digest of 64 hex digits")
                    }
                    config.pluginPins[pin.key] = digest
                }
            }
        }
        guard let service = root["service"] else { throw ConfigError("service", "missing: define service.pipelines") }
        if let endpoint = root["admin"]?["endpoint"] {
            config.adminEndpoint = try Endpoint(parsing: try requireString(endpoint, "admin.endpoint"), path: "admin.endpoint")
        }
        (config.authenticators, config.healthChecks) = try ExtensionsSection.parse(root, enabled: service, admin: config.adminEndpoint)
        if let admin = root["admin"], admin != .null {
            try admin.requireKnownKeys(["endpoint", "auth", "unix_socket"], path: "admin")
            config.adminAuth = try parseAuthenticatorReference(admin["auth"], path: "admin.auth")
            _ = try config.authenticator(config.adminAuth, path: "admin")
            config.adminUnixSocket = try admin["unix_socket"].map { try requireString($0, "admin.unix_socket") }
            if let path = config.adminUnixSocket, path.utf8.count >= 104 {
                throw ConfigError("admin.unix_socket", "'\(path)' is too long for a Unix socket path (at most 103 bytes)")
            }
        }
        for entry in service.mapEntries ?? []
        where !["pipelines", "shutdown_timeout", "preflight_timeout", "memory_limiter", "supervisor", "telemetry", "extensions"].contains(entry.key) {
            throw ConfigError("service.\(entry.key)", "unknown key; expected pipelines, extensions, shutdown_timeout, preflight_timeout, memory_limiter or supervisor")
        }
        config.supervisor = try SupervisorSettings(settings: service["supervisor"], path: "service.supervisor")
        if let limiter = service["memory_limiter"], limiter != .null {
            guard let mib = limiter["limit_mib"] else {
                throw ConfigError("service.memory_limiter.limit_mib", "required, a positive number of MiB")
            }
            config.memoryLimitBytes = try parseMiB(mib, path: "service.memory_limiter.limit_mib")
        }
        if let timeout = service["preflight_timeout"] {
            config.preflightTimeout = try parseDuration(timeout, path: "service.preflight_timeout")
            guard config.preflightTimeout >= .seconds(1) else {
                throw ConfigError("service.preflight_timeout", "at least 1s: every plugin's create runs in it")
            }
        }
        if let timeout = service["shutdown_timeout"] {
            config.shutdownTimeout = try parseDuration(timeout, path: "service.shutdown_timeout")
        }
        guard let pipelines = service["pipelines"]?.mapEntries, !pipelines.isEmpty else {
            throw ConfigError("service.pipelines", "define at least one pipeline")
        }
        var errors: [ConfigError] = []
        for entry in pipelines {
            if entry.key == "metrics" || entry.key.hasPrefix("metrics/") {
                if let pipeline = try collecting(&errors, { try parseMetricsPipeline(entry, config: config) }) { config.metricsPipelines.append(pipeline) }
            } else if let pipeline = try collecting(&errors, { try parsePipeline(entry, config: config) }) {
                config.pipelines.append(pipeline)
            }
        }
        if let error = ConfigError.all(errors) { throw error }
        if config.pipelines.isEmpty { throw ConfigError("service.pipelines", "define at least one traces pipeline") }
        try checkPipelineConnectors(config)
        try adoptMemoryLimiterProcessors(&config)
        try adoptLoadBalancers(&config)
        try adoptBatchProcessors(&config)
        // The exporters' auth and the receivers are independent: their errors come together.
        _ = try collecting(&errors) { try resolveClientAuth(&config) }
        _ = try collecting(&errors) { try ReceiverSettings.used(in: config) }
        if let error = ConfigError.all(errors) { throw error }
        // Last: an exporter's auth has become its headers by now.
        try adoptMetricsExporters(&config)
        return config
    }

    /// An exporter's or notifier's `auth: {authenticator: <bearertokenauth id>}`, as the
    /// Collector's HTTP clients take it: the extension's token is sent in `Authorization:
    /// <scheme> <token>`. The host reads the token (from `filename` when a config is loaded, so
    /// a reload sends a renewed one) and hands it to the plugin as that header under `headers`.
    static func resolveClientAuth(_ config: inout ServiceConfig) throws {
        let authenticators = config
        func resolve(_ component: inout ComponentConfig, kind: String) throws {
            let path = "\(kind).\(component.id)"
            guard let auth = component.settings["auth"], auth != .null else { return }
            let id = try parseAuthenticatorReference(auth, path: "\(path).auth")
            guard let settings = try authenticators.authenticator(id, path: path) else { return }
            let token: String
            switch settings.source {
            case .tokens(let list):
                guard list.count == 1 else {
                    throw ConfigError("\(path).auth.authenticator", "'\(id!)' lists \(list.count) tokens; a client sends one: set token or filename")
                }
                token = list[0]
            case .file(let file):
                guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                      let line = text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) }).first(where: { !$0.isEmpty })
                else { throw ConfigError("\(path).auth.authenticator", "'\(id!)': cannot read a token from \(file)") }
                token = line
            case .htpasswd:
                throw ConfigError("\(path).auth.authenticator", "'\(id!)' holds a server's users (htpasswd); a client sends client_auth")
            }
            guard case .map(var entries) = component.settings else { return }
            entries.removeAll { $0.key == "auth" }
            let value = settings.scheme.isEmpty ? token : "\(settings.scheme) \(token)"
            let header = ConfigValue.map([.init(key: "headers", value: .map([.init(key: settings.header, value: .string(value))]))])
            component.settings = ConfigValue.map(entries).merged(with: header)
        }
        var errors: [ConfigError] = []
        for index in config.exporters.indices { _ = try collecting(&errors) { try resolve(&config.exporters[index], kind: "exporters") } }
        for index in config.notifiers.indices { _ = try collecting(&errors) { try resolve(&config.notifiers[index], kind: "notifiers") } }
        if let error = ConfigError.all(errors) { throw error }
    }

    /// The Collector's `batch` processor becomes batching in the sending queue of each exporter
    /// of its pipelines (`sending_queue.batch`, as the Collector's exporterhelper does it): a
    /// request is in the exporter's queue, on disk with storage, before it is answered, and
    /// leaves it together with others. A batch processor holding requests in memory would lose
    /// them uncounted to a kill -9. `send_batch_size` is `min_size`, `send_batch_max_size`
    /// `max_size`, `timeout` `flush_timeout`; an exporter's own `sending_queue.batch` wins.
    static func adoptBatchProcessors(_ config: inout ServiceConfig) throws {
        let batches = config.processors.filter { $0.id.type == "batch" }
        for batch in batches {
            let path = "processors.\(batch.id)"
            // Checked with the processor's key names, so an error names what the user wrote.
            _ = try QueueBatchSettings(settings: batch.settings, path: path, keys: .batchProcessor)
            let mapped = QueueBatchSettings.Keys.batchProcessor.rename(batch.settings, to: .sendingQueue)
            let defaults = ConfigValue.map([.init(key: "sending_queue", value: .map([.init(key: "batch", value: mapped)]))])
            let exporters = Set(config.pipelines.filter { $0.processors.contains(batch.id) }.flatMap { config.exporterIDs(of: $0) })
            for index in config.exporters.indices where exporters.contains(config.exporters[index].id) {
                let own = config.exporters[index].settings
                if own["sending_queue"]?["enabled"]?.boolValue == false { continue }  // no queue: exported on the caller's thread
                config.exporters[index].settings = defaults.merged(with: own == .null ? .emptyMap : own)
            }
            config.processors.removeAll { $0.id == batch.id }
            for i in config.pipelines.indices { config.pipelines[i].processors.removeAll { $0 == batch.id } }
        }
    }

    /// The Collector's `memory_limiter` processor is the service-wide limiter here: every
    /// receiver refuses while memory is over it, whichever pipeline the processor was listed
    /// in. Its soft limit (limit_mib - spike_limit_mib, the spike defaulting to 20%) is where the
    /// Collector starts refusing, so it becomes the limit. The processor entries are removed.
    static func adoptMemoryLimiterProcessors(_ config: inout ServiceConfig) throws {
        let limiters = config.processors.filter { $0.id.type == "memory_limiter" }
        guard !limiters.isEmpty else { return }
        guard limiters.count == 1, config.memoryLimitBytes == nil else {
            throw ConfigError("processors.\(limiters.last!.id)", "set one memory limit: one memory_limiter processor, or service.memory_limiter")
        }
        let limiter = limiters[0]
        let path = "processors.\(limiter.id)"
        try limiter.settings.requireKnownKeys(["limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage",
                                               "check_interval"], path: path)
        let mib: Double, spike: Double
        if let percentage = limiter.settings["limit_percentage"] {
            // As the Collector: a share of the cgroup's memory limit, else of the machine's memory.
            guard limiter.settings["limit_mib"] == nil else {
                throw ConfigError("\(path).limit_percentage", "set limit_mib or limit_percentage, not both")
            }
            let total = Double(MemoryTotal.bytes) / (1024 * 1024)
            mib = total * Double(try parseCount(percentage, path: "\(path).limit_percentage", in: 1...100)) / 100
            let spikeShare = try limiter.settings["spike_limit_percentage"].map { try parseCount($0, path: "\(path).spike_limit_percentage", in: 0...100) }
            spike = spikeShare.map { total * Double($0) / 100 } ?? mib * 0.2
            guard spike < mib else { throw ConfigError("\(path).spike_limit_percentage", "must be below limit_percentage") }
        } else {
            guard let limit = limiter.settings["limit_mib"] else {
                throw ConfigError("\(path).limit_mib", "required, a positive number of MiB (or limit_percentage)")
            }
            if limiter.settings["spike_limit_percentage"] != nil {
                throw ConfigError("\(path).spike_limit_percentage", "goes with limit_percentage; with limit_mib set spike_limit_mib")
            }
            mib = Double(try parseMiB(limit, path: "\(path).limit_mib")) / (1024 * 1024)
            if let value = limiter.settings["spike_limit_mib"] {
                guard let v = value.doubleValue else { throw ConfigError("\(path).spike_limit_mib", "must be a number of MiB, not \(value.kindName)") }
                spike = v
            } else {
                spike = mib * 0.2
            }
            guard spike >= 0, spike < mib else { throw ConfigError("\(path).spike_limit_mib", "must be at least 0 and below limit_mib") }
        }
        if let v = limiter.settings["check_interval"] { _ = try parseDuration(v, path: "\(path).check_interval") }  // checked per request here
        config.memoryLimitBytes = Int((mib - spike) * 1024 * 1024)
        config.processors.removeAll { $0.id == limiter.id }
        for i in config.pipelines.indices { config.pipelines[i].processors.removeAll { $0 == limiter.id } }
    }

    private static func parsePipeline(_ entry: ConfigValue.Entry, config: ServiceConfig) throws -> PipelineConfig {
        let path = "service.pipelines.\(entry.key)"
        let id = try ComponentID(parsing: entry.key, path: path)
        guard id.type == "traces" else {
            throw ConfigError(path, "pipelines of type '\(id.type)' are not supported: spanhost carries traces, and the metrics its connectors derive from them")
        }
        guard let settings = entry.value.mapEntries else { throw ConfigError(path, "must be a map") }
        let allowed: Set<String> = ["receivers", "processors", "exporters", "notifiers", "rules"]
        for key in settings.map(\.key) where !allowed.contains(key) {
            throw ConfigError("\(path).\(key)", "unknown key; expected receivers, processors, exporters, notifiers or rules")
        }
        func ids(_ kind: ComponentKind) throws -> [ComponentID] {
            let listPath = "\(path).\(kind.section)"
            guard let value = entry.value[kind.section], value != .null else { return [] }
            guard case .list(let items) = value else { throw ConfigError(listPath, "must be a list of component ids") }
            var seen = Set<ComponentID>()
            return try items.enumerated().map { index, item in
                let itemPath = "\(listPath).\(index)"
                let id = try ComponentID(parsing: try requireString(item, itemPath), path: itemPath)
                let isConnector = (kind == .exporter && config.connectors.contains { $0.id == id })
                    || (kind == .receiver && config.connectors.contains { $0.id == id && $0.joinsPipelines })
                guard config.component(kind, id) != nil || isConnector else {
                    throw ConfigError(itemPath, "'\(id)' is not defined under \(kind.section)")
                }
                guard seen.insert(id).inserted else { throw ConfigError(itemPath, "'\(id)' is listed twice") }
                return id
            }
        }
        let exporterIDs = try ids(.exporter)
        let connectorIDs = exporterIDs.filter { id in config.connectors.contains { $0.id == id } }
        var pipeline = PipelineConfig(id: entry.key, receivers: try ids(.receiver), processors: try ids(.processor),
                                      exporters: exporterIDs.filter { !connectorIDs.contains($0) }, notifiers: try ids(.notifier))
        pipeline.connectors = connectorIDs
        if let value = entry.value["rules"], value != .null {
            guard case .list(let items) = value else { throw ConfigError("\(path).rules", "must be a list of rule ids") }
            pipeline.rules = try items.enumerated().map { index, item in
                let itemPath = "\(path).rules.\(index)"
                let id = try ComponentID(parsing: try requireString(item, itemPath), path: itemPath)
                guard config.rules.contains(where: { $0.id == id }) else { throw ConfigError(itemPath, "'\(id)' is not defined under rules") }
                return id
            }
            if !pipeline.rules.isEmpty && pipeline.notifiers.isEmpty {
                throw ConfigError("\(path).notifiers", "a pipeline with rules needs at least one notifier")
            }
        }
        if pipeline.receivers.isEmpty { throw ConfigError("\(path).receivers", "a pipeline needs at least one receiver") }
        if exporterIDs.isEmpty && pipeline.notifiers.isEmpty {
            throw ConfigError("\(path).exporters", "a pipeline needs at least one exporter, connector or notifier")
        }
        return pipeline
    }
}

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
