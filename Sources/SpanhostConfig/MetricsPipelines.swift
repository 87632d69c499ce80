import Foundation

/// A `metrics` pipeline. Spanhost carries traces only, so its receivers are connectors (the
/// metrics they derive from spans) and its exporters are the ones that carry those metrics out:
///
///     service:
///       pipelines:
///         traces: {receivers: [otlp], exporters: [spanmetrics]}
///         metrics: {receivers: [spanmetrics], exporters: [prometheus]}
public struct MetricsPipelineConfig: Sendable, Equatable {
    public var id: String
    public var connectors: [ComponentID]
    public var exporters: [ComponentID]
}

/// An exporter of a metrics pipeline.
public struct MetricsExporterConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Discards (the Collector's `nop`).
        case nop
        /// A scrape endpoint serving the connectors' metrics in the Prometheus text format.
        case prometheus(PrometheusExporterSettings)
        /// OTLP/HTTP metrics pushed every flush interval.
        case otlphttp(OTLPMetricsPushSettings)
    }
    public var id: ComponentID
    public var kind: Kind

    public static let types = ["prometheus", "otlphttp", "nop"]

    init(_ component: ComponentConfig) throws {
        let path = "exporters.\(component.id)"
        id = component.id
        switch component.id.type {
        case "nop":
            try component.settings.requireKnownKeys([], path: path)
            kind = .nop
        case "prometheus": kind = .prometheus(try PrometheusExporterSettings(component.settings, path: path))
        case "otlphttp", "otlp_http": kind = .otlphttp(try OTLPMetricsPushSettings(component.settings, path: path))
        default:
            throw ConfigError(path, "'\(component.id.type)' does not carry metrics in spanhost; the metrics of connectors go out through \(Self.types.joined(separator: " or "))")
        }
    }
}

/// The Collector's `prometheus` exporter: `GET <endpoint>/metrics` answers with the metrics of
/// the connectors whose metrics pipelines end in it.
public struct PrometheusExporterSettings: Sendable, Equatable {
    public var endpoint: Endpoint
    /// Prepended to every metric name, with `_`.
    public var namespace = ""
    /// Labels added to every series.
    public var constLabels: [String: String] = [:]

    init(_ settings: ConfigValue, path: String) throws {
        // send_timestamps, metric_expiration, resource_to_telemetry_conversion: series carry no
        // timestamps here, expire with their connector, and already have service_name as a label.
        try settings.requireKnownKeys(["endpoint", "namespace", "const_labels", "send_timestamps", "metric_expiration",
                                       "resource_to_telemetry_conversion", "enable_open_metrics", "add_metric_suffixes"], path: path)
        guard let endpoint = settings["endpoint"] else { throw ConfigError("\(path).endpoint", "required: the host:port to serve /metrics on") }
        self.endpoint = try Endpoint(parsing: try requireString(endpoint, "\(path).endpoint"), path: "\(path).endpoint")
        if let v = settings["namespace"], v != .null { namespace = try requireString(v, "\(path).namespace") }
        for entry in settings["const_labels"]?.mapEntries ?? [] {
            constLabels[entry.key] = try requireString(entry.value, "\(path).const_labels.\(entry.key)")
        }
        if let v = settings["send_timestamps"] { _ = try parseBool(v, path: "\(path).send_timestamps") }
        if let v = settings["metric_expiration"] { _ = try parseDuration(v, path: "\(path).metric_expiration") }
        try settings["resource_to_telemetry_conversion"]?.requireKnownKeys(["enabled"], path: "\(path).resource_to_telemetry_conversion")
        if let v = settings["enable_open_metrics"], try parseBool(v, path: "\(path).enable_open_metrics") {
            throw ConfigError("\(path).enable_open_metrics", "the OpenMetrics format is not supported by spanhost: the Prometheus text format is served")
        }
        if let v = settings["add_metric_suffixes"], try !parseBool(v, path: "\(path).add_metric_suffixes") {
            throw ConfigError("\(path).add_metric_suffixes", "names without suffixes are not supported by spanhost: `_total` and the unit are always added")
        }
    }
}

/// An `otlphttp` exporter in a metrics pipeline: every flush interval of its connectors
/// (`metrics_flush_interval`), their metrics go as OTLP/JSON (cumulative) to `metrics_endpoint`,
/// or `endpoint` + /v1/metrics, over plain HTTP.
public struct OTLPMetricsPushSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var path: String
    public var headers: [String: String] = [:]
    public var timeout: Duration = .seconds(5)

    init(_ settings: ConfigValue, path configPath: String) throws {
        let url: String
        if let v = settings["metrics_endpoint"] {
            url = try requireString(v, "\(configPath).metrics_endpoint")
        } else if let v = settings["endpoint"] {
            let base = try requireString(v, "\(configPath).endpoint")
            url = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/metrics"
        } else {
            throw ConfigError("\(configPath).endpoint", "required: where metrics go (endpoint, or metrics_endpoint)")
        }
        if url.hasPrefix("https://") {
            throw ConfigError("\(configPath).endpoint", "metrics over HTTPS are not supported yet: use an http:// endpoint (a local Collector) or the prometheus exporter")
        }
        guard url.hasPrefix("http://"), let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw ConfigError("\(configPath).endpoint", "'\(url)' is not an http:// URL")
        }
        self.host = host
        port = components.port ?? 80
        self.path = components.path.isEmpty ? "/" : components.path
        for entry in settings["headers"]?.mapEntries ?? [] {
            headers[entry.key] = try requireString(entry.value, "\(configPath).headers.\(entry.key)")
        }
        if let v = settings["timeout"] { timeout = try parseDuration(v, path: "\(configPath).timeout") }
    }
}

