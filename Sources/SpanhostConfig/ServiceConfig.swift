import Foundation

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
}
