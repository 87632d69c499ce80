import Foundation
import Logging
import SpanhostAlerts
import SpanhostConfig
import SpanhostConnectors
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues

/// Retiring a generation: after a reload (what the next one does not carry over), or at shutdown.
extension Generation {
    /// Shuts down what `successor` does not carry over (everything when it is nil): waits for
    /// batches still running through this generation, flushes and destroys processors (what
    /// they held goes into the exporters' queues whatever their limits), drains exporters
    /// until `deadline`. Returns what became of the spans the retired components accepted.
    public func retire(keeping successor: Generation?, deadline: ContinuousClock.Instant) -> DeliveryReport {
        while inFlight.load(ordering: .sequentiallyConsistent) > 0 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
        let keptProcessors = Set((successor?.pipelines ?? []).flatMap(\.processors).map(ObjectIdentifier.init))
        let keptExporters = Set((successor?.exporters ?? []).map(ObjectIdentifier.init))
        let keptNotifiers = Set((successor?.notifiers ?? []).map(ObjectIdentifier.init))
        var report = DeliveryReport()
        for pipeline in pipelines {
            pipeline.draining.store(true, ordering: .relaxed)
            for (processor, journal) in zip(pipeline.processors, pipeline.journals) where !keptProcessors.contains(ObjectIdentifier(processor)) {
                _ = processor.flush()
                processor.destroy()
                // What it held went on with the flush, or is counted as lost just below.
                journal?.discard()
                report.processorLostSpans += Int(processor.counters.snapshot[PluginInstance.lostSpansCounter] ?? 0)
            }
        }
        // Rules hand their waiting groups to the notifiers before those may shut down; an
        // engine the successor carries over keeps running, state and all.
        let keptRules = Set((successor?.pipelines ?? []).map { ObjectIdentifier($0.rules) })
        for pipeline in pipelines where !keptRules.contains(ObjectIdentifier(pipeline.rules)) { pipeline.rules.stop() }
        for exporter in exporters where !keptExporters.contains(ObjectIdentifier(exporter)) {
            report.exporters[exporter.id.description] = exporter.shutdown(deadline: deadline)
        }
        for notifier in notifiers where !keptNotifiers.contains(ObjectIdentifier(notifier)) {
            notifier.shutdown(deadline: deadline)
        }
        return report
    }

    /// Drains and destroys everything.
    public func shutdown(timeout: Duration) -> DeliveryReport {
        retire(keeping: nil, deadline: .now + timeout)
    }
}
