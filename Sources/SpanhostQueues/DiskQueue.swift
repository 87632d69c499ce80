import CSpanhost
import DequeModule
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostSync
import Synchronization

/// A persistent sending queue: every offered batch is appended to a segment file (and fsynced,
/// per policy) before `offer` returns, so a receiver answers 200 only for what is on disk. Only
/// an index is kept in memory; batches are read back when taken. What is on disk when the
/// queue opens is queued again, oldest first. A batch given up on is appended to
/// `dead_letter.jsonl` (time, reason, spans, the request as OTLP JSON) and acknowledged, so a
/// replay never loops on it.
///
/// A batch whose content was being exported `poisonAfterCrashes` times the process died is
/// dead-lettered when it is taken, not exported again, even when a client sent it again as a
/// new request (see ExportAttempts).
///
/// One DiskQueue exists per directory in the process (`open` shares it), so when a reload
/// replaces an exporter, the old and new runner take from the same queue and nothing is
/// replayed twice. Opening a shared queue again leaves its limits alone: the new runner
/// `apply`s its own only when its generation commits, so a reload that fails changes nothing.
public final class DiskQueue: BatchQueue {
    public let directory: String
    /// A queued batch: where it is on disk, and while memory allows, the batch itself, so a
    /// consumer that keeps up never reads back or decodes what it was just handed.
    private struct Entry {
        var location: SegmentLog.Location
        var spans: Int
        var at: ContinuousClock.Instant
        var batch: SpanBatch?
        var digest: ExportAttempts.Digest?
    }
    /// Everything that changes, under one lock: the files and the index of what they hold.
    private struct State {
        let log: SegmentLog
        let attempts: ExportAttempts
        let directory: String
        let logger: Logger
        var pending: Deque<Entry> = []
        /// Arena bytes of the batches kept in memory beside their records; at most `cacheLimit`.
        var cachedBytes = 0
        /// Bytes of batches not yet acknowledged (queued or being exported): what the limit counts.
        var liveBytes = 0
        var deadLettered = 0
        var writeFailures = 0
        /// False from a failed write to the next good one (so a full disk is logged once).
        var writing = true
        var limits: QueueLimits
        /// The plugin exporting from this queue, for the ledger.
        var owner = ""
        /// Batches dead-lettered as poison instead of exported.
        var poisoned = 0

        /// A batch is done with (delivered or dead-lettered): acknowledged, and no longer
        /// counted against the limit.
        mutating func retire(_ location: SegmentLog.Location) {
            log.acknowledge(location)
            liveBytes -= location.length
        }

