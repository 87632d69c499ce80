import CSpanhost
import DequeModule
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel

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
public final class DiskQueue: BatchQueue, @unchecked Sendable {
    public let directory: String
    private let condition = NSCondition()
    private let log: SegmentLog
    /// A queued batch: where it is on disk, and while memory allows, the batch itself, so a
    /// consumer that keeps up never reads back or decodes what it was just handed.
    private struct Entry {
        var location: SegmentLog.Location
        var spans: Int
        var at: ContinuousClock.Instant
        var batch: SpanBatch?
        var digest: ExportAttempts.Digest?
    }
    private var pending: Deque<Entry> = []
    /// Arena bytes of the batches kept in memory beside their records; at most `cacheLimit`.
    private var cachedBytes = 0
    private let cacheLimit = 64 << 20
    /// Bytes of batches not yet acknowledged (queued or being exported): what the limit counts.
    private var liveBytes = 0
    private var deadLettered = 0
    private var writeFailures = 0
    /// False from a failed write to the next good one (so a full disk is logged once).
    private var writing = true
    private let recovered: Int
    private let cutBytes: Int
    private var currentLimits: QueueLimits
    private let attempts: ExportAttempts
    /// The plugin exporting from this queue, for the ledger.
    private var owner = ""
    /// A batch whose content was being exported this many times the process died is poison.
    private let poisonAfterCrashes: Int
    /// Batches dead-lettered as poison instead of exported.
    public private(set) var poisoned = 0
    private let logger: Logger

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [String: DiskQueue] = [:]
    nonisolated(unsafe) private static var crashedComponent: String?

    /// The component whose plugin call was running when the previous process crashed (nil:
    /// it did not crash in a plugin call, or was killed). Set once at start, before any queue
    /// opens: only that component's queue counts the crash against the batches it had out, so
    /// a kill -9 or another plugin's crash makes no batch look like poison.
    public static func previousProcessCrashed(in component: String?) {
        registryLock.withLock { crashedComponent = component }
    }

    /// The queue for `directory`, opened (and recovered) on first use. `component` is the
    /// exporter it belongs to.
    public static func open(directory: String, component: String = "", limits: QueueLimits, fsync: FsyncPolicy,
                            poisonAfterCrashes: Int = 2, segmentBytes: Int = 8 << 20) throws -> DiskQueue {
        let key = URL(fileURLWithPath: directory).standardizedFileURL.path
        return try registryLock.withLock {
            if let queue = registry[key] { return queue }
            let queue = try DiskQueue(directory: key, limits: limits, fsync: fsync, poisonAfterCrashes: poisonAfterCrashes,
                                      segmentBytes: segmentBytes, crashedHere: crashedComponent.map { $0 == component } ?? false)
            registry[key] = queue
            return queue
        }
    }

