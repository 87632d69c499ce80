import Foundation
import Logging
import SpanhostAlerts
import SpanhostConfig
import SpanhostConnectors
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues
import Synchronization

/// Why a config could not be turned into running pipelines.
public enum GenerationError: Error, CustomStringConvertible {
    case unknownType(kind: ComponentKind, id: ComponentID, directories: [String], available: [String])
    case wrongKind(kind: ComponentKind, id: ComponentID, plugin: String, actual: PluginKind)
    case createFailed(PluginCreateError)
    case invalidSettings(ConfigError)
    /// The file named like the component's type was refused when plugins were scanned.
    case refused(kind: ComponentKind, id: ComponentID, reason: PluginLoadError)
    /// The component's plugin is quarantined and its `on_quarantine` is `fail`.
    case quarantined(kind: ComponentKind, id: ComponentID, reason: PluginLoadError)

    public var description: String {
        switch self {
        case .unknownType(.exporter, let id, _, _) where id.type == "otlp":
            return "exporters.\(id): the Collector's otlp exporter sends OTLP over gRPC, which spanhost does not speak; use otlphttp "
                + "(OTLP over HTTP, usually the backend's port 4318): exporters: {otlphttp: {endpoint: \"https://backend:4318\"}}"
        case .unknownType(let kind, let id, let directories, let available):
            let list = available.isEmpty ? "there are none" : "plugin files there: \(available.joined(separator: ", "))"
            // rustc and cargo name a cdylib lib<name>.so; the host looks for <name>.so only.
            let prefixed = available.contains("lib\(id.type)")
                ? "; lib\(id.type).so is there: rename it to \(id.type).so (rustc -o \(id.type).so, or copy cargo's output)" : ""
            return "\(kind.section).\(id): no \(kind.rawValue) plugin named '\(id.type)': no file \(id.type).so in "
                + "\(directories.joined(separator: ", ")) (\(list))\(prefixed)"
        case .wrongKind(let kind, let id, let plugin, let actual):
            return "\(kind.section).\(id): plugin '\(plugin)' is a \(actual.rawValue), not a \(kind.rawValue)"
        case .createFailed(let error): return "\(error)"
        case .invalidSettings(let error): return "\(error)"
        case .refused(let kind, let id, let reason): return "\(kind.section).\(id): \(reason)"
        case .quarantined(let kind, let id, let reason):
            return "\(kind.section).\(id): \(reason); on_quarantine is fail: remove it (the default, refuse, keeps the other pipelines running)"
        }
    }
}

/// Everything built from one config: component instances and the pipelines joining them.
///
/// A reload builds a new generation next to the running one. Components whose plugin image
/// (sha256) and settings are unchanged are carried over as the same instance, queue included;
/// everything else is new. The old generation then retires what the new one does not use.
public final class Generation: Sendable {
    public let config: ServiceConfig
    public let catalog: PluginCatalog
    public let pipelines: [Pipeline]
    public let exporters: [ExporterRunner]
    public let notifiers: [NotifierRunner]
    /// Connectors (servicegraph, spanmetrics), with the settings each was built from.
    public let connectors: [(config: ConnectorConfig, connector: SpanConnector)]
    /// How many components were carried over from the previous generation.
    public let carriedOver: Int
    /// The recent errors of every pipeline, for the admin page; handed from one generation to
    /// the next.
    public let errors: ErrorLog
    /// Live taps of the admin page; handed from one generation to the next.
    public let taps: TapBoard
    /// Components left out because their plugin is quarantined (`on_quarantine: skip`).
    public let skipped: [String]
    /// Pipelines answering 503 because a component's plugin is quarantined
    /// (`on_quarantine: refuse`), with the component and reason.
    public let refusingPipelines: [String: String]
    /// Pipelines that drop what their quarantined exporters (with `on_full: drop`) would get,
    /// with those exporters.
    public let droppingPipelines: [String: [String]]
    /// The sha256 of each `plugins.functions` library this generation was built with.
    let functionImages: [String]
    private let routes: [ComponentID: [Pipeline]]
    /// Batches running through this generation now; an atomic, since every batch counts itself.
    let inFlight = Atomic<Int>(0)

