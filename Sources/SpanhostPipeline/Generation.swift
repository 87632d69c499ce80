import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPlugins

/// Why a config could not be turned into running pipelines.
public enum GenerationError: Error, CustomStringConvertible {
    case unknownType(kind: ComponentKind, id: ComponentID, available: [String])
    case wrongKind(kind: ComponentKind, id: ComponentID, plugin: String, actual: PluginKind)
    case createFailed(PluginCreateError)
    case invalidSettings(ConfigError)

    public var description: String {
        switch self {
        case .unknownType(let kind, let id, let available):
            let list = available.isEmpty ? "none are loaded" : "loaded: \(available.joined(separator: ", "))"
            return "\(kind.section).\(id): no \(kind.rawValue) plugin named '\(id.type)' (\(list))"
        case .wrongKind(let kind, let id, let plugin, let actual):
            return "\(kind.section).\(id): plugin '\(plugin)' is a \(actual.rawValue), not a \(kind.rawValue)"
        case .createFailed(let error): return "\(error)"
        case .invalidSettings(let error): return "\(error)"
        }
    }
}

/// Everything built from one config: component instances and the pipelines joining them.
///
/// A reload builds a new generation next to the running one. Components whose plugin image
/// (sha256) and settings are unchanged are carried over as the same instance, queue included;
/// everything else is new. The old generation then retires what the new one does not use.
public final class Generation: @unchecked Sendable {
    public let config: ServiceConfig
    public let catalog: PluginCatalog
    public let pipelines: [Pipeline]
    public let exporters: [ExporterRunner]
    public let notifiers: [NotifierRunner]
    /// How many components were carried over from the previous generation.
    public let carriedOver: Int
    private let routes: [ComponentID: [Pipeline]]
    private let activity = NSCondition()
    private var inFlight = 0

    public init(config: ServiceConfig, catalog: PluginCatalog, previous: Generation? = nil) throws {
        var created: [PluginInstance] = []
        var carried = 0
        func instantiate(_ kind: ComponentKind, _ id: ComponentID, expect: PluginKind,
                         reuse candidate: PluginInstance?) throws -> PluginInstance {
            guard let component = config.component(kind, id) else { preconditionFailure("validated by ServiceConfig") }
            guard let library = catalog.library(named: id.type) else {
                let names = catalog.libraries.values.filter { $0.kind == expect }.map(\.name).sorted()
                throw GenerationError.unknownType(kind: kind, id: id, available: names)
            }
            guard library.kind == expect else {
                throw GenerationError.wrongKind(kind: kind, id: id, plugin: library.name, actual: library.kind)
            }
            if let candidate, candidate.library === library, candidate.settings == component.settings {
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
        var pipelines: [Pipeline] = []
        do {
            // Exporters and notifiers are shared by the pipelines that name them; processors are
            // per pipeline, since they may keep per-pipeline state.
            for pipeline in config.pipelines {
                for id in pipeline.exporters where exporters[id] == nil {
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
                pipelines.append(Pipeline(id: pipeline.id, processors: processors,
                                          exporters: pipeline.exporters.map { exporters[$0]! },
                                          notifiers: pipeline.notifiers.map { notifiers[$0]! },
                                          rules: pipeline.rules.compactMap { id in config.rules.first { $0.id == id } }))
            }
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
        self.routes = routes
        self.carriedOver = carried
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

    /// Hands a batch from `receiver` to each of its pipelines. Pipelines after the first that
    /// have processors get their own copy, since processors change batches in place.
    public func consume(_ batch: SpanBatch, from receiver: ComponentID) -> ConsumeOutcome {
        guard let pipelines = routes[receiver], !pipelines.isEmpty else {
            return .rejected(message: "receiver \(receiver) feeds no pipeline")
        }
        if pipelines.count == 1 { return pipelines[0].consume(batch) }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        for (index, pipeline) in pipelines.enumerated() {
            let own = index == pipelines.count - 1 || pipeline.processors.isEmpty ? batch : batch.clone()
            outcome = Self.merge(outcome, pipeline.consume(own))
        }
        return outcome
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

    func enter() { activity.withLock { inFlight += 1 } }

    func leave() {
        activity.withLock {
            inFlight -= 1
            if inFlight == 0 { activity.broadcast() }
        }
    }

    /// Shuts down what `successor` does not carry over (everything when it is nil): waits for
    /// batches still running through this generation, flushes and destroys processors, drains
    /// exporters until `deadline`. Returns the spans that could not be delivered.
    public func retire(keeping successor: Generation?, deadline: ContinuousClock.Instant) -> Int {
        activity.withLock {
            while inFlight > 0 && ContinuousClock.now < deadline {
                _ = activity.wait(until: Date(timeIntervalSinceNow: 0.01))
            }
        }
        let keptProcessors = Set((successor?.pipelines ?? []).flatMap(\.processors).map(ObjectIdentifier.init))
        let keptExporters = Set((successor?.exporters ?? []).map(ObjectIdentifier.init))
        let keptNotifiers = Set((successor?.notifiers ?? []).map(ObjectIdentifier.init))
        for processor in pipelines.flatMap(\.processors) where !keptProcessors.contains(ObjectIdentifier(processor)) {
            _ = processor.flush()
            processor.destroy()
        }
        // Rules hand their waiting groups to the notifiers before those may shut down.
        for pipeline in pipelines { pipeline.rules.stop() }
        var undelivered = 0
        for exporter in exporters where !keptExporters.contains(ObjectIdentifier(exporter)) {
            undelivered += exporter.shutdown(deadline: deadline)
        }
        for notifier in notifiers where !keptNotifiers.contains(ObjectIdentifier(notifier)) {
            notifier.shutdown(deadline: deadline)
        }
        return undelivered
    }

    /// Drains and destroys everything.
    public func shutdown(timeout: Duration) -> Int {
        retire(keeping: nil, deadline: .now + timeout)
    }
}

/// The generation receivers hand batches to. Swapping it is atomic: a batch runs wholly in the
/// generation it entered, and the old generation knows when its last batch has left.
public final class CurrentGeneration: @unchecked Sendable {
    private let lock = NSLock()
    private var generation: Generation

    public init(_ generation: Generation) { self.generation = generation }

    public var value: Generation { lock.withLock { generation } }

    private var closed = false

    public func consume(_ batch: SpanBatch, from receiver: ComponentID) -> ConsumeOutcome {
        let current: Generation? = lock.withLock {
            guard !closed else { return nil }
            generation.enter()
            return generation
        }
        guard let current else { return .refused(retryAfterSeconds: 1, message: "spanhost is shutting down") }
        defer { current.leave() }
        return current.consume(batch, from: receiver)
    }

    /// Refuses every later batch and returns the generation to shut down. A batch either
    /// entered before (and the generation waits for it) or is refused: none slips between.
    public func close() -> Generation {
        lock.withLock {
            closed = true
            return generation
        }
    }

    /// Makes `next` current and returns the one it replaced.
    public func swap(to next: Generation) -> Generation {
        lock.withLock {
            let old = generation
            next.activate()
            generation = next
            return old
        }
    }
}
