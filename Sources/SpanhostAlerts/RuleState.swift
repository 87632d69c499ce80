import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel

/// One rule and what it has seen. Used only under the RuleEngine's lock.
final class RuleState {
    let config: RuleConfig
    private var dedup: Deduplicator
    /// error_rate and latency: per key (service, or service and span name), a ring of slots
    /// that together cover the window.
    private var windows: [String: SlidingWindow] = [:]
    /// Keys whose condition holds, with when they were last notified.
    private var firing: [String: ContinuousClock.Instant] = [:]
    private let origin = ContinuousClock.now
    private let slotWidth: Duration
    private let maxKeys = 10_000
    static let slots = 10

    init(_ config: RuleConfig) {
        self.config = config
        dedup = Deduplicator(groupWait: config.groupWait, cooldown: config.cooldown)
        slotWidth = config.window / Self.slots
    }

    func applies(to service: String) -> Bool {
        config.services.isEmpty || config.services.contains(service)
    }

    private func epoch(_ now: ContinuousClock.Instant) -> Int64 {
        Int64((now - origin) / slotWidth)
    }

    /// Counts one span. Returns an event only when it must go out at once (group_wait 0).
    func observe(span: UnsafeMutablePointer<spanhost_span>, error: SpanError, service: String,
                 now: ContinuousClock.Instant, wallClock: Date, pipeline: String,
                 counts: inout [String: Int64]) -> NotificationEvent? {
        switch config.condition {
        case .errorSpan:
            guard error.isError else { return nil }
            let name = span.pointee.name.string
            let type = error.attribute("exception.type") ?? ""
            let result = dedup.occur("\(service)\u{1F}\(name)\u{1F}\(type)", now: now) {
                errorSpanEvent(span: span, error: error, service: service, name: name, type: type,
                               wallClock: wallClock, pipeline: pipeline, now: now)
            }
            counts["\(config.id).error_spans", default: 0] += 1
            if !result.accepted { counts["\(config.id).refused", default: 0] += 1 }
            return result.send
        case .errorRate:
            update(key: service, now: now, counts: &counts) { $0.add(error: error.isError) }
        case .latency(_, _, let bySpanName):
            let key = bySpanName ? "\(service) \(span.pointee.name.string)" : service
            let start = span.pointee.start_time_unix_nano, end = span.pointee.end_time_unix_nano
            let micros = end > start ? (end - start) / 1000 : 0
            update(key: key, now: now, counts: &counts) { $0.add(micros: micros) }
        }
        return nil
    }

    private func update(key: String, now: ContinuousClock.Instant, counts: inout [String: Int64],
                        _ body: (inout SlidingWindow.Slot) -> Void) {
        if windows[key] == nil {
            guard windows.count < maxKeys else {
                counts["\(config.id).refused", default: 0] += 1
                return
            }
            windows[key] = SlidingWindow()
        }
        windows[key]!.update(epoch: epoch(now), body)
    }

    /// Error-span groups not yet reported (the rules stop).
    func flush() -> [NotificationEvent] { dedup.flush() }

    /// Decides what fires, repeats or resolves now.
    func evaluate(now: ContinuousClock.Instant, wallClock: Date, pipeline: String,
                  counts: inout [String: Int64]) -> [NotificationEvent] {
        var out = dedup.due(now: now)
        guard config.condition != .errorSpan else { return out }
        let current = epoch(now)
        for key in Array(windows.keys) {
            let total = windows[key]!.total(epoch: current)
            if total.spans == 0 && firing[key] == nil {
                windows[key] = nil  // nothing left in the window
                continue
            }
            let verdict = check(total)
            if let (value, summary) = verdict {
                let last = firing[key]
                if last == nil || now - last! >= config.cooldown {
                    firing[key] = now
                    counts["\(config.id).fired", default: 0] += 1
                    if let event = firingEvent(key: key, value: value, summary: summary, total: total,
                                               wallClock: wallClock, pipeline: pipeline) {
                        out.append(event)
                    }
                }
            } else if firing[key] != nil {
                firing[key] = nil
                counts["\(config.id).resolved", default: 0] += 1
                let summary = "\(config.id) resolved for \(key)"
                if let event = NotificationEvent(
                    kind: "resolved", severity: UInt32(SPANHOST_SEVERITY_INFO), source: "\(config.id)", key: key,
                    summary: summary,
                    attributes: [("rule", .string("\(config.id)")), ("rule.type", .string(config.id.type)),
                                 ("pipeline", .string(pipeline)), ("key", .string(key)),
                                 ("spans", .int(Int64(total.spans)))],
                    time: wallClock) {
                    out.append(event)
                }
            }
        }
        return out
    }