    public init(config: ServiceConfig, catalog: PluginCatalog, previous: Generation? = nil) throws {
        errors = previous?.errors ?? ErrorLog()
        taps = previous?.taps ?? TapBoard()
        var created: [PluginInstance] = []
        var carried = 0
        // Processors compile their expressions against the functions loaded when they were made:
        // when a function library changes, they are made again.
        let functionImages = config.functionLibraries.map { catalog.library(named: $0)?.sha256 ?? "" }
        let functionsChanged = previous.map { $0.functionImages != functionImages } ?? false
        func instantiate(_ kind: ComponentKind, _ id: ComponentID, expect: PluginKind,
                         reuse candidate: PluginInstance?) throws -> PluginInstance {
            let (component, library) = try Self.resolve(kind, id, expect: expect, config: config, catalog: catalog)
            if let candidate, candidate.library === library, candidate.settings == component.settings,
               !(functionsChanged && kind == .processor) {
                carried += 1
                return candidate
            }
            do {
                let policy = try CallPolicy(settings: component.settings, path: "\(kind.section).\(id)")
                let instance = try PluginInstance(id: id, library: library, settings: component.settings, policy: policy)
                created.append(instance)
                return instance
            } catch var error as PluginCreateError {
                error.component = "\(kind.section).\(id)"
                throw GenerationError.createFailed(error)
            } catch let error as ConfigError {
                throw GenerationError.invalidSettings(error)
            }
        }

        /// The runner (queue and threads) of a shared exporter or notifier: the previous
        /// generation's when its instance is carried over, else a new one.
        func runner<R>(_ kind: ComponentKind, _ id: ComponentID, old: R?, _ instanceOf: KeyPath<R, PluginInstance>,
                       make: (PluginInstance, ConfigValue, String) throws -> R) throws -> R {
            let expect: PluginKind = kind == .exporter ? .exporter : .notifier
            let instance = try instantiate(kind, id, expect: expect, reuse: old?[keyPath: instanceOf])
            if let old, old[keyPath: instanceOf] === instance { return old }
            do {
                return try make(instance, instance.settings, "\(kind.section).\(id)")
            } catch let error as ConfigError {
                throw GenerationError.invalidSettings(error)
            }
        }

        var exporters: [ComponentID: ExporterRunner] = [:]
        var notifiers: [ComponentID: NotifierRunner] = [:]
        var connectors: [(config: ConnectorConfig, connector: SpanConnector)] = []
        var pipelines: [Pipeline] = []
        var quarantine = QuarantineEffect(config: config)
        do {
            // Components whose plugin is quarantined are left out; their pipelines refuse data
            // (or run without them, with `on_quarantine: skip`).
            quarantine = try Self.applyQuarantine(config, catalog: catalog)
            let config = quarantine.config
            do { try RuleEngine.checkConditions(config.rules) } catch { throw GenerationError.invalidSettings(error) }
            // Function libraries registered their functions when the catalog loaded them.
            for name in config.functionLibraries {
                guard let library = catalog.library(named: name) else {
                    throw GenerationError.invalidSettings(ConfigError("plugins.functions", "no plugin file \(name).so in "
                        + catalog.directories.joined(separator: ", ") + " (or it was refused: see refusedPlugins at /status)"))
                }
                guard !library.functions.isEmpty else {
                    throw GenerationError.invalidSettings(ConfigError("plugins.functions", "plugin '\(name)' adds no functions"))
                }
            }
            // Exporters and notifiers are shared by the pipelines that name them; processors are
            // per pipeline, since they may keep per-pipeline state.
            for config in config.connectors {
                if let connector = config.connector(previous: previous?.connectors.first { $0.config.id == config.id }) {
                    connectors.append((config, connector))
                }
            }
            // A pipeline is built after the pipelines its forward and routing connectors feed, so
            // it is complete when made.
            var joining: [ComponentID: PipelineConnector] = [:]
            var built: [String: Pipeline] = [:]
            for pipeline in Self.downstreamFirst(config.pipelines, connectors: config.connectors) {
                for id in config.exporterIDs(of: pipeline) where exporters[id] == nil {
                    exporters[id] = try runner(.exporter, id, old: previous?.exporters.first { $0.id == id }, \.instance,
                                               make: ExporterRunner.init)
                }
                for id in pipeline.notifiers where notifiers[id] == nil {
                    notifiers[id] = try runner(.notifier, id, old: previous?.notifiers.first { $0.id == id }, \.instance,
                                               make: NotifierRunner.init)
                }
                let oldPipeline = previous?.pipelines.first { $0.id == pipeline.id }
                let processors = try pipeline.processors.map { id in
                    try instantiate(.processor, id, expect: .processor, reuse: oldPipeline?.processors.first { $0.id == id })
                }
                let journals = Self.journals(for: processors, pipeline: pipeline.id, old: oldPipeline,
                                             queues: pipeline.exporters.map { exporters[$0]!.queueSettings })
                let balancers = pipeline.balancers.compactMap { id in config.loadBalancers.first { $0.id == id } }.map { balancer in
                    LoadBalancer(balancer, backends: balancer.backends.map { exporters[$0.exporter]! })
                }
                for id in pipeline.connectors where joining[id] == nil {
                    guard let connector = config.connectors.first(where: { $0.id == id && $0.joinsPipelines }) else { continue }
                    let fed = Dictionary(uniqueKeysWithValues: config.pipelines.filter { $0.receivers.contains(id) }.map { ($0.id, built[$0.id]!) })
                    do { joining[id] = try PipelineConnector(connector, fed: fed) } catch { throw GenerationError.invalidSettings(error) }
                }
                built[pipeline.id] = Pipeline(id: pipeline.id, processors: processors,
                                          exporters: pipeline.exporters.map { exporters[$0]! }, balancers: balancers,
                                          notifiers: pipeline.notifiers.map { notifiers[$0]! },
                                          connectors: pipeline.connectors.compactMap { id in connectors.first { $0.config.id == id }?.connector },
                                          rules: pipeline.rules.compactMap { id in config.rules.first { $0.id == id } },
                                          previous: oldPipeline, errors: errors, taps: taps, refusing: quarantine.refusing[pipeline.id],
                                          dropping: quarantine.dropping[pipeline.id] ?? [], journals: journals,
                                          downstream: pipeline.connectors.compactMap { joining[$0] })
            }
            pipelines = config.pipelines.map { built[$0.id]! }
        } catch {
            for instance in created { instance.destroy() }
            throw error
        }
        var routes: [ComponentID: [Pipeline]] = [:]
        for (config, pipeline) in zip(config.pipelines, pipelines) {
            for receiver in config.receivers { routes[receiver, default: []].append(pipeline) }
        }
        self.config = config
        self.catalog = catalog
        self.pipelines = pipelines
        self.exporters = config.exporters.compactMap { exporters[$0.id] }
        self.notifiers = config.notifiers.compactMap { notifiers[$0.id] }
        self.connectors = connectors
        self.routes = routes
        self.carriedOver = carried
        self.functionImages = functionImages
        self.skipped = quarantine.skipped
        self.refusingPipelines = quarantine.refusing
        self.droppingPipelines = quarantine.dropping
    }