        /// Appends one line to dead_letter.jsonl.
        mutating func writeDeadLetter(json: String, spans: Int, reason: String) {
            deadLettered += 1
            let time = ISO8601DateFormatter().string(from: Date())
            let quotedReason = String(decoding: (try? JSONSerialization.data(withJSONObject: reason, options: .fragmentsAllowed)) ?? Data("\"\"".utf8),
                                      as: UTF8.self)
            let line = "{\"time\":\"\(time)\",\"reason\":\(quotedReason),\"spans\":\(spans),\"request\":\(json)}\n"
            let path = "\(directory)/dead_letter.jsonl"
            let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                logger.error("cannot write the dead-letter file", metadata: ["path": "\(path)"])
                return
            }
            _ = line.withCString { Foundation.write(fd, $0, strlen($0)) }
            Foundation.close(fd)
        }
    }
    private let state: Guarded<State>
    private let cacheLimit = 64 << 20
    private let recovered: Int
    private let cutBytes: Int
    /// A batch whose content was being exported this many times the process died is poison.
    private let poisonAfterCrashes: Int
    private let logger: Logger

    /// Open queues by directory, and the component that crashed the previous process.
    private struct Registry {
        var queues: [String: DiskQueue] = [:]
        var crashedComponent: String?
    }
    private static let registry = Mutex(Registry())

    /// The component whose plugin call was running when the previous process crashed (nil:
    /// it did not crash in a plugin call, or was killed). Set once at start, before any queue
    /// opens: only that component's queue counts the crash against the batches it had out, so
    /// a kill -9 or another plugin's crash makes no batch look like poison.
    public static func previousProcessCrashed(in component: String?) {
        registry.withLock { $0.crashedComponent = component }
    }

    /// The queue for `directory`, opened (and recovered) on first use. `component` is the
    /// exporter it belongs to.
    public static func open(directory: String, component: String = "", limits: QueueLimits, fsync: FsyncPolicy,
                            poisonAfterCrashes: Int = 2, segmentBytes: Int = 8 << 20) throws -> DiskQueue {
        let key = URL(fileURLWithPath: directory).standardizedFileURL.path
        return try registry.withLock { registry throws -> DiskQueue in
            if let queue = registry.queues[key] { return queue }
            let queue = try DiskQueue(directory: key, limits: limits, fsync: fsync, poisonAfterCrashes: poisonAfterCrashes,
                                      segmentBytes: segmentBytes, crashedHere: registry.crashedComponent.map { $0 == component } ?? false)
            registry.queues[key] = queue
            return queue
        }
    }

    private init(directory: String, limits: QueueLimits, fsync: FsyncPolicy, poisonAfterCrashes: Int, segmentBytes: Int,
                 crashedHere: Bool) throws {
        self.directory = directory
        var logger = Logger(label: "spanhost.queue")
        logger[metadataKey: "directory"] = "\(directory)"
        self.logger = logger
        let log = try SegmentLog(directory: directory, segmentBytes: segmentBytes, fsync: fsync)
        let recovery = try log.recover()
        let attempts = ExportAttempts(directory: directory)
        attempts.recover(countingCrash: crashedHere)
        self.poisonAfterCrashes = poisonAfterCrashes
        var state = State(log: log, attempts: attempts, directory: directory, logger: logger, limits: limits)
        state.pending = Deque(recovery.pending.map { Entry(location: $0, spans: 0, at: .now) })
        state.liveBytes = recovery.pending.reduce(0) { $0 + $1.length }
        self.state = Guarded(state)
        recovered = recovery.pending.count
        cutBytes = recovery.cutBytes
        if recovery.cutBytes > 0 {
            logger.warning("damaged segment tails cut", metadata: ["bytes": "\(recovery.cutBytes)", "segments": "\(recovery.cutSegments)"])
        }
        if recovered > 0 { logger.info("queued batches recovered from disk", metadata: ["batches": "\(recovered)"]) }
        if case .interval(let every) = fsync {
            let thread = Thread { [weak self] in
                while true {
                    Thread.sleep(forTimeInterval: every.seconds)
                    guard let self else { return }
                    for fd in self.state.withLock({ $0.log.descriptorsToSync() }) {
                        if Foundation.fsync(fd) != 0 {
                            self.logger.error("cannot fsync the queue", metadata: ["error": "\(String(cString: strerror(errno)))"])
                        }
                        Foundation.close(fd)
                    }
                }
            }
            thread.name = "fsync \(directory)"
            thread.start()
        }
    }

    /// The limits `offer` enforces now.
    public var limits: QueueLimits { state.withLock { $0.limits } }

    /// Batches dead-lettered as poison instead of exported.
    public var poisoned: Int { state.withLock { $0.poisoned } }

    /// Replaces the limits: called when the runner that owns the queue from now on starts.
    public func apply(_ limits: QueueLimits, owner: String) {
        state.withLock {
            $0.limits = limits
            $0.owner = owner
        }
    }

    public func offer(_ batch: SpanBatch, force: Bool) -> OfferResult {
        // A batch nothing has changed since it was decoded is written as its request came.
        var encoded = spanhost_buffer()
        defer { sh_buffer_free(&encoded) }
        let bytes: UnsafeRawBufferPointer
        if let source = batch.protobufSource {
            bytes = source
        } else {
            guard sh_encode_batch(batch.pointer, UInt32(SPANHOST_ENCODING_OTLP_PROTO), &encoded) == 0 else {
                return .notStored(reason: "out of memory encoding the batch")
            }
            bytes = UnsafeRawBufferPointer(start: encoded.data, count: encoded.len)
        }
        let spans = batch.spanCount
        // The checksum serves the record and the poison digest; taken outside the lock.
        let digest = ExportAttempts.Digest(bytes)
        let cacheLimit = self.cacheLimit
        return state.withLock(wake: .one) { state in
            guard force || (state.pending.count < state.limits.items && state.liveBytes + bytes.count <= state.limits.bytes) else { return .full }
            do {
                let location = try state.log.append(bytes, payloadCRC: digest.crc)
                var entry = Entry(location: location, spans: spans, at: .now)
                if state.cachedBytes + batch.arenaBytes <= cacheLimit {
                    entry.batch = batch
                    entry.digest = digest
                    state.cachedBytes += batch.arenaBytes
                }
                state.pending.append(entry)
                state.liveBytes += location.length
                if state.writeFailures > 0 && !state.writing {
                    state.logger.notice("the queue is written again", metadata: ["failed_writes": "\(state.writeFailures)"])
                }
                state.writing = true
                return .queued
            } catch {
                state.writeFailures += 1
                if state.writing { state.logger.error("cannot write to the queue; batches are refused until it can", metadata: ["error": "\(error)"]) }
                state.writing = false
                return .notStored(reason: "\(error)")
            }
        }
    }

    public func take(through gate: TakeGate, until deadline: ContinuousClock.Instant?) -> QueuedBatch? {
        while true {
            // Pick the oldest under the lock; read and decode it (when it is not in memory)
            // outside, so receivers appending to the queue never wait for a decode. The recheck
            // bounds the wait for a gate that closes at a later instant (a drain deadline).
            let picked: Entry?? = state.wait(until: deadline, recheck: .milliseconds(200)) { state in
                if !gate.isOpen() { return .some(nil) }
                guard !state.pending.isEmpty else { return nil }
                let entry = state.pending.removeFirst()
                if let batch = entry.batch { state.cachedBytes -= batch.arenaBytes }
                return .some(entry)
            }
            guard let next = picked ?? nil else { return nil }
            do {
                let batch: SpanBatch, digest: ExportAttempts.Digest
                if let cached = next.batch, let cachedDigest = next.digest {
                    (batch, digest) = (cached, cachedDigest)
                } else {
                    let bytes = try state.withLock { state throws -> [UInt8] in try state.log.read(next.location) }
                    digest = bytes.withUnsafeBytes { ExportAttempts.Digest($0) }
                    batch = try bytes.withUnsafeBytes {
                        try SpanBatch.decode($0, format: .otlpProtobuf, gzip: false, limit: Int.max)
                    }
                }
                let item = QueuedBatch(batch: batch, spans: batch.spanCount, location: next.location, digest: digest,
                                       metadataKnown: next.batch != nil)
                // Claimed only if the taker's gate is still open and it is not poison; else it goes
                // back to the front, or to the dead-letter file.
                enum Claim { case claimed, closed, poison(ExportAttempts.Crashes) }
                let poisonAfterCrashes = self.poisonAfterCrashes
                let verdict: Claim = state.withLock { state in
                    guard gate.isOpen() else { return .closed }
                    if let crashes = state.attempts.crashes(of: digest), crashes.count >= poisonAfterCrashes { return .poison(crashes) }
                    gate.handOut()
                    state.attempts.taken(next.location.seq, digest: digest, by: state.owner)
                    return .claimed
                }
                switch verdict {
                case .claimed:
                    return item
                case .closed:
                    release(item)
                    return nil
                case .poison(let crashes):
                    let reason = "crashed plugin \(crashes.plugin.isEmpty ? "(unknown)" : crashes.plugin) \(crashes.count) times"
                    let json = batch.encode(.json).map { String(decoding: $0, as: UTF8.self) } ?? "null"
                    state.withLock(wake: .all) { state in
                        state.writeDeadLetter(json: json, spans: batch.spanCount, reason: reason)
                        state.retire(next.location)
                        state.poisoned += 1
                    }
                    logger.error("the process died every time a batch like this one was being exported; dead-lettered, not retried",
                                 metadata: ["seq": "\(next.location.seq)", "reason": "\(reason)", "spans": "\(batch.spanCount)"])
                }
            } catch {
                // The checksum matched, so this is a bug or a disk error; never retry it forever.
                logger.error("a queued batch cannot be read back; dead-lettered", metadata: ["seq": "\(next.location.seq)", "error": "\(error)"])
                state.withLock { state in
                    state.writeDeadLetter(json: "null", spans: 0, reason: "cannot read back: \(error)")
                    state.retire(next.location)
                }
            }
        }
    }

    public func done(_ item: QueuedBatch, _ outcome: QueueOutcome) {
        guard let location = item.location else { return }
        if case .failed(let reason) = outcome {
            let json = item.batch.encode(.json).map { String(decoding: $0, as: UTF8.self) } ?? "null"
            state.withLock { $0.writeDeadLetter(json: json, spans: item.spans, reason: reason) }
        }
        state.withLock(wake: .all) { state in
            state.attempts.returned(location.seq, acknowledged: true)
            state.retire(location)
        }
    }

    /// Puts a taken batch back at the front (a runner stopping mid-retry).
    public func release(_ item: QueuedBatch) {
        guard let location = item.location else { return }
        state.withLock(wake: .all) { state in
            state.attempts.returned(location.seq, acknowledged: false)
            state.pending.prepend(Entry(location: location, spans: item.spans, at: .now, batch: item.batch, digest: item.digest))
            state.cachedBytes += item.batch.arenaBytes
        }
    }

    public func wake() { state.withLock(wake: .all) { _ in } }

    public var isPersistent: Bool { true }

    public func settle() -> QueueSettlement {
        state.withLock { state in
            try? state.log.sync()
            if state.log.pendingAcks > 0 {
                state.logger.warning("delivered batches whose ACK could not be written will be delivered again after a restart",
                                     metadata: ["batches": "\(state.log.pendingAcks)"])
            }
            return QueueSettlement(lostSpans: 0, keptBatches: state.pending.count, keptSpans: state.pending.reduce(0) { $0 + $1.spans })
        }
    }

    public var isFull: Bool {
        state.withLock { $0.pending.count >= $0.limits.items || $0.liveBytes >= $0.limits.bytes }
    }

    public var depth: Int { state.withLock { $0.pending.count } }

    public var stats: QueueStats {
        let (recovered, cutBytes) = (self.recovered, self.cutBytes)
        return state.withLock { state in
            QueueStats(depth: state.pending.count, capacity: state.limits.items, spans: state.pending.reduce(0) { $0 + $1.spans },
                       oldestAgeSeconds: state.pending.first.map { (ContinuousClock.now - $0.at).seconds },
                       bytesInMemory: 0, bytesQueued: state.liveBytes, bytesOnDisk: state.log.bytesOnDisk, deadLettered: state.deadLettered,
                       recoveredBatches: recovered, cutBytes: cutBytes, writeFailures: state.writeFailures,
                       unwrittenAcks: state.log.pendingAcks)
        }
    }
}