extension ServiceConfig {
    static func parseMetricsPipeline(_ entry: ConfigValue.Entry, config: ServiceConfig) throws -> MetricsPipelineConfig {
        let path = "service.pipelines.\(entry.key)"
        try entry.value.requireKnownKeys(["receivers", "processors", "exporters"], path: path)
        func ids(_ key: String) throws -> [ComponentID] {
            guard let value = entry.value[key], value != .null else { return [] }
            guard case .list(let items) = value else { throw ConfigError("\(path).\(key)", "must be a list of component ids") }
            return try items.enumerated().map { try ComponentID(parsing: try requireString($1, "\(path).\(key).\($0)"), path: "\(path).\(key).\($0)") }
        }
        let receivers = try ids("receivers")
        for (index, id) in receivers.enumerated() where !config.connectors.contains(where: { $0.id == id }) {
            throw ConfigError("\(path).receivers.\(index)", config.component(.receiver, id) != nil
                ? "'\(id)' receives no metrics: spanhost carries traces only, so a metrics pipeline takes connectors (spanmetrics, servicegraph)"
                : "'\(id)' is not defined under connectors; spanhost carries traces only, so a metrics pipeline takes connectors (spanmetrics, servicegraph)")
        }
        // The derived metrics are written whole at each scrape or flush: batching has nothing to do.
        for (index, id) in try ids("processors").enumerated() where !["batch", "memory_limiter"].contains(id.type) {
            throw ConfigError("\(path).processors.\(index)", "'\(id)' cannot process metrics: spanhost's processors work on spans; a metrics pipeline takes batch and memory_limiter only")
        }
        let exporters = try ids("exporters")
        for (index, id) in exporters.enumerated() where config.component(.exporter, id) == nil {
            throw ConfigError("\(path).exporters.\(index)", "'\(id)' is not defined under exporters")
        }
        if receivers.isEmpty { throw ConfigError("\(path).receivers", "a pipeline needs at least one receiver") }
        if exporters.isEmpty { throw ConfigError("\(path).exporters", "a pipeline needs at least one exporter") }
        return MetricsPipelineConfig(id: entry.key, connectors: receivers, exporters: exporters)
    }

    /// The exporters of metrics pipelines become metrics exporters; those no traces pipeline
    /// lists are not plugins, so they leave `exporters`.
    static func adoptMetricsExporters(_ config: inout ServiceConfig) throws {
        let ids = Set(config.metricsPipelines.flatMap(\.exporters))
        var errors: [ConfigError] = []
        // Exporters that became something else by now (a loadbalancing exporter's backends).
        for id in ids.sorted(by: { "\($0)" < "\($1)" }) where !config.exporters.contains(where: { $0.id == id }) {
            errors.append(ConfigError("exporters.\(id)", "'\(id.type)' does not carry metrics in spanhost; the metrics of connectors go out through \(MetricsExporterConfig.types.joined(separator: ", "))"))
        }
        config.metricsExporters = try config.exporters.filter { ids.contains($0.id) }.compactMap { component in
            try collecting(&errors) { try MetricsExporterConfig(component) }
        }
        if let error = ConfigError.all(errors) { throw error }
        let traced = Set(config.pipelines.flatMap(\.exporters))
        config.exporters.removeAll { ids.contains($0.id) && !traced.contains($0.id) }
    }
}

extension ServiceConfig {
    /// forward and routing connectors join traces pipelines as the Collector checks them: each
    /// is an exporter of some pipeline and a receiver of another, a route names pipelines that
    /// receive from its router, and data never comes back to a pipeline it left.
    static func checkPipelineConnectors(_ config: ServiceConfig) throws {
        for connector in config.connectors where connector.joinsPipelines {
            let path = "connectors.\(connector.id)"
            let feeding = config.pipelines.filter { $0.connectors.contains(connector.id) }
            let fed = config.pipelines.filter { $0.receivers.contains(connector.id) }
            guard feeding.isEmpty == fed.isEmpty else {
                throw ConfigError(path, feeding.isEmpty
                    ? "is a receiver of pipeline \(fed[0].id) but no pipeline lists it under exporters"
                    : "is an exporter of pipeline \(feeding[0].id) but no pipeline lists it under receivers")
            }
            if case .routing(let routing) = connector.kind, !fed.isEmpty {
                for id in Set(routing.allPipelines) where !fed.contains(where: { $0.id == id }) {
                    throw ConfigError(path, config.pipelines.contains { $0.id == id }
                        ? "routes to pipeline \(id), which does not list \(connector.id) under receivers"
                        : "routes to pipeline \(id), which is not defined under service.pipelines")
                }
            }
        }
        // A cycle would send a batch around forever.
        var next: [String: [String]] = [:]
        for pipeline in config.pipelines {
            next[pipeline.id] = config.pipelines.filter { other in other.receivers.contains { pipeline.connectors.contains($0) } }.map(\.id)
        }
        var done = Set<String>()
        func visit(_ id: String, _ path: [String]) throws {
            if let start = path.firstIndex(of: id) {
                throw ConfigError("service.pipelines", "connectors make a cycle: \((path[start...] + [id]).joined(separator: " -> "))")
            }
            guard done.insert(id).inserted || !path.isEmpty else { return }
            for other in next[id] ?? [] { try visit(other, path + [id]) }
        }
        for pipeline in config.pipelines { try visit(pipeline.id, []) }
    }
}