    /// Logs what quarantined plugins do to this generation: components left out, pipelines that
    /// refuse data, pipelines that drop a quarantined exporter's share.
    public func logQuarantine(_ logger: Logger) {
        if !skipped.isEmpty {
            logger.error("components left out: their plugin is quarantined (on_quarantine: skip)", metadata: ["components": "\(skipped)"])
        }
        for (pipeline, reason) in refusingPipelines.sorted(by: { $0.key < $1.key }) {
            logger.error("pipeline refuses data (503) until the plugin is replaced or POST /-/quarantine/clear",
                         metadata: ["pipeline": "\(pipeline)", "reason": "\(reason)"])
        }
        for (pipeline, exporters) in droppingPipelines.sorted(by: { $0.key < $1.key }) {
            logger.error("pipeline drops what its quarantined exporters would get (on_full: drop), counted at /status",
                         metadata: ["pipeline": "\(pipeline)", "exporters": "\(exporters)"])
        }
    }

    /// The pipelines in an order where each comes after every pipeline its forward and routing
    /// connectors feed (the config has no cycles; one would be cut, not looped on).
    static func downstreamFirst(_ pipelines: [PipelineConfig], connectors: [ConnectorConfig]) -> [PipelineConfig] {
        let joining = Set(connectors.filter(\.joinsPipelines).map(\.id))
        var order: [PipelineConfig] = []
        var visited: Set<String> = []
        func visit(_ pipeline: PipelineConfig) {
            guard visited.insert(pipeline.id).inserted else { return }
            for id in pipeline.connectors where joining.contains(id) {
                for fed in pipelines where fed.receivers.contains(id) { visit(fed) }
            }
            order.append(pipeline)
        }
        pipelines.forEach(visit)
        return order
    }

