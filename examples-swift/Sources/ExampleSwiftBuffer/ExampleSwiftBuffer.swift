// A processor that holds spans: it takes every span out of the batches it is given and emits
// them again in batches of `batch_spans`, and the rest when the host flushes it (before a
// shutdown or reload). Spans for which `pass_through` (an OTTL condition) holds are not held.
// A held error span raises an event. It shows what a holding processor does: take (copy, then
// mark TAKEN), emit, keep what the host could not take yet, release traces once emitted.
import SpanhostPluginKit
import Synchronization

final class ExampleSwiftBuffer: SpanProcessorPlugin, ConfigValidating {
    let host: PluginHost
    let batchSpans: Int
    let passThrough: Expression?
    let held: PluginHost.Counter
    let emitted: PluginHost.Counter
    let heldNow: PluginHost.Gauge
    /// What is held: batches not yet emitted, oldest first, and the traces in them.
    private let state = Mutex<(pending: [OwnedBatch], traces: [[UInt8]], spans: Int)>(([], [], 0))

    static func validate(_ config: PluginConfig, host: PluginHost) throws {
        _ = try settings(config)
        // The condition compiles against the host's grammar, as the initializer compiles it.
        if let condition = try config.string("pass_through") { _ = try host.compile(condition, .condition, in: .span) }
    }

    private static func settings(_ config: PluginConfig) throws -> Int {
        let spans = try config.int("batch_spans") ?? 100
        guard spans > 0 else { throw PluginError("batch_spans: must be at least 1") }
        return Int(spans)
    }

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        batchSpans = try Self.settings(config)
        passThrough = try config.string("pass_through").map { try host.compile($0, .condition, in: .span) }
        held = host.counter("held_spans")
        emitted = host.counter("emitted_spans")
        heldNow = host.gauge("spans_held")
    }

    func process(_ batch: MutableBatchView) -> PluginResult {
        guard let copy = OwnedBatch() else { return .retryable("out of memory") }
        var traces: [[UInt8]] = []
        var failed: String?
        batch.forEachSpan { span, resource, scope in
            do {
                if let passThrough, try passThrough.run(on: span, resource: resource, scope: scope) { return }
            } catch {
                failed = "\(error)"
                return
            }
            guard copy.add(span.view, resource: resource, scope: scope) else { return }
            span.take()
            traces.append(withUnsafeBytes(of: span.pointer.pointee.trace_id) { Array($0) })
            if span.view.statusCode == UInt32(SPANHOST_STATUS_ERROR) {
                host.raise(RaisedEvent(kind: "error_span_held", source: "example_swift_buffer", key: span.view.name,
                                       summary: "held an error span: \(span.view.name)", traceID: traces.last))
            }
        }
        if let failed { host.count("condition_errors"); host.log(.warn, failed) }
        let taken = copy.spanCount
        held.add(Int64(taken))
        let full = state.withLock { state -> Bool in
            if taken > 0 {
                state.pending.append(copy)
                state.traces += traces
                state.spans += taken
            }
            heldNow.set(Int64(state.spans))
            return state.spans >= batchSpans
        }
        if full { emitHeld() }
        return .ok
    }

    /// Emits what is held, oldest first; what the host cannot take yet stays for next time.
    @discardableResult
    private func emitHeld() -> Bool {
        let (batches, traces) = state.withLock { state in
            defer { state = ([], [], 0) }
            return (state.pending, state.traces)
        }
        for (index, batch) in batches.enumerated() {
            switch host.emit(batch) {
            case .taken, .rejected:  // rejected spans are counted as lost by the host
                emitted.add(Int64(batch.spanCount))
            case .retryLater:
                let left = Array(batches[index...])
                state.withLock { state in
                    state.pending = left + state.pending
                    state.traces = traces + state.traces
                    state.spans += left.reduce(0) { $0 + $1.spanCount }
                }
                return false
            }
        }
        for trace in traces { host.releaseTrace(trace) }
        heldNow.set(state.withLock { Int64($0.spans) })
        return true
    }

    func flush() -> PluginResult {
        emitHeld() ? .ok : .retryable("the pipeline did not take the held spans")
    }
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.processor(ExampleSwiftBuffer.self, name: "example_swift_buffer", version: "0.1.0",
                             description: "holds spans and emits them in batches", schema: [
                                 ConfigKey("batch_spans", .int, default: "100", "spans held before they are emitted together"),
                                 ConfigKey("pass_through", .string, "an OTTL condition: spans for which it holds are not held"),
                             ], host: host)
}
