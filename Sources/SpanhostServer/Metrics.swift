import Prometheus

/// `/metrics`: the figures of /status in the Prometheus text format. A fresh registry per
/// scrape, filled from the same snapshot /status serves, so the two never disagree.
extension StatusReport {
    func prometheusText() -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        func counter(_ name: String, _ value: Int64, _ labels: [(String, String)], _ help: String) {
            registry.makeCounter(name: name, labels: labels, help: help).increment(by: value)
        }
        func gauge(_ name: String, _ value: Double, _ labels: [(String, String)], _ help: String) {
            registry.makeGauge(name: name, labels: labels, help: help).set(value)
        }
        for receiver in receivers {
            for (name, value) in receiver.counters {
                counter("spanhost_receiver_\(name)_total", value, [("receiver", receiver.id)], "receiver \(name.replacingOccurrences(of: "_", with: " "))")
            }
        }
        for (kind, components) in [("exporter", exporters), ("notifier", notifiers)] + pipelines.map({ ("processor", $0.processors) }) {
            for component in components {
                let labels = [(kind, component.id)]
                for (name, value) in component.counters {
                    counter("spanhost_\(kind)_\(name)_total", value, labels, "\(kind) \(name.replacingOccurrences(of: "_", with: " "))")
                }
                gauge("spanhost_\(kind)_healthy", component.health == "healthy" ? 1 : 0, labels, "1 when the \(kind) is healthy")
                if let queue = component.queue {
                    gauge("spanhost_exporter_queue_batches", Double(queue.depth), labels, "batches waiting in the sending queue")
                    gauge("spanhost_exporter_queue_oldest_seconds", queue.oldestAgeSeconds ?? 0, labels, "age of the oldest queued batch")
                    gauge("spanhost_exporter_queue_memory_bytes", Double(queue.bytesInMemory), labels, "bytes of queued batches in memory")
                    if let queued = queue.bytesQueued {
                        gauge("spanhost_exporter_queue_undelivered_bytes", Double(queued), labels, "bytes of batches on disk not yet delivered")
                    }
                    if let disk = queue.bytesOnDisk {
                        gauge("spanhost_exporter_queue_disk_bytes", Double(disk), labels, "size of the queue's segment files")
                    }
                    if let dead = queue.deadLettered {
                        counter("spanhost_exporter_dead_lettered_total", Int64(dead), labels, "batches written to the dead-letter file")
                    }
                }
            }
        }
        for pipeline in pipelines {
            for (name, value) in pipeline.rules {
                let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
                counter("spanhost_rule_\(parts.last ?? name)_total", value, [("pipeline", pipeline.id), ("rule", parts.first ?? name)],
                        "rule events: \(parts.last ?? name)")
            }
        }
        gauge("spanhost_batch_memory_bytes", Double(memory.batchBytes), [], "bytes held by span batches in memory")
        if let limit = memory.limitBytes { gauge("spanhost_memory_limit_bytes", Double(limit), [], "service.memory_limiter.limit_mib") }
        counter("spanhost_reloads_succeeded_total", Int64(reloads.succeeded), [], "reloads that took effect")
        counter("spanhost_reloads_failed_total", Int64(reloads.failed), [], "reloads refused")
        return registry.emitToBuffer()
    }
}