    /// Each processor's hold journal: the one it had when it is carried over, a new one when an
    /// exporter of the pipeline keeps its queue on disk (the journal goes beside that queue,
    /// written with its fsync policy), else none: with memory queues a kill loses the queued
    /// spans anyway.
    static func journals(for processors: [PluginInstance], pipeline: String, old: Pipeline?,
                         queues: [SendingQueueSettings]) -> [HoldJournal?] {
        let persistent = queues.first { $0.storage != nil }
        return processors.map { processor in
            if let old, let i = old.processors.firstIndex(where: { $0 === processor }), let journal = old.journals[i] {
                return journal
            }
            guard let persistent, let storage = persistent.storage else { return nil }
            return HoldJournal(storage: storage, pipeline: pipeline, processor: processor.id.description, fsync: persistent.fsync)
        }
    }

    /// Starts the worker threads of exporters that are new in this generation and points
    /// every processor's emit at its pipeline here.
    public func activate() {
        for pipeline in pipelines {
            pipeline.attachProcessors()
            pipeline.rules.start()
        }
        for exporter in exporters { exporter.start() }
        for notifier in notifiers { notifier.start() }
    }

    /// Whether batches from `receiver` may run on an event loop: no plugin on their way blocks.
    /// Asked per request: an instance demoted for breaking SPANHOST_PLUGIN_NONBLOCKING sends its
    /// pipelines' batches to the pool from its next request on.
    public func neverBlocks(from receiver: ComponentID) -> Bool { routes[receiver]?.allSatisfy(\.neverBlocks) ?? false }

    /// Hands a batch from `receiver` to each of its pipelines. A batch that reaches exporters is
    /// read-only from then on, and processors change batches in place, so a pipeline with
    /// processors works on its own copy unless no other pipeline sees the batch at all (or
    /// they all declared SPANHOST_PLUGIN_READONLY).
    public func consume(_ batch: SpanBatch, from receiver: ComponentID) -> ConsumeOutcome {
        guard let pipelines = routes[receiver], !pipelines.isEmpty else {
            // Bound by a reload that has not swapped in yet, or retired by one: come back soon.
            return .refused(retryAfterSeconds: 1, message: "receiver \(receiver) feeds no pipeline yet")
        }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        let takesOriginal = Self.plan(pipelines.map { $0.changesBatches })
        for (pipeline, original) in zip(pipelines, takesOriginal) {
            guard let own = original ? batch : batch.clone() else {
                outcome = Self.merge(outcome, .refused(retryAfterSeconds: 1, message: "out of memory copying a batch for pipeline \(pipeline.id)"))
                continue
            }
            outcome = Self.merge(outcome, pipeline.consume(own))
        }
        return outcome
    }

    /// For pipelines that change batches (`true`) or not, which may take the original batch
    /// rather than a copy: every pipeline that does not change it, and a changing one only
    /// when it is the only pipeline that will ever see the original.
    static func plan(_ changes: [Bool]) -> [Bool] {
        guard let last = changes.indices.last else { return [] }
        if changes.allSatisfy({ $0 }) { return changes.indices.map { $0 == last } }
        return changes.map { !$0 }
    }

    /// The answer for several pipelines: any refusal wins (the client retries), then any
    /// rejection; otherwise the largest partial-success count.
    static func merge(_ a: ConsumeOutcome, _ b: ConsumeOutcome) -> ConsumeOutcome {
        switch (a, b) {
        case (.refused, _): return a
        case (_, .refused): return b
        case (.rejected, _): return a
        case (_, .rejected): return b
        case (.accepted(let ra, let ma), .accepted(let rb, let mb)):
            return ra >= rb ? .accepted(rejectedSpans: ra, message: ma) : .accepted(rejectedSpans: rb, message: mb)
        }
    }

    func enter() { inFlight.add(1, ordering: .sequentiallyConsistent) }

    func leave() { inFlight.subtract(1, ordering: .sequentiallyConsistent) }

}
