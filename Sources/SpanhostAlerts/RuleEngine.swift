import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel
import SpanhostSync

/// Evaluates one pipeline's alert rules and deduplicates everything that pipeline's notifiers
/// are told, rule events and events raised by processors alike.
///
/// `observe` is called with every batch entering the pipeline (before processors, so sampling
/// does not hide errors from rates). It reads the C span structs in place and only updates
/// counters; a ticker thread decides what fires, resolves or is due, and hands events to
/// `deliver`, which only enqueues.
public final class RuleEngine: Sendable {
    public let pipeline: String
    public let errorFlowInPipeline: Bool
    public let hasRules: Bool
    private let deliver: @Sendable (NotificationEvent) -> Void
    private let tick: Duration

    /// The rules' windows and what has fired, under one lock.
    private struct State {
        var rules: [RuleState]
        /// Events raised by processors, deduplicated by source, kind and key (a `raised` rule
        /// sets how; 1 s and 1 min otherwise).
        var raisedEvents = Deduplicator(groupWait: .seconds(1), cooldown: .seconds(60), repeatWait: .seconds(20))
        var stopped = false
        var started = false
        var counts: [String: Int64] = [:]
    }
    private let state: Guarded<State>

    /// `errorFlowInPipeline`: a processor raises one event per failing trace
    /// (SPANHOST_PLUGIN_TRACE_EVENTS, as error_flow does), so
    /// error_span rules fold their spans into it (see RuleConfig.foldWait).
    public init(pipeline: String, rules: [RuleConfig], errorFlowInPipeline: Bool = false, tick: Duration = .milliseconds(200),
                deliver: @escaping @Sendable (NotificationEvent) -> Void) {
        self.pipeline = pipeline
        self.errorFlowInPipeline = errorFlowInPipeline
        let states = rules.filter { $0.condition != .raised }.map(RuleState.init)
        for rule in states { rule.folding = errorFlowInPipeline }
        hasRules = !states.isEmpty
        var state = State(rules: states)
        if let raised = rules.first(where: { $0.condition == .raised }) {
            state.raisedEvents = Deduplicator(groupWait: raised.groupWait, cooldown: raised.cooldown, repeatWait: raised.repeatWait)
        }
        self.state = Guarded(state)
        self.deliver = deliver
        self.tick = tick
    }

    /// Compiles the `where:` conditions of `rules`, naming the first that does not compile.
    public static func checkConditions(_ rules: [RuleConfig]) throws(ConfigError) { try SpanConditions.check(rules) }

    /// Starts the ticker; an engine carried over by a reload is already started.
    public func start() {
        guard state.withLock({ state in defer { state.started = true }; return !state.started && !state.stopped }) else { return }
        let thread = Thread { [self] in
            while state.withLock({ !$0.stopped }) {
                Thread.sleep(forTimeInterval: tick.seconds)
                evaluate(now: .now, wallClock: Date())
            }
        }
        thread.name = "rules \(pipeline)"
        thread.start()
    }

    /// Stops the ticker and sends the occurrences not yet reported (waiting or cooling down).
    public func stop() {
        let events: [NotificationEvent]? = state.withLock { state in
            guard !state.stopped else { return nil }
            state.stopped = true
            return state.rules.reduce(state.raisedEvents.flush()) { $0 + $1.flush() }
        }
        events?.forEach(deliver)
    }

    /// Counters for /status: events per rule and keys refused when a rule had too many.
    public var counters: [String: Int64] { state.withLock { $0.counts } }

    /// A processor raised `event` through the host table. `standsForTrace`: the processor
    /// declared SPANHOST_PLUGIN_TRACE_EVENTS, so the event stands for its whole trace.
    public func raised(_ event: NotificationEvent, standsForTrace: Bool = false) {
        let key = "\(event.source)|\(event.kind)|\(event.key)"
        let send: NotificationEvent? = state.withLock { state in
            let traceID = withUnsafeBytes(of: event.pointer.pointee.trace_id) { Array($0) }
            var event = event
            if standsForTrace {
                // This event stands for the trace: the error spans held for it are folded in.
                let folded = state.rules.reduce(0) { $0 + $1.claim(traceID, counts: &state.counts) }
                if folded > 0, let counted = event.with([("error_spans", .int(Int64(folded)))]) { event = counted }
            }
            let result = state.raisedEvents.occur(key, now: .now, traceID: traceID) { event }
            if !result.accepted { state.counts["raised.refused", default: 0] += 1 }
            return result.send
        }
        if let send { deliver(send) }
    }

