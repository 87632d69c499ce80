import SpanhostConfig

extension PluginKind {
    /// The keys of a component's section that the host reads for this kind.
    var hostKeys: [String] {
        switch self {
        case .processor: return HostKeys.processor
        case .exporter: return HostKeys.exporter
        case .notifier: return HostKeys.notifier
        case .functions: return []
        }
    }

    /// Why `key` of component `id` is refused, when it is a Collector key spanhost does not implement.
    func collectorNote(id: ComponentID, key: String?) -> String? {
        guard let key else { return nil }
        let section = self == .processor ? "processors" : self == .exporter ? "exporters" : "notifiers"
        return CollectorKeys.note(for: "\(section).\(id).\(key)")
    }
}
