import DequeModule
import Foundation
import SpanhostConfig
import SpanhostModel
import SpanhostSync

/// A batch taken from a queue to export. Hand it back with `done` (delivered, dead-lettered or
/// dropped) or `release` (not handled; it stays queued).
public struct QueuedBatch: Sendable {
    public let batch: SpanBatch
    public let spans: Int
    let location: SegmentLog.Location?
    /// A disk queue's digest of the batch's bytes (for the poison ledger).
    var digest: ExportAttempts.Digest? = nil
    /// False when the batch was read back from disk, which keeps spans but not the request's
    /// client_metadata.
    public var metadataKnown = true
    /// The persistent queue's sequence number of this batch.
    public var record: UInt64? { location?.seq }
}

/// What a queue did with an offered batch.
public enum OfferResult: Sendable, Equatable {
    case queued
    /// Over the queue's limits.
    case full
    /// A persistent queue could not write it (a full disk); nothing of it is queued. The reason
    /// names the file and the error.
    case notStored(reason: String)
}

/// What became of a batch taken from a queue.
public enum QueueOutcome: Sendable {
    case delivered
    /// Given up on (permanent rejection, retries exhausted): a disk queue writes it to its
    /// dead-letter file with the reason; a memory queue drops it.
    case failed(reason: String)
}

/// An exporter's sending queue. `offer` never blocks; `take` blocks until a batch is there, the
/// taker's gate closes or `until` passes (the gate is read before every batch, at least every
/// 200 ms while empty, and at once after `wake`).
public protocol BatchQueue: AnyObject, Sendable {
    /// Queues a batch, unless full (items or bytes) or it cannot be stored. `force` ignores the
    /// limits (a fan-out that already checked every queue for room).
    func offer(_ batch: SpanBatch, force: Bool) -> OfferResult
    func take(through gate: TakeGate, until deadline: ContinuousClock.Instant?) -> QueuedBatch?
    func done(_ item: QueuedBatch, _ outcome: QueueOutcome)
    func release(_ item: QueuedBatch)
    /// Wakes every waiting `take` to check its gate.
    func wake()
    /// True when batches survive a restart (so a shutdown leaves them queued).
    var isPersistent: Bool { get }
    /// At shutdown, after the last take: what is still queued is lost (memory) or kept for the
    /// next start (disk, synced to it now).
    func settle() -> QueueSettlement
    var isFull: Bool { get }
    var depth: Int { get }
    var stats: QueueStats { get }
}

extension BatchQueue {
    public func take(through gate: TakeGate) -> QueuedBatch? { take(through: gate, until: nil) }
}

/// What a queue did with the batches it still held at shutdown.
public struct QueueSettlement: Sendable, Equatable {
    /// Spans dropped with the memory they were in.
    public var lostSpans: Int
    /// Batches (and the spans among them whose count is known) left on disk for the next start.
    public var keptBatches: Int
    public var keptSpans: Int

    public init(lostSpans: Int, keptBatches: Int, keptSpans: Int) {
        self.lostSpans = lostSpans
        self.keptBatches = keptBatches
        self.keptSpans = keptSpans
    }

    public static let none = QueueSettlement(lostSpans: 0, keptBatches: 0, keptSpans: 0)
}

/// What /status and /metrics show about a queue.
public struct QueueStats: Sendable, Encodable {
    public var depth: Int
    /// How many batches it holds at most (sending_queue.queue_size).
    public var capacity: Int
    public var spans: Int
    public var oldestAgeSeconds: Double?
    public var bytesInMemory: Int
    /// Disk queues: bytes of batches not yet delivered (what max_size_mib limits), and the
    /// size of the segment files (which also hold delivered batches until a segment is done).
    public var bytesQueued: Int?
    public var bytesOnDisk: Int?
    public var deadLettered: Int?
    public var recoveredBatches: Int?
    public var cutBytes: Int?
    /// Disk queues: batches refused because they could not be written (a full disk), and
    /// delivered batches whose ACK waits for space (they would go out again after a restart).
    public var writeFailures: Int?
    public var unwrittenAcks: Int?
}

/// Limits of a queue, from `sending_queue`.
public struct QueueLimits: Sendable, Equatable {
    public var items: Int
    /// Bytes of queued batches: in memory for a memory queue, on disk for a disk queue.
    public var bytes: Int

    public init(items: Int, bytes: Int) {
        self.items = items
        self.bytes = bytes
    }
}

/// Batches held in memory, lost if the process dies.
public final class MemoryQueue: BatchQueue {
    private struct Item {
        let batch: SpanBatch
        let spans: Int
        let bytes: Int
        let at: ContinuousClock.Instant
    }
    private struct Contents {
        /// Taken items leave at once, so a delivered batch's memory is freed when its exporter
        /// lets go of it.
        var items: Deque<Item> = []
        var bytes = 0
    }
    private let contents = Guarded(Contents())
    let limits: QueueLimits

    public init(limits: QueueLimits) { self.limits = limits }

    public func offer(_ batch: SpanBatch, force: Bool) -> OfferResult {
        let size = batch.arenaBytes
        let item = Item(batch: batch, spans: batch.spanCount, bytes: size, at: .now)
        return contents.withLock(wake: .one) { [limits] in
            guard force || ($0.items.count < limits.items && $0.bytes + size <= limits.bytes) else { return .full }
            $0.items.append(item)
            $0.bytes += size
            return .queued
        }
    }

    public func take(through gate: TakeGate, until deadline: ContinuousClock.Instant?) -> QueuedBatch? {
        // A gate closed now wakes the queue; the recheck bounds the wait for one that closes
        // at a later instant (a drain deadline).
        let taken: Item?? = contents.wait(until: deadline, recheck: .milliseconds(200)) { contents in
            if !gate.isOpen() { return .some(nil) }
            guard !contents.items.isEmpty else { return nil }
            gate.handOut()
            let item = contents.items.removeFirst()
            contents.bytes -= item.bytes
            return .some(item)
        }
        guard let item = taken ?? nil else { return nil }
        return QueuedBatch(batch: item.batch, spans: item.spans, location: nil)
    }

    public func done(_ item: QueuedBatch, _ outcome: QueueOutcome) {}

    public func release(_ item: QueuedBatch) {}

    public func wake() { contents.withLock(wake: .all) { _ in } }

    public var isPersistent: Bool { false }

    public func settle() -> QueueSettlement {
        contents.withLock {
            let lost = $0.items.reduce(0) { $0 + $1.spans }
            $0 = Contents()
            return QueueSettlement(lostSpans: lost, keptBatches: 0, keptSpans: 0)
        }
    }

    public var isFull: Bool { contents.withLock { [limits] in $0.items.count >= limits.items || $0.bytes >= limits.bytes } }
    public var depth: Int { contents.withLock { $0.items.count } }

    public var stats: QueueStats {
        contents.withLock {
            QueueStats(depth: $0.items.count, capacity: limits.items, spans: $0.items.reduce(0) { $0 + $1.spans },
                       oldestAgeSeconds: $0.items.first.map { (ContinuousClock.now - $0.at).seconds },
                       bytesInMemory: $0.bytes)
        }
    }
}