    /// Updates every rule with the spans of `batch`.
    public func observe(_ batch: SpanBatch) { observe(batch, now: .now) }

    func observe(_ batch: SpanBatch, now: ContinuousClock.Instant) {
        guard hasRules else { return }
        let wallClock = Date()
        let pipeline = self.pipeline
        let immediate: [NotificationEvent] = state.withLock { state in
            var immediate: [NotificationEvent] = []
            let b = batch.pointer.pointee
            for i in 0..<b.resource_spans_count {
                guard let rs = b.resource_spans[i] else { continue }
                let service = rs.pointee.resource.map { Attributes.string($0.pointee.attributes, "service.name") } ?? nil
                let serviceName = service?.string ?? "unknown_service"
                let applying = state.rules.filter { $0.applies(to: serviceName) }
                if applying.isEmpty { continue }
                for j in 0..<rs.pointee.scope_spans_count {
                    guard let ss = rs.pointee.scope_spans[j] else { continue }
                    for k in 0..<ss.pointee.spans_count {
                        guard let span = ss.pointee.spans[k] else { continue }
                        let error = SpanError(span)
                        for rule in applying {
                            if let conditions = rule.conditions, !conditions.hold(span: span, resource: rs.pointee.resource, scope: ss.pointee.scope) {
                                continue
                            }
                            if let event = rule.observe(span: span, error: error, service: serviceName, now: now,
                                                        wallClock: wallClock, pipeline: pipeline, counts: &state.counts) {
                                immediate.append(event)
                            }
                        }
                    }
                }
            }
            return immediate
        }
        immediate.forEach(deliver)
    }

    func evaluate(now: ContinuousClock.Instant, wallClock: Date = Date()) {
        let pipeline = self.pipeline
        let events: [NotificationEvent] = state.withLock { state in
            var out = state.raisedEvents.due(now: now)
            for rule in state.rules { out += rule.evaluate(now: now, wallClock: wallClock, pipeline: pipeline, counts: &state.counts) }
            return out
        }
        events.forEach(deliver)
    }
}

/// Attribute lookups on C key-value lists without building Swift strings.
enum Attributes {
    static func string(_ list: spanhost_kv_list, _ key: StaticString) -> spanhost_str? {
        guard let value = find(list, key), value.type == UInt32(SPANHOST_VALUE_STRING) else { return nil }
        return value.as.string_value
    }

    static func find(_ list: spanhost_kv_list, _ key: StaticString) -> spanhost_value? {
        for i in 0..<list.count {
            let kv = list.items[i]
            guard kv.key.len == key.utf8CodeUnitCount, let ptr = kv.key.ptr else { continue }
            if memcmp(ptr, key.utf8Start, kv.key.len) == 0 { return kv.value }
        }
        return nil
    }
}

/// Whether a span is an error, and the exception it records if any.
struct SpanError {
    var isError: Bool
    var exception: UnsafeMutablePointer<spanhost_event>?

    init(_ span: UnsafeMutablePointer<spanhost_span>) {
        exception = nil
        for e in 0..<span.pointee.events_count {
            guard let event = span.pointee.events[e] else { continue }
            let name = event.pointee.name
            if name.len == 9, let ptr = name.ptr, memcmp(ptr, "exception", 9) == 0 {
                exception = event
                break
            }
        }
        isError = span.pointee.status_code == UInt32(SPANHOST_STATUS_ERROR) || exception != nil
    }

    func attribute(_ key: StaticString) -> String? {
        guard let exception else { return nil }
        return Attributes.string(exception.pointee.attributes, key)?.string
    }
}