    private init(directory: String, limits: QueueLimits, fsync: FsyncPolicy, poisonAfterCrashes: Int, segmentBytes: Int,
                 crashedHere: Bool) throws {
        self.directory = directory
        self.currentLimits = limits
        var logger = Logger(label: "spanhost.queue")
        logger[metadataKey: "directory"] = "\(directory)"
        self.logger = logger
        log = try SegmentLog(directory: directory, segmentBytes: segmentBytes, fsync: fsync)
        let recovery = try log.recover()
        attempts = ExportAttempts(directory: directory)
        attempts.recover(countingCrash: crashedHere)
        self.poisonAfterCrashes = poisonAfterCrashes
        pending = Deque(recovery.pending.map { Entry(location: $0, spans: 0, at: .now) })
        liveBytes = recovery.pending.reduce(0) { $0 + $1.length }
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
                    for fd in self.condition.withLock({ self.log.descriptorsToSync() }) {
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
    public var limits: QueueLimits { condition.withLock { currentLimits } }

    /// Replaces the limits: called when the runner that owns the queue from now on starts.
    public func apply(_ limits: QueueLimits, owner: String) {
        condition.withLock {
            currentLimits = limits
            self.owner = owner
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
        return condition.withLock {
            guard force || (pending.count < currentLimits.items && liveBytes + bytes.count <= currentLimits.bytes) else { return .full }
            do {
                let location = try log.append(bytes, payloadCRC: digest.crc)
                var entry = Entry(location: location, spans: spans, at: .now)
                if cachedBytes + batch.arenaBytes <= cacheLimit {
                    entry.batch = batch
                    entry.digest = digest
                    cachedBytes += batch.arenaBytes
                }
                pending.append(entry)
                liveBytes += location.length
                if writeFailures > 0 && !writing {
                    logger.notice("the queue is written again", metadata: ["failed_writes": "\(writeFailures)"])
                }
                writing = true
                condition.signal()
                return .queued
            } catch {
                writeFailures += 1
                if writing { logger.error("cannot write to the queue; batches are refused until it can", metadata: ["error": "\(error)"]) }
                writing = false
                return .notStored(reason: "\(error)")
            }
        }
    }

    public func take(while active: () -> Bool, claim: () -> Void) -> QueuedBatch? {
        while true {
            // Pick the oldest under the lock; read and decode it (when it is not in memory)
            // outside, so receivers appending to the queue never wait for a decode.
            let next: Entry? = condition.withLock {
                while true {
                    if !active() { return nil }
                    if !pending.isEmpty { break }
                    _ = condition.wait(until: Date(timeIntervalSinceNow: 0.2))
                }
                let entry = pending.removeFirst()
                if let batch = entry.batch { cachedBytes -= batch.arenaBytes }
                return entry
            }
            guard let next else { return nil }
            do {
                let batch: SpanBatch, digest: ExportAttempts.Digest
                if let cached = next.batch, let cachedDigest = next.digest {
                    (batch, digest) = (cached, cachedDigest)
                } else {
                    let bytes = try condition.withLock { try log.read(next.location) }
                    digest = bytes.withUnsafeBytes { ExportAttempts.Digest($0) }
                    batch = try bytes.withUnsafeBytes {
                        try SpanBatch.decode($0, format: .otlpProtobuf, gzip: false, limit: Int.max)
                    }
                }
                let item = QueuedBatch(batch: batch, spans: batch.spanCount, location: next.location, digest: digest,
                                       metadataKnown: next.batch != nil)
                // Claimed only if the taker is still active and it is not poison; else it goes
                // back to the front, or to the dead-letter file.
                enum Claim { case claimed, inactive, poison(ExportAttempts.Crashes) }
                let verdict: Claim = condition.withLock {
                    guard active() else { return .inactive }
                    if let crashes = attempts.crashes(of: digest), crashes.count >= poisonAfterCrashes { return .poison(crashes) }
                    claim()
                    attempts.taken(next.location.seq, digest: digest, by: owner)
                    return .claimed
                }
                switch verdict {
                case .claimed:
                    return item
                case .inactive:
                    release(item)
                    return nil
                case .poison(let crashes):
                    let reason = "crashed plugin \(crashes.plugin.isEmpty ? "(unknown)" : crashes.plugin) \(crashes.count) times"
                    let json = batch.encode(.json).map { String(decoding: $0, as: UTF8.self) } ?? "null"
                    condition.withLock {
                        writeDeadLetter(json: json, spans: batch.spanCount, reason: reason)
                        retire(next.location)
                        poisoned += 1
                        condition.broadcast()
                    }
                    logger.error("the process died every time a batch like this one was being exported; dead-lettered, not retried",
                                 metadata: ["seq": "\(next.location.seq)", "reason": "\(reason)", "spans": "\(batch.spanCount)"])
                }
            } catch {
                // The checksum matched, so this is a bug or a disk error; never retry it forever.
                logger.error("a queued batch cannot be read back; dead-lettered", metadata: ["seq": "\(next.location.seq)", "error": "\(error)"])
                condition.withLock {
                    writeDeadLetter(json: "null", spans: 0, reason: "cannot read back: \(error)")
                    retire(next.location)
                }
            }
        }
    }

    public func done(_ item: QueuedBatch, _ outcome: QueueOutcome) {
        guard let location = item.location else { return }
        if case .failed(let reason) = outcome {
            let json = item.batch.encode(.json).map { String(decoding: $0, as: UTF8.self) } ?? "null"
            condition.withLock { writeDeadLetter(json: json, spans: item.spans, reason: reason) }
        }
        condition.withLock {
            attempts.returned(location.seq, acknowledged: true)
            retire(location)
            condition.broadcast()
        }
    }

    /// Puts a taken batch back at the front (a runner stopping mid-retry).
    public func release(_ item: QueuedBatch) {
        guard let location = item.location else { return }
        condition.withLock {
            attempts.returned(location.seq, acknowledged: false)
            pending.prepend(Entry(location: location, spans: item.spans, at: .now, batch: item.batch, digest: item.digest))
            cachedBytes += item.batch.arenaBytes
            condition.broadcast()
        }
    }

    public func wake() { condition.withLock { condition.broadcast() } }

    public var isPersistent: Bool { true }

    public func settle() -> QueueSettlement {
        condition.withLock {
            try? log.sync()
            if log.pendingAcks > 0 {
                logger.warning("delivered batches whose ACK could not be written will be delivered again after a restart",
                               metadata: ["batches": "\(log.pendingAcks)"])
            }
            return QueueSettlement(lostSpans: 0, keptBatches: pending.count, keptSpans: pending.reduce(0) { $0 + $1.spans })
        }
    }

    public var isFull: Bool {
        condition.withLock { pending.count >= currentLimits.items || liveBytes >= currentLimits.bytes }
    }

    public var depth: Int { condition.withLock { pending.count } }

    public var stats: QueueStats {
        condition.withLock {
            QueueStats(depth: pending.count, capacity: currentLimits.items, spans: pending.reduce(0) { $0 + $1.spans },
                              oldestAgeSeconds: pending.first.map { (ContinuousClock.now - $0.at).seconds },
                              bytesInMemory: 0, bytesQueued: liveBytes, bytesOnDisk: log.bytesOnDisk, deadLettered: deadLettered,
                              recoveredBatches: recovered, cutBytes: cutBytes, writeFailures: writeFailures,
                              unwrittenAcks: log.pendingAcks)
        }
    }

    /// A batch is done with (delivered or dead-lettered): acknowledged, and no longer counted
    /// against the limit. Called with the lock held.
    private func retire(_ location: SegmentLog.Location) {
        log.acknowledge(location)
        liveBytes -= location.length
    }

    /// Appends one line to dead_letter.jsonl. Called with the lock held.
    private func writeDeadLetter(json: String, spans: Int, reason: String) {
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
