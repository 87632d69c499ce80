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
    /// Keys whose condition holds but not yet for `holdFor`, with since when.
    private var pending: [String: ContinuousClock.Instant] = [:]
    /// no_data: when each key was first expected (seen, or listed in `services`); a key is
    /// judged only once a whole window has passed since.
    private var expectedSince: [String: ContinuousClock.Instant] = [:]
    private let origin = ContinuousClock.now
    private let slotWidth: Duration
    private let maxKeys = 10_000
    static let slots = 10
    /// error_span occurrences held for their trace's error_flow event (see RuleConfig.foldWait).
    private struct Held {
        var since: ContinuousClock.Instant
        var occurrences: [(key: String, event: NotificationEvent?, time: Date)] = []
        var count = 0
    }
    private var held: [[UInt8]: Held] = [:]
    /// Set by the engine when the pipeline has an error_flow processor.
    var folding = false
    /// `where`: only spans for which one of these holds count; nil: every span.
    let conditions: SpanConditions?

    init(_ config: RuleConfig) {
        self.config = config
        conditions = SpanConditions(config.whereConditions)
        dedup = Deduplicator(groupWait: config.groupWait, cooldown: config.cooldown, repeatWait: config.repeatWait)
        slotWidth = config.window / Self.slots
        if case .noData(true) = config.condition {
            for service in config.services { expectedSince[service] = origin; windows[service] = SlidingWindow() }
        }
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
            let traceID = withUnsafeBytes(of: span.pointee.trace_id) { Array($0) }
            let key = signature(span: span, error: error, service: service, name: name, type: type)
            counts["\(config.id).error_spans", default: 0] += 1
            if folding, config.foldWait != nil, held.count < maxKeys || held[traceID] != nil {
                // Kept whole (the event built now) for the error_flow event of this trace.
                var entry = held[traceID] ?? Held(since: now)
                entry.count += 1
                if entry.occurrences.count < 100 {
                    entry.occurrences.append((key, errorSpanEvent(span: span, error: error, service: service, name: name, type: type,
                                                                  wallClock: wallClock, pipeline: pipeline, now: now), wallClock))
                }
                held[traceID] = entry
                return nil
            }
            let result = dedup.occur(key, now: now, traceID: traceID, time: wallClock) {
                errorSpanEvent(span: span, error: error, service: service, name: name, type: type,
                               wallClock: wallClock, pipeline: pipeline, now: now)
            }
            if !result.accepted { counts["\(config.id).refused", default: 0] += 1 }
            return result.send
        case .errorRate:
            guard counted(span) else { return nil }
            update(key: service, now: now, counts: &counts) { $0.add(error: error.isError) }
        case .latency(_, _, let bySpanName):
            guard counted(span) else { return nil }
            let key = bySpanName ? "\(service) \(span.pointee.name.string)" : service
            let start = span.pointee.start_time_unix_nano, end = span.pointee.end_time_unix_nano
            let micros = end > start ? (end - start) / 1000 : 0
            update(key: key, now: now, counts: &counts) { $0.add(micros: micros) }
        case .raised:
            break
        case .noData(let byService):
            let key = byService ? service : "all"
            update(key: key, now: now, counts: &counts) { $0.add(error: false) }
            if expectedSince[key] == nil, windows[key] != nil { expectedSince[key] = now }
        }
        return nil
    }

    /// Whether error_rate and latency count `span` (`per`): a request is a root or SERVER span.
    private func counted(_ span: UnsafeMutablePointer<spanhost_span>) -> Bool {
        let root = withUnsafeBytes(of: span.pointee.parent_span_id) { $0.allSatisfy { $0 == 0 } }
        switch config.per {
        case .span: return true
        case .trace: return root
        case .request: return root || span.pointee.kind == UInt32(SPANHOST_SPAN_KIND_SERVER)
        }
    }

    /// The error's signature, its deduplication key: the rule's `signature` fields joined.
    private func signature(span: UnsafeMutablePointer<spanhost_span>, error: SpanError, service: String, name: String,
                           type: String) -> String {
        config.signature.map { field -> String in
            switch field {
            case "service": return service
            case "span_name": return name
            case "exception.type": return type
            case "exception.message": return error.attribute("exception.message") ?? span.pointee.status_message.string
            case "status_message": return span.pointee.status_message.string
            default: return span.pointee.attributes.string(field) ?? ""
            }
        }.joined(separator: "\u{1F}")
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

    /// Error-span groups not yet reported (the rules stop), held ones included.
    func flush() -> [NotificationEvent] {
        let now = ContinuousClock.now
        var counts: [String: Int64] = [:]
        _ = release(now: now, all: true, counts: &counts)
        return dedup.flush()
    }

    /// The error spans held for `traceID`, which an error_flow event now stands for.
    func claim(_ traceID: [UInt8], counts: inout [String: Int64]) -> Int {
        guard let entry = held.removeValue(forKey: traceID) else { return 0 }
        counts["\(config.id).folded", default: 0] += Int64(entry.count)
        return entry.count
    }

    /// Held error spans whose trace got no error_flow event within fold_wait go out on their own.
    private func release(now: ContinuousClock.Instant, all: Bool, counts: inout [String: Int64]) -> [NotificationEvent] {
        guard let wait = config.foldWait, !held.isEmpty else { return [] }
        var out: [NotificationEvent] = []
        for (traceID, entry) in held where all || now - entry.since >= wait {
            held[traceID] = nil
            counts["\(config.id).unfolded", default: 0] += Int64(entry.count)
            for occurrence in entry.occurrences {
                let result = dedup.occur(occurrence.key, now: now, traceID: traceID, time: occurrence.time) { occurrence.event }
                if let send = result.send { out.append(send) }
            }
        }
        return out
    }

    /// What a key's window says.
    enum Verdict {
        /// The condition holds: the measured value and a summary.
        case holds(Double, String)
        /// Enough evidence that it does not (under the resolve threshold).
        case clear
        /// Between the resolve threshold and the threshold, or too few spans to say.
        case undecided
    }

    /// Decides what fires, repeats or resolves now.
    func evaluate(now: ContinuousClock.Instant, wallClock: Date, pipeline: String,
                  counts: inout [String: Int64]) -> [NotificationEvent] {
        var out = release(now: now, all: false, counts: &counts)
        out += dedup.due(now: now)
        guard config.condition != .errorSpan else { return out }
        let current = epoch(now)
        for key in Array(windows.keys) {
            let total = windows[key]!.total(epoch: current)
            if total.spans == 0 && firing[key] == nil && pending[key] == nil && !isNoData {
                windows[key] = nil  // nothing left in the window
                continue
            }
            switch check(total, key: key, now: now) {
            case .holds(let value, let summary):
                if firing[key] == nil {
                    let since = pending[key] ?? now
                    pending[key] = since
                    guard now - since >= config.holdFor else { continue }
                    pending[key] = nil
                }
                let last = firing[key]
                if last == nil || now - last! >= config.cooldown {
                    firing[key] = now
                    counts["\(config.id).fired", default: 0] += 1
                    if let event = firingEvent(key: key, value: value, summary: summary, total: total,
                                               wallClock: wallClock, pipeline: pipeline) {
                        out.append(event)
                    }
                }
            case .clear:
                pending[key] = nil
                guard firing[key] != nil else { continue }
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
            case .undecided:
                pending[key] = nil
            }
        }
        return out
    }

    private var isNoData: Bool {
        if case .noData = config.condition { return true }
        return false
    }

    private func check(_ total: SlidingWindow.Slot, key: String, now: ContinuousClock.Instant) -> Verdict {
        let firing = self.firing[key] != nil
        switch config.condition {
        case .errorSpan, .raised:
            return .undecided
        case .noData:
            // Judged only once a whole window has been watched for this key.
            guard let since = expectedSince[key], now - since >= config.window else { return .undecided }
            guard total.spans < UInt64(config.minCount) else { return .clear }
            return .holds(Double(total.spans), "\(total.spans) spans in \(config.window), fewer than \(config.minCount)")
        case .errorRate(let threshold):
            guard total.spans >= UInt64(config.minCount) else { return .undecided }
            let rate = Double(total.errors) / Double(total.spans)
            if rate > threshold {
                return .holds(rate, String(format: "error rate %.1f%% (%llu of %llu spans in %@), above %.1f%%",
                                           rate * 100, total.errors, total.spans, "\(config.window)", threshold * 100))
            }
            return !firing || rate <= (config.resolveThreshold ?? threshold) ? .clear : .undecided
        case .latency(let percentile, let threshold, _):
            guard total.spans >= UInt64(config.minCount) else { return .undecided }
            let ms = Double(total.histogram.value(atPercentile: percentile)) / 1000
            let limit = threshold.milliseconds
            if ms > limit {
                return .holds(ms, String(format: "p%g latency %.0f ms over %llu spans, above %.0f ms", percentile, ms, total.spans, limit))
            }
            return !firing || ms <= (config.resolveThreshold ?? limit) ? .clear : .undecided
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
        case .errorSpan, .raised: return nil
        case .noData:
            kind = "no_data"
            attributes += [("min_count", .int(Int64(config.minCount)))]
        case .errorRate(let threshold):
            kind = "error_rate"
            attributes += [("error_rate", .double(value)), ("errors", .int(Int64(total.errors))), ("threshold", .double(threshold))]
        case .latency(let percentile, let threshold, _):
            kind = "latency"
            let limit = threshold.milliseconds
            attributes += [("percentile", .double(percentile)), ("latency_ms", .double(value)), ("threshold_ms", .double(limit))]
        }
        if case .noData(false) = config.condition {} else {
            let service = key.split(separator: " ", maxSplits: 1).first.map(String.init) ?? key
            attributes.append(("service.name", .string(service)))
        }
        return NotificationEvent(kind: kind, severity: UInt32(SPANHOST_SEVERITY_ERROR), source: "\(config.id)", key: key,
                                 summary: "\(key): \(summary)", attributes: attributes,
                                 count: kind == "error_rate" ? total.errors : max(total.spans, 1), time: wallClock)
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
