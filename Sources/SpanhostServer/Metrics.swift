import Foundation
import Prometheus

/// `/metrics`: the figures of /status in the Prometheus text format. A fresh registry per
/// scrape, filled from the same snapshot /status serves, so the two never disagree.
extension StatusReport {
    func prometheusText() -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        // The registry stops the process when one name is registered as two types or with two
        // help texts; plugins choose their own names, so a series that would clash is left out.
        var registered: [String: (counter: Bool, help: String)] = [:]
        func admit(_ name: String, counter: Bool, _ help: String) -> Bool {
            if let existing = registered[name] { return existing.counter == counter && existing.help == help }
            registered[name] = (counter, help)
            return true
        }
        // Series names are whole (unit included), so the descriptor gets no unit of its own.
        func counter(_ name: String, _ value: Int64, _ labels: [(String, String)], _ help: String) {
            guard admit(name, counter: true, help) else { return }
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels).increment(by: value)
        }
        func gauge(_ name: String, _ value: Double, _ labels: [(String, String)], _ help: String) {
            guard admit(name, counter: false, help) else { return }
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels).set(value)
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
                    let (base, own) = Self.splitLabels(name, reserved: kind)
                    counter("spanhost_\(kind)_\(base)_total", value, labels + own, "\(kind) \(base.replacingOccurrences(of: "_", with: " "))")
                }
                for (name, value) in component.gauges ?? [:] {
                    let (base, own) = Self.splitLabels(name, reserved: kind)
                    gauge("spanhost_\(kind)_\(base)", Double(value), labels + own, "\(kind) \(base.replacingOccurrences(of: "_", with: " ")) (gauge)")
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
        collectorSeries(counter: counter, gauge: gauge)
        gauge("spanhost_batch_memory_bytes", Double(memory.batchBytes), [], "bytes held by span batches in memory")
        if let limit = memory.limitBytes { gauge("spanhost_memory_limit_bytes", Double(limit), [], "service.memory_limiter.limit_mib") }
        counter("spanhost_reloads_succeeded_total", Int64(reloads.succeeded), [], "reloads that took effect")
        counter("spanhost_reloads_failed_total", Int64(reloads.failed), [], "reloads refused")
        return registry.emitToBuffer()
    }

    /// `requests{status="500",method="GET"}` as ("requests", [("status", "500"), ("method", "GET")]).
    /// A name not in that form is returned whole; a label named `reserved` (the host's own label
    /// for the component) is left out.
    static func splitLabels(_ name: String, reserved: String) -> (String, [(String, String)]) {
        guard name.hasSuffix("}"), let open = name.firstIndex(of: "{") else { return (name, []) }
        var rest = name[name.index(after: open)..<name.index(before: name.endIndex)]
        var labels: [(String, String)] = []
        while !rest.isEmpty {
            guard let eq = rest.firstIndex(of: "="), rest[rest.index(after: eq)...].first == "\"" else { return (name, []) }
            let key = rest[..<eq]
            let valueStart = rest.index(eq, offsetBy: 2)
            guard let close = rest[valueStart...].firstIndex(of: "\""),
                  !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else { return (name, []) }
            if key != reserved { labels.append((String(key), String(rest[valueStart..<close]))) }
            rest = rest[rest.index(after: close)...]
            if rest.first == "," { rest = rest.dropFirst() } else if !rest.isEmpty { return (name, []) }
        }
        return (String(name[..<open]), labels)
    }

    /// The OpenTelemetry Collector's own metric names, from the same figures, so dashboards
    /// built for it work. Every series of a configured component is there from start, at zero.
    private func collectorSeries(counter: (String, Int64, [(String, String)], String) -> Void,
                                 gauge: (String, Double, [(String, String)], String) -> Void) {
        for receiver in receivers {
            let labels = [("receiver", receiver.id), ("transport", receiver.id.hasPrefix("kafka") ? "kafka" : "http")]
            counter("otelcol_receiver_accepted_spans", receiver.counters["accepted_spans"] ?? 0, labels,
                    "spans the receiver pushed into the pipelines")
        }
        for exporter in exporters {
            let labels = [("exporter", exporter.id)]
            let c = exporter.counters
            counter("otelcol_exporter_sent_spans", c["exported"] ?? 0, labels, "spans the exporter delivered")
            counter("otelcol_exporter_send_failed_spans", c["failed"] ?? 0, labels, "spans the exporter failed to deliver")
            counter("otelcol_exporter_enqueue_failed_spans", (c["dropped_on_full"] ?? 0) + (c["refused"] ?? 0), labels,
                    "spans refused by or dropped at a full sending queue")
            if let queue = exporter.queue {
                gauge("otelcol_exporter_queue_size", Double(queue.depth), labels, "batches in the sending queue")
                gauge("otelcol_exporter_queue_capacity", Double(queue.capacity), labels, "sending queue capacity in batches")
            }
        }
        let process = ProcessFigures.read()
        gauge("otelcol_process_uptime", process.uptimeSeconds, [], "seconds since the process started")
        gauge("otelcol_process_memory_rss", Double(process.rssBytes), [], "resident set size in bytes")
        counter("otelcol_process_cpu_seconds", Int64(process.cpuSeconds.rounded()), [], "CPU seconds used (user and system)")
    }
}

/// Uptime, RSS and CPU time of this process, from /proc.
struct ProcessFigures {
    var uptimeSeconds: Double = 0
    var rssBytes = 0
    var cpuSeconds: Double = 0

    static func read() -> ProcessFigures {
        var figures = ProcessFigures()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Fields after the command name, from field 3 (state): utime is 14, stime 15,
            // starttime 22 (ticks after boot), rss 24 (pages).
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 21, let utime = Double(fields[11]), let stime = Double(fields[12]),
               let start = Double(fields[19]), let pages = Int(fields[21]) {
                figures.cpuSeconds = (utime + stime) / ticks
                figures.rssBytes = pages * Int(sysconf(Int32(_SC_PAGESIZE)))
                if let uptime = (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))?.split(separator: " ").first
                    .flatMap({ Double($0) }) {
                    figures.uptimeSeconds = max(0, uptime - start / ticks)
                }
            }
        }
        return figures
    }
}
