import Foundation
import Logging
import SpanhostAlerts
import SpanhostConfig
import SpanhostConnectors
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues

/// Checking a config before anything is built, and what quarantined plugins do to it.
extension Generation {
    /// What quarantined plugins do to a config: the components left out (`on_quarantine: skip`
    /// and `refuse`), and the pipelines that refuse data because one of theirs is quarantined
    /// (`refuse`, the default), each with the reason.
    struct QuarantineEffect {
        var config: ServiceConfig
        var skipped: [String] = []
        var refusing: [String: String] = [:]
        /// Per pipeline: its quarantined exporters with `sending_queue.on_full: drop`, whose
        /// share the pipeline drops (counted) while it flows to the others.
        var dropping: [String: [String]] = [:]
    }

    /// Applies each quarantined component's `on_quarantine`: `fail` fails the generation,
    /// `skip` runs its pipelines without it, `refuse` keeps its pipelines answering 503 while
    /// every other pipeline runs.
    static func applyQuarantine(_ config: ServiceConfig, catalog: PluginCatalog) throws -> QuarantineEffect {
        var effect = QuarantineEffect(config: config)
        func keep(_ kind: ComponentKind, _ id: ComponentID, pipeline: String) throws -> Bool {
            guard let component = config.component(kind, id) else { return true }
            let path = "\(kind.section).\(id).on_quarantine"
            let choice = try component.settings["on_quarantine"].map { try requireString($0, path) } ?? "refuse"
            guard ["refuse", "skip", "fail"].contains(choice) else {
                throw GenerationError.invalidSettings(ConfigError(path, "'\(choice)' is not refuse, skip or fail"))
            }
            guard let reason = catalog.quarantined[id.pluginName] else { return true }
            switch choice {
            case "fail": throw GenerationError.quarantined(kind: kind, id: id, reason: reason)
            case "skip": effect.skipped.append("\(kind.section).\(id)")
            default:
                // An exporter that drops what does not fit its queue drops what it cannot take
                // at all: the pipeline's other exporters still get everything.
                let path = "\(kind.section).\(id).sending_queue"
                let queue = kind == .exporter ? try SendingQueueSettings(settings: component.settings["sending_queue"], path: path) : nil
                if queue?.onFull == .drop {
                    effect.dropping[pipeline, default: []].append("\(id)")
                } else {
                    effect.refusing[pipeline] = effect.refusing[pipeline] ?? "the plugin of \(kind.section).\(id) is quarantined (see /status)"
                }
            }
            return false
        }
        for i in effect.config.pipelines.indices {
            let pipeline = effect.config.pipelines[i].id
            effect.config.pipelines[i].processors = try effect.config.pipelines[i].processors.filter { try keep(.processor, $0, pipeline: pipeline) }
            effect.config.pipelines[i].exporters = try effect.config.pipelines[i].exporters.filter { try keep(.exporter, $0, pipeline: pipeline) }
            effect.config.pipelines[i].notifiers = try effect.config.pipelines[i].notifiers.filter { try keep(.notifier, $0, pipeline: pipeline) }
        }
        effect.skipped = Array(Set(effect.skipped)).sorted()
        return effect
    }

    /// The config and plugin library of one component, checked.
    static func resolve(_ kind: ComponentKind, _ id: ComponentID, expect: PluginKind, config: ServiceConfig,
                                catalog: PluginCatalog) throws -> (ComponentConfig, PluginLibrary) {
        guard let component = config.component(kind, id) else {
            throw GenerationError.invalidSettings(ConfigError("\(kind.section).\(id)", "is not defined"))
        }
        guard let library = catalog.library(named: id.pluginName) else {
            // The file that would have provided it was refused (a pin mismatch, an unsafe
            // directory...): say why rather than "not found".
            if let refusal = catalog.refused.first(where: { ($0.file as NSString).lastPathComponent == "\(id.type).so" }) {
                throw GenerationError.refused(kind: kind, id: id, reason: refusal.error)
            }
            throw GenerationError.unknownType(kind: kind, id: id, directories: catalog.directories,
                                              available: PluginCatalog.files(in: catalog.directories).map(\.name))
        }
        guard library.kind == expect else {
            throw GenerationError.wrongKind(kind: kind, id: id, plugin: library.name, actual: library.kind)
        }
        return (component, library)
    }

    /// Checks everything a generation of `config` would be built from without building it:
    /// the host's settings of every component, and each plugin's settings through its create
    /// (instances are destroyed at once and never started). No queue is opened, no host thread
    /// started. `spanhostd --check` runs this in a child process, so a plugin that crashes in
    /// create takes only that process down.
    public static func validate(config: ServiceConfig, catalog: PluginCatalog,
                                willCreate: (String, PluginLibrary) -> Void = { _, _ in }) throws {
        let config = try applyQuarantine(config, catalog: catalog).config
        do { try RuleEngine.checkConditions(config.rules) } catch { throw GenerationError.invalidSettings(error) }
        // Routing conditions compile (and are freed at once).
        do {
            for connector in config.connectors where connector.joinsPipelines { _ = try PipelineConnector(connector, fed: [:]) }
        } catch {
            throw GenerationError.invalidSettings(error)
        }
        var seen = Set<String>()
        for pipeline in config.pipelines {
            let used: [(ComponentKind, ComponentID, PluginKind)] = pipeline.processors.map { (.processor, $0, .processor) }
                + config.exporterIDs(of: pipeline).map { (.exporter, $0, .exporter) } + pipeline.notifiers.map { (.notifier, $0, .notifier) }
            for (kind, id, expect) in used where seen.insert("\(kind.section).\(id)").inserted {
                let (component, library) = try resolve(kind, id, expect: expect, config: config, catalog: catalog)
                let path = "\(kind.section).\(id)"
                do {
                    let policy = try CallPolicy(settings: component.settings, path: path)
                    switch kind {
                    case .exporter:
                        _ = try RetryPolicy(settings: component.settings, path: path)
                        _ = try SendingQueueSettings(settings: component.settings["sending_queue"], path: "\(path).sending_queue")
                    case .notifier:
                        _ = try RetryPolicy(settings: component.settings, path: path, defaults: NotifierRunner.defaultRetry)
                        _ = try NotifierQueueSettings(settings: component.settings["sending_queue"], path: "\(path).sending_queue")
                    default:
                        break
                    }
                    willCreate(path, library)
                    if library.canValidate {
                        try PluginInstance.validate(id: id, library: library, settings: component.settings)
                    } else {
                        let instance = try PluginInstance(id: id, library: library, settings: component.settings, policy: policy, start: false)
                        instance.destroy()
                    }
                } catch var error as PluginCreateError {
                    error.component = path
                    throw GenerationError.createFailed(error)
                } catch let error as ConfigError {
                    throw GenerationError.invalidSettings(error)
                }
            }
        }
    }
}
