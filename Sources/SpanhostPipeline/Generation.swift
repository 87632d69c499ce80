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
/// Receivers hand each batch to the current generation.
public final class Generation: @unchecked Sendable {
    public let config: ServiceConfig
    public let pipelines: [Pipeline]
    public let exporters: [ExporterRunner]
    public let notifiers: [PluginInstance]
    private let routes: [ComponentID: [Pipeline]]

    /// Builds every instance; on any failure, what was already built is destroyed and the
    /// error names the component.
    public init(config: ServiceConfig, catalog: PluginCatalog) throws {
        func instantiate(_ kind: ComponentKind, _ id: ComponentID, expect: PluginKind) throws -> PluginInstance {
            guard let component = config.component(kind, id) else { preconditionFailure("validated by ServiceConfig") }
            guard let library = catalog.library(named: id.type) else {
                let names = catalog.libraries.values.filter { $0.kind == expect }.map(\.name).sorted()
                throw GenerationError.unknownType(kind: kind, id: id, available: names)
            }
            guard library.kind == expect else {
                throw GenerationError.wrongKind(kind: kind, id: id, plugin: library.name, actual: library.kind)
            }
            do {
                return try PluginInstance(id: id, library: library, settings: component.settings)
            } catch var error as PluginCreateError {
                error.component = "\(kind.section).\(id)"
                throw GenerationError.createFailed(error)
            }
        }

        // Exporters and notifiers are shared by the pipelines that name them; processors are
        // per pipeline, since they may keep per-pipeline state.
        var exporters: [ComponentID: ExporterRunner] = [:]
        var notifiers: [ComponentID: PluginInstance] = [:]
        var pipelines: [Pipeline] = []
        for pipeline in config.pipelines {
            for id in pipeline.exporters where exporters[id] == nil {
                let instance = try instantiate(.exporter, id, expect: .exporter)
                do {
                    exporters[id] = try ExporterRunner(instance: instance, settings: instance.settings, path: "exporters.\(id)")
                } catch let error as ConfigError {
                    throw GenerationError.invalidSettings(error)
                }
            }
            for id in pipeline.notifiers where notifiers[id] == nil {
                notifiers[id] = try instantiate(.notifier, id, expect: .notifier)
            }
            let processors = try pipeline.processors.map { try instantiate(.processor, $0, expect: .processor) }
            pipelines.append(Pipeline(id: pipeline.id, processors: processors,
                                      exporters: pipeline.exporters.map { exporters[$0]! },
                                      notifiers: pipeline.notifiers.map { notifiers[$0]! }))
        }
        var routes: [ComponentID: [Pipeline]] = [:]
        for (config, pipeline) in zip(config.pipelines, pipelines) {
            for receiver in config.receivers { routes[receiver, default: []].append(pipeline) }
        }
        self.config = config
        self.pipelines = pipelines
        self.exporters = config.exporters.compactMap { exporters[$0.id] }
        self.notifiers = config.notifiers.compactMap { notifiers[$0.id] }
        self.routes = routes
        for exporter in self.exporters { exporter.start() }
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

    /// Drains exporters until `timeout` and destroys every instance. Returns the spans that
    /// were not delivered.
    public func shutdown(timeout: Duration) -> Int {
        let deadline = ContinuousClock.now + timeout
        for pipeline in pipelines {
            for processor in pipeline.processors {
                _ = processor.flush()
                processor.destroy()
            }
        }
        let undelivered = exporters.reduce(0) { $0 + $1.shutdown(deadline: deadline) }
        for notifier in notifiers {
            _ = notifier.flush()
            notifier.destroy()
        }
        return undelivered
    }
}
