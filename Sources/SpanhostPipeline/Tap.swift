import CSpanhost
import Foundation
import Synchronization
import SpanhostModel

/// A live tap (the Collector's remotetap, for the admin page): the spans at one point of one
/// pipeline for which an OTTL condition holds, kept as OTLP JSON for whoever polls. Points are
/// numbered: 0 is after the receivers, k after the k-th processor, so the last one is before the
/// exporters. At most `maxPerSecond` spans are kept each second and the last `keep` batches;
/// a tap nobody polled for `idle` ends by itself.
public final class Tap: Sendable {
    public let id: String
    public let pipeline: String
    public let point: Int
    public let condition: String
    private let expr: CompiledCondition?
    private struct Kept {
        var batches: [(seq: Int, json: String)] = []
        var seq = 0
        var second = ContinuousClock.now, keptThisSecond = 0
        var lastPolled = ContinuousClock.now
        /// Spans that matched but were over the rate limit.
        var skipped = 0
    }
    private let kept = Mutex(Kept())
    static let maxPerSecond = 50, keep = 100
    static let idle: Duration = .seconds(30)

    init(id: String, pipeline: String, point: Int, condition: String) throws(TapError) {
        (self.id, self.pipeline, self.point, self.condition) = (id, pipeline, point, condition)
        guard !condition.trimmingCharacters(in: .whitespaces).isEmpty else {
            expr = nil
            return
        }
        do {
            expr = try CompiledCondition(condition, context: SPANHOST_CONTEXT_SPAN)
        } catch {
            throw TapError("condition: \(error)")
        }
    }

    /// Keeps the spans of `batch` for which the condition holds (read only, on the pipeline's thread).
    func offer(_ batch: SpanBatch) {
        guard let copy = SpanBatch.empty() else { return }
        var matched = 0
        batch.forEachSpan { rs, ss, span in
            guard expr?.holds(span: span, resource: rs.pointee.resource, scope: ss.pointee.scope, batch: batch.pointer) ?? true else { return }
            let allowed: Bool = kept.withLock { kept in
                if ContinuousClock.now - kept.second >= .seconds(1) { (kept.second, kept.keptThisSecond) = (.now, 0) }
                guard kept.keptThisSecond < Self.maxPerSecond else { kept.skipped += 1; return false }
                kept.keptThisSecond += 1
                return true
            }
            if allowed, sh_batch_add_span(copy.pointer, rs.pointee.resource, rs.pointee.schema_url, ss.pointee.scope, ss.pointee.schema_url, span) != nil {
                matched += 1
            }
        }
        guard matched > 0, let json = copy.encode(.json) else { return }
        let text = String(decoding: json, as: UTF8.self)
        kept.withLock { kept in
            kept.seq += 1
            kept.batches.append((kept.seq, text))
            if kept.batches.count > Self.keep { kept.batches.removeFirst(kept.batches.count - Self.keep) }
        }
    }

    /// Nobody polled it for `idle`.
    func isIdle(now: ContinuousClock.Instant) -> Bool { kept.withLock { now - $0.lastPolled > Self.idle } }

    /// The batches kept after `after` (a sequence number from an earlier poll), oldest first.
    public func poll(after: Int) -> (batches: [(seq: Int, json: String)], skipped: Int) {
        kept.withLock { kept in
            kept.lastPolled = .now
            return (kept.batches.filter { $0.seq > after }, kept.skipped)
        }
    }
}

public struct TapError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The taps of the process, shared by every generation (a reload keeps them). Pipelines ask
/// `isWatching` once per point per batch: one relaxed atomic load while no tap runs.
public final class TapBoard: Sendable {
    private let taps = Mutex<[Tap]>([])
    private let count = Atomic<Int>(0)
    private let ids = Atomic<Int>(0)

    public init() {}

    var isWatching: Bool { count.load(ordering: .relaxed) > 0 }

    public func start(pipeline: String, point: Int, condition: String) throws(TapError) -> Tap {
        let tap = try Tap(id: "t\(ids.wrappingAdd(1, ordering: .relaxed).newValue)", pipeline: pipeline, point: point, condition: condition)
        taps.withLock {
            $0.append(tap)
            count.store($0.count, ordering: .relaxed)
        }
        return tap
    }

    public func tap(_ id: String) -> Tap? { expire(); return taps.withLock { $0.first { $0.id == id } } }

    /// The running taps at `point` of `pipeline`; taps nobody polls any more end here, so a
    /// closed page stops costing anything within Tap.idle.
    func taps(pipeline: String, point: Int) -> [Tap] {
        taps.withLock { list in
            Self.expire(&list, count)
            return list.filter { $0.pipeline == pipeline && $0.point == point }
        }
    }

    /// Ends taps nobody polled for Tap.idle.
    func expire() { taps.withLock { Self.expire(&$0, count) } }

    private static func expire(_ list: inout [Tap], _ count: borrowing Atomic<Int>) {
        let now = ContinuousClock.now
        list.removeAll { $0.isIdle(now: now) }
        count.store(list.count, ordering: .relaxed)
    }
}
