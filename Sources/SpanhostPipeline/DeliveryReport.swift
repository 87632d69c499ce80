import SpanhostConfig

/// What became of accepted spans, per exporter, and what processors lost on the way.
public struct DeliveryReport: Sendable, Equatable {
    public var exporters: [String: DeliveryTally] = [:]
    /// Spans processors took (to hold or batch) that they could not pass on.
    public var processorLostSpans = 0

    public init() {}

    public var lostSpans: Int { exporters.values.reduce(processorLostSpans) { $0 + $1.lost } }

    /// Adds the figures of components retired earlier (reloads) to these.
    public mutating func add(_ other: DeliveryReport) {
        for (id, tally) in other.exporters { exporters[id, default: DeliveryTally()].add(tally) }
        processorLostSpans += other.processorLostSpans
    }

    /// One line for the log: accepted, delivered, kept on disk and lost, per exporter.
    public var summary: String {
        let parts = exporters.sorted { $0.key < $1.key }.map { id, t in
            "\(id): accepted \(t.accepted), delivered \(t.delivered), kept on disk \(t.keptOnDisk + t.deadLettered)"
                + (t.deadLettered > 0 ? " (\(t.deadLettered) dead-lettered)" : "") + ", lost \(t.lost)"
        }
        let processors = processorLostSpans > 0 ? ["processors: lost \(processorLostSpans)"] : []
        return (parts + processors).joined(separator: "; ")
    }
}
