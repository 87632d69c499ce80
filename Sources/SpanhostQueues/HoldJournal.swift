import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel
import SpanhostSync
import Synchronization

/// The spans one processor holds past its process hook (a tail sampler's traces), kept on disk
/// from before the client's 200 until the processor emits them or releases their trace, so a
/// kill -9 loses none of them. A journal belongs to one processor instance: a reload that
/// carries the instance over keeps it, one that retires the instance flushes it and then
/// `discard`s the journal. Journals an earlier process left behind are `leftovers`: fed to the
/// processor again at start (at least once).
///
/// On disk: `<storage>/held/<pipeline>/<processor>/<process>-<n>/`, a SegmentLog whose DATA
/// records are OTLP protobuf requests of held spans; an ACK is written once every span of a
/// record has left. Nothing is created until the processor first holds something.
public final class HoldJournal: Sendable {
    /// A span's identity: its trace id and span id.
    public struct SpanKey: Hashable, Sendable {
        public var trace: TraceID
        public var span: UInt64
    }

    public struct TraceID: Hashable, Sendable {
        var high: UInt64
        var low: UInt64
        public init(_ bytes: UnsafePointer<UInt8>) {
            let raw = UnsafeRawPointer(bytes)
            high = raw.loadUnaligned(as: UInt64.self)
            low = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        }
    }

    public let directory: String
    private let state: Guarded<Ledger>

    /// One held record: spans not yet emitted or released, and where it is on disk (nil while
    /// it is being written).
    private struct Record {
        var remaining: Int
        var location: SegmentLog.Location?
    }

    /// What is held, and the log it is written to; changed under the journal's lock.
    private struct Ledger {
        let directory: String
        let fsync: FsyncPolicy
        var log: SegmentLog?
        var lastSync = ContinuousClock.now
        var records: [UInt64: Record] = [:]
        var nextRecord: UInt64 = 0
        /// The records holding each span, oldest first (a client's retry can bring a span twice).
        var index: [TraceID: [UInt64: [UInt64]]] = [:]
        /// Spans emitted that no record held: an emit that ran ahead of its hold being recorded
        /// (the processor emitted from another thread before process returned). Kept a short while.
        var unmatched: [SpanKey: ContinuousClock.Instant] = [:]
        var spans = 0
        /// Whether anything was ever held: until then emits need no bookkeeping.
        var used = false
        /// Process calls running now, and the traces released while they ran: a processor that
        /// drops a trace inside process releases it before its spans are held here.
        var processing = 0
        var releasedWhileProcessing: Set<TraceID> = []

        init(directory: String, fsync: FsyncPolicy) {
            self.directory = directory
            self.fsync = fsync
        }

        /// Records the spans of `keys` still to hold; nil when none is.
        mutating func record(_ keys: [SpanKey]) -> UInt64? {
            used = true
            var held = 0
            let id = nextRecord
            for key in keys {
                if unmatched.removeValue(forKey: key) != nil || releasedWhileProcessing.contains(key.trace) { continue }
                index[key.trace, default: [:]][key.span, default: []].append(id)
                held += 1
            }
            guard held > 0 else { return nil }
            nextRecord += 1
            records[id] = Record(remaining: held, location: nil)
            spans += held
            return id
        }

        /// Writes record `id`'s encoded spans.
        mutating func write(_ id: UInt64, _ bytes: UnsafeRawBufferPointer) throws(StorageError) {
            do {
                let log = try openLog()
                let location = try log.append(bytes)
                if case .interval(let every) = fsync, ContinuousClock.now - lastSync >= every {
                    try? log.sync()
                    lastSync = .now
                }
                if records[id] == nil {
                    log.acknowledge(location)  // every span left while it was being written
                } else {
                    records[id]?.location = location
                }
            } catch {
                unindex(id)
                throw error as? StorageError ?? StorageError("\(error)")
            }
        }

        private mutating func openLog() throws -> SegmentLog {
            if let log { return log }
            let made = try SegmentLog(directory: directory, segmentBytes: 8 << 20, fsync: fsync)
            _ = try made.recover()
            log = made
            return made
        }

        mutating func emitted(_ keys: [SpanKey]) {
            guard used else { return }
            let now = ContinuousClock.now
            for key in keys {
                if var ids = index[key.trace]?[key.span], !ids.isEmpty {
                    let id = ids.removeFirst()
                    index[key.trace]![key.span] = ids.isEmpty ? nil : ids
                    if index[key.trace]!.isEmpty { index[key.trace] = nil }
                    settle(id, spans: 1)
                } else {
                    unmatched[key] = now
                }
            }
            if unmatched.count > 100_000 { unmatched = unmatched.filter { now - $0.value < .seconds(10) } }
        }

        mutating func release(_ trace: TraceID) {
            if processing > 0 { releasedWhileProcessing.insert(trace) }
            guard let spans = index.removeValue(forKey: trace) else { return }
            for ids in spans.values {
                for id in ids { settle(id, spans: 1) }
            }
        }

        private mutating func settle(_ id: UInt64, spans count: Int) {
            guard var record = records[id] else { return }
            record.remaining -= count
            spans -= count
            if record.remaining > 0 {
                records[id] = record
                return
            }
            records[id] = nil
            if let location = record.location { log?.acknowledge(location) }
        }

        /// Drops a record that could not be written.
        mutating func unindex(_ id: UInt64) {
            guard let record = records.removeValue(forKey: id) else { return }
            spans -= record.remaining
            for (trace, byID) in index {
                for (span, ids) in byID where ids.contains(id) {
                    let rest = ids.filter { $0 != id }
                    index[trace]![span] = rest.isEmpty ? nil : rest
                }
                if index[trace]!.isEmpty { index[trace] = nil }
            }
        }

