import Foundation

/// Collector components the config turns into host features (client auth as headers, the
/// batch and memory_limiter processors) and the checks of pipelines.
extension ServiceConfig {
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

    static func parsePipeline(_ entry: ConfigValue.Entry, config: ServiceConfig) throws -> PipelineConfig {
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