    /// The measured value and a summary when the condition holds, else nil.
    private func check(_ total: SlidingWindow.Slot) -> (Double, String)? {
        guard total.spans >= UInt64(config.minCount) else { return nil }
        switch config.condition {
        case .errorSpan:
            return nil
        case .errorRate(let threshold):
            let rate = Double(total.errors) / Double(total.spans)
            guard rate > threshold else { return nil }
            return (rate, String(format: "error rate %.1f%% (%llu of %llu spans in %@), above %.1f%%",
                                 rate * 100, total.errors, total.spans, "\(config.window)", threshold * 100))
        case .latency(let percentile, let threshold, _):
            let micros = total.histogram.value(atPercentile: percentile)
            let ms = Double(micros) / 1000
            let limit = threshold.milliseconds
            guard ms > limit else { return nil }
            return (ms, String(format: "p%g latency %.0f ms over %llu spans, above %.0f ms", percentile, ms, total.spans, limit))
        }
    }

    private func firingEvent(key: String, value: Double, summary: String, total: SlidingWindow.Slot,
                             wallClock: Date, pipeline: String) -> NotificationEvent? {
        var attributes: [(String, NotificationEvent.Value)] = [
            ("rule", .string("\(config.id)")), ("pipeline", .string(pipeline)), ("key", .string(key)),
            ("spans", .int(Int64(total.spans))),
            ("window_seconds", .double(config.window.seconds)),
        ]
        let kind: String
        switch config.condition {
        case .errorSpan: return nil
        case .errorRate(let threshold):
            kind = "error_rate"
            attributes += [("error_rate", .double(value)), ("errors", .int(Int64(total.errors))), ("threshold", .double(threshold))]
        case .latency(let percentile, let threshold, _):
            kind = "latency"
            let limit = threshold.milliseconds
            attributes += [("percentile", .double(percentile)), ("latency_ms", .double(value)), ("threshold_ms", .double(limit))]
        }
        let service = key.split(separator: " ", maxSplits: 1).first.map(String.init) ?? key
        attributes.append(("service.name", .string(service)))
        return NotificationEvent(kind: kind, severity: UInt32(SPANHOST_SEVERITY_ERROR), source: "\(config.id)", key: key,
                                 summary: "\(key): \(summary)", attributes: attributes,
                                 count: kind == "error_rate" ? total.errors : total.spans, time: wallClock)
    }

    private func errorSpanEvent(span: UnsafeMutablePointer<spanhost_span>, error: SpanError, service: String,
                                name: String, type: String, wallClock: Date, pipeline: String,
                                now: ContinuousClock.Instant) -> NotificationEvent? {
        let message = error.attribute("exception.message") ?? span.pointee.status_message.string
        var attributes: [(String, NotificationEvent.Value)] = [
            ("rule", .string("\(config.id)")), ("pipeline", .string(pipeline)),
            ("service.name", .string(service)), ("span.name", .string(name)),
            ("span.id", .string(hex(span.pointee.span_id))),
        ]
        if !type.isEmpty { attributes.append(("exception.type", .string(type))) }
        if !message.isEmpty { attributes.append(("exception.message", .string(message))) }
        if let stack = error.attribute("exception.stacktrace") {
            attributes.append(("exception.stacktrace", .string(String(stack.prefix(16_384)))))
        }
        let what = type.isEmpty ? (message.isEmpty ? "error" : message) : (message.isEmpty ? type : "\(type): \(message)")
        let traceID = withUnsafeBytes(of: span.pointee.trace_id) { Array($0) }
        return NotificationEvent(kind: "error_span", severity: UInt32(SPANHOST_SEVERITY_ERROR), source: "\(config.id)",
                                 key: "\(service) \(name) \(type)", summary: "\(service): \(what) in span '\(name)'",
                                 attributes: attributes, traceID: traceID, time: wallClock, firstSeen: now)
    }

    private func hex<T>(_ id: T) -> String {
        withUnsafeBytes(of: id) { $0.map { String(format: "%02x", $0) }.joined() }
    }
}

/// Counts over the last `RuleState.slots` slots of a window.
struct SlidingWindow {
    struct Slot {
        var epoch: Int64 = -1
        var spans: UInt64 = 0
        var errors: UInt64 = 0
        var histogram = LatencyHistogram()

        mutating func add(error: Bool) {
            spans += 1
            if error { errors += 1 }
        }

        mutating func add(micros: UInt64) {
            spans += 1
            histogram.record(micros: micros)
        }
    }

    private var slots = [Slot](repeating: Slot(), count: RuleState.slots)

    mutating func update(epoch: Int64, _ body: (inout Slot) -> Void) {
        let index = Int(epoch % Int64(slots.count))
        if slots[index].epoch != epoch { slots[index] = Slot(epoch: epoch) }
        body(&slots[index])
    }

    /// The sum of the slots still inside the window ending at `epoch`.
    func total(epoch: Int64) -> Slot {
        var sum = Slot(epoch: epoch)
        for slot in slots where slot.epoch > epoch - Int64(slots.count) && slot.epoch <= epoch {
            sum.spans += slot.spans
            sum.errors += slot.errors
            sum.histogram.merge(slot.histogram)
        }
        return sum
    }
}