        mutating func discard() {
            log?.close()
            log = nil
            records = [:]
            index = [:]
            spans = 0
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Identifies this process's journals among those of earlier processes.
    private static let processTag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    /// Journals opened in this process, and parent directories whose leftovers were handed out
    /// already (replayed once per process).
    private static let opened = Mutex((count: 0, claimed: Set<String>()))

    /// The journal of `processor` in `pipeline`, under the exporter storage directory `storage`.
    public init(storage: String, pipeline: String, processor: String, fsync: FsyncPolicy) {
        let n = Self.opened.withLock { $0.count += 1; return $0.count }
        directory = "\(Self.parent(storage: storage, pipeline: pipeline, processor: processor))/\(Self.processTag)-\(n)"
        state = Guarded(Ledger(directory: directory, fsync: fsync))
    }

    static func parent(storage: String, pipeline: String, processor: String) -> String {
        func name(_ s: String) -> String { s.replacingOccurrences(of: "/", with: "_") }
        return "\(storage)/held/\(name(pipeline))/\(name(processor))"
    }

    /// Spans held now (written, not yet emitted or released).
    public var heldSpans: Int { state.withLock { $0.spans } }

    /// Whether the processor ever held anything: until then its emits need no bookkeeping.
    public var inUse: Bool { state.withLock { $0.used } }

    /// The keys of every span of `batch`, or of those whose host flags have `flag`.
    public static func keys(of batch: SpanBatch, flagged flag: UInt32 = 0) -> [SpanKey] {
        var keys: [SpanKey] = []
        batch.forEachSpan { _, _, span in
            guard flag == 0 || span.pointee.host_flags & flag != 0 else { return }
            let key = withUnsafeBytes(of: span.pointee.trace_id) { trace in
                withUnsafeBytes(of: span.pointee.span_id) { id in
                    SpanKey(trace: TraceID(trace.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                            span: id.loadUnaligned(as: UInt64.self))
                }
            }
            keys.append(key)
        }
        return keys
    }

    /// Brackets the processor's process call and the `hold` of what it took.
    public func beginProcess() { state.withLock { $0.processing += 1 } }

    public func endProcess() {
        state.withLock {
            $0.processing -= 1
            if $0.processing == 0 { $0.releasedWhileProcessing.removeAll() }
        }
    }

    /// Writes `batch` (whose spans are `keys`) as held; returns once it is on disk (fsynced
    /// per policy). Spans already emitted in the meantime, or of a trace released during the
    /// process call, are not held.
    public func hold(_ batch: SpanBatch, keys: [SpanKey]) throws(StorageError) {
        guard let id = state.withLock({ $0.record(keys) }) else { return }
        // Encoded outside the lock, so emits on other threads do not wait for it.
        var encoded = spanhost_buffer()
        guard sh_encode_batch(batch.pointer, UInt32(SPANHOST_ENCODING_OTLP_PROTO), &encoded) == 0 else {
            state.withLock { $0.unindex(id) }
            throw StorageError("cannot encode held spans")
        }
        defer { sh_buffer_free(&encoded) }
        let bytes = UnsafeRawBufferPointer(start: encoded.data, count: encoded.len)
        try state.withLock { (ledger: inout Ledger) throws(StorageError) in try ledger.write(id, bytes) }
    }

    /// The processor emitted these spans and the rest of the pipeline took them (or rejected
    /// them for good, counted as lost): they leave the journal.
    public func emitted(_ keys: [SpanKey]) { state.withLock { $0.emitted(keys) } }

    /// The processor is done with `trace`: every span of it still held leaves the journal.
    public func release(_ trace: TraceID) { state.withLock { $0.release(trace) } }

    /// The processor was flushed (what it held went on, or was counted as lost) and destroyed:
    /// the journal is no longer needed.
    public func discard() { state.withLock { $0.discard() } }

    /// Journals of this processor left by earlier processes (a kill -9, a crash), oldest
    /// first. Each parent is handed out once per process, so only the first generation replays.
    public func leftovers() -> [LeftoverJournal] {
        let parent = (directory as NSString).deletingLastPathComponent
        guard Self.opened.withLock({ $0.claimed.insert(parent).inserted }) else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        return names.filter { !$0.hasPrefix("\(Self.processTag)-") }.sorted()
            .map { LeftoverJournal(directory: "\(parent)/\($0)") }
    }
}

/// A journal an earlier process left: its held records, to be fed to the processor again.
public final class LeftoverJournal {
    public let directory: String
    private var log: SegmentLog?
    private var pending: [SegmentLog.Location] = []

    public init(directory: String) { self.directory = directory }

    /// Reads the journal; returns how many records it holds.
    public func open() throws -> Int {
        let log = try SegmentLog(directory: directory, segmentBytes: 8 << 20, fsync: .always)
        pending = try log.recover().pending
        self.log = log
        return pending.count
    }

    /// Decodes record `i`.
    public func batch(_ i: Int) throws -> SpanBatch {
        guard let log else { throw StorageError("journal \(directory) not open") }
        let bytes = try log.read(pending[i])
        return try bytes.withUnsafeBytes { try SpanBatch.decode($0, format: .otlpProtobuf, gzip: false, limit: Int.max) }
    }

    /// Record `i` was fed again (and is held by the new journal): it leaves this one.
    public func done(_ i: Int) { log?.acknowledge(pending[i]) }

    /// Every record was fed again: the journal goes.
    public func remove() {
        log?.close()
        log = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func close() {
        log?.close()
        log = nil
    }
}
