import CSpanhost
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues
import SpanhostSync

/// The attempts of one batch (or event) under a RetryPolicy: exponential backoff that honours a
/// plugin's retry-after, within max_elapsed_time and an optional drain deadline.
struct RetrySchedule {
    enum Next {
        case wait(Duration)
        /// Retries are off, or the next one would pass max_elapsed_time.
        case exhausted
        /// The next one would pass the drain deadline of a shutdown or reload.
        case pastDeadline
    }

    let policy: RetryPolicy
    private let started = ContinuousClock.now
    private var interval: Duration

    init(_ policy: RetryPolicy) {
        self.policy = policy
        interval = policy.initialInterval
    }

    mutating func next(retryAfter: Duration?, deadline: ContinuousClock.Instant?) -> Next {
        let wait = max(Self.jittered(interval, policy.randomizationFactor), retryAfter ?? .zero)
        if let deadline, ContinuousClock.now + wait > deadline { return .pastDeadline }
        if !policy.enabled || ContinuousClock.now - started + wait > policy.maxElapsedTime { return .exhausted }
        interval = min(interval * policy.multiplier, policy.maxInterval)
        return .wait(wait)
    }

    /// A wait drawn uniformly within ±factor of `interval`.
    static func jittered(_ interval: Duration, _ factor: Double) -> Duration {
        guard factor > 0 else { return interval }
        return interval * Double.random(in: (1 - factor)...(1 + factor))
    }
}

/// One exporter instance with its sending queue and the worker threads that drain it.
///
/// Receivers never wait on an exporter: they enqueue (or are refused when the queue is full)
/// and the workers call the plugin, retrying retryable failures with exponential backoff. The
/// queue is in memory, or on disk with `sending_queue.storage` (see DiskQueue): then a batch
/// is on disk before the receiver answers, a shutdown leaves what is queued there for the next
/// start, and a batch given up on goes to the dead-letter file instead of being dropped. With
/// `sending_queue.enabled: false` there is no queue: the batch is exported on the caller's
/// thread and its result is the client's answer.
public final class ExporterRunner: Sendable {
    public let instance: PluginInstance
    public let retry: RetryPolicy
    public let queueSettings: SendingQueueSettings
    /// Nil when the queue is disabled.
    public let queue: BatchQueue?
    private struct State {
        var stopping = false
        var started = false
        /// Set by shutdown: retries continue until then, not beyond.
        var drainDeadline: ContinuousClock.Instant?
        /// How many exports have finished (what a draining shutdown waits for).
        var finished = 0
        /// What became of the spans this exporter accepted (for the final report).
        var tally = DeliveryTally()
        /// Spans in the batches being exported right now: a shutdown that finds a call still
        /// running (hung) counts them as lost (memory) or kept on disk (persistent), and the
        /// call, should it ever return, changes the tally no more (`abandoned`).
        var spansInHand = 0
        var abandoned = false
        var lastDropLog: ContinuousClock.Instant?
        /// `metadata_keys` value combinations batched so far (at most metadata_cardinality_limit).
        var seenPartitions: Set<[String]> = []
        var partitionLimitLogged = false
    }
    private let state = Guarded(State())
    /// Open until shutdown (a memory queue drains until the deadline, a disk queue keeps what is
    /// left); counts the batches the consumer threads have in hand.
    private let gate = TakeGate()
    /// Worker threads taking batches from the queue (`sending_queue.num_consumers`). More than
    /// one helps only plugins that declare SPANHOST_PLUGIN_CONCURRENT; others are serialized.
    public let consumers: Int
    private let logger: Logger

    public var id: ComponentID { instance.id }
    public var counters: Counters { instance.counters }

    public init(instance: PluginInstance, settings: ConfigValue, path: String) throws {
        self.instance = instance
        self.retry = try RetryPolicy(settings: settings, path: path)
        let queueSettings = try SendingQueueSettings(settings: settings["sending_queue"], path: "\(path).sending_queue")
        self.queueSettings = queueSettings
        consumers = queueSettings.consumers ?? (instance.library.isConcurrent ? 4 : 1)
        let limits = QueueLimits(items: queueSettings.queueSize, bytes: queueSettings.maxBytes)
        if !queueSettings.enabled {
            queue = nil
        } else if let storage = queueSettings.storage {
            // One directory per exporter id under the storage directory.
            let directory = "\(storage)/\(instance.id.description.replacingOccurrences(of: "/", with: "_"))"
            do {
                queue = try DiskQueue.open(directory: directory, component: instance.id.description, limits: limits, fsync: queueSettings.fsync,
                                           poisonAfterCrashes: queueSettings.deadLetterAfterCrashes)
            } catch {
                throw ConfigError("\(path).sending_queue.storage", "\(error)")
            }
        } else {
            queue = MemoryQueue(limits: limits)
        }
        var logger = Logger(label: "spanhost.exporter")
        logger[metadataKey: "component"] = "\(instance.id)"
        self.logger = logger
    }

    /// Starts the consumer threads; a runner carried over by a reload is already started.
    public func start() {
        guard queue != nil, state.withLock({ state in defer { state.started = true }; return !state.started }) else { return }
        // A disk queue may be shared with the runner this one replaces: its limits become ours now.
        (queue as? DiskQueue)?.apply(QueueLimits(items: queueSettings.queueSize, bytes: queueSettings.maxBytes),
                                     owner: instance.library.name)
        for n in 0..<consumers {
            let thread = Thread { [self] in run() }
            thread.name = "exporter \(id) #\(n)"
            thread.start()
        }
    }

    /// Batches waiting, not counting those being exported.
    public var queueDepth: Int { queue?.depth ?? 0 }

    /// True when a batch offered now would be refused for the whole pipeline (`on_full: refuse`
    /// and the queue is full). A `drop` exporter never holds a pipeline up.
    public var refusesWhenFull: Bool {
        guard let queue, queueSettings.onFull == .refuse else { return false }
        return queue.isFull || isHung
    }

    /// A call into the plugin is hung: nothing queued now would leave soon, so for `on_full`
    /// the queue counts as full (503 with refuse, dropped and counted with drop).
    private var isHung: Bool { instance.health == "unhealthy" }

    /// Hands a batch to this exporter. With a queue: queued (`force` ignores the limits, for a
    /// fan-out that already checked for room, and for processors flushing at shutdown), or,
    /// when full under `on_full: drop`, dropped for this exporter and counted. Without a queue:
    /// exported now. Nil means taken; otherwise the answer for the client.
    public func accept(_ batch: SpanBatch, force: Bool) -> ConsumeOutcome? {
        let spans = batch.spanCount
        if state.withLock({ $0.stopping }) {
            counters.add("refused", Int64(spans))
            return .refused(retryAfterSeconds: 1, message: "exporter \(id) is shutting down")
        }
        guard let queue else { return exportNow(batch, spans: spans) }
        if exportsDirectly, exportAhead(batch, spans: spans, queue: queue) { return nil }
        let hungDrop = !force && queueSettings.onFull == .drop && isHung
        switch hungDrop ? .full : queue.offer(batch, force: force || queueSettings.onFull == .refuse) {
        case .queued:
            counters.add("queued", Int64(spans))
            state.withLock { $0.tally.accepted += spans }
            return nil
        case .notStored(let reason):
            // Never answered 200: the client sends it again once the disk has room. Spans a
            // processor flushes at a shutdown or reload were answered already (and a flush
            // takes every emit): they are lost, and counted.
            counters.add("not_stored", Int64(spans))
            guard !force else {
                state.withLock { state in
                    state.tally.accepted += spans
                    state.tally.lost += spans
                }
                logger.error("spans flushed by a processor could not be queued and are lost", metadata: ["spans": "\(spans)", "error": "\(reason)"])
                return nil
            }
            return .refused(retryAfterSeconds: 1, message: "exporter \(id) cannot store its queue (details in the server log)")
        case .full:
            break
        }
        counters.add("queued", Int64(spans))
        counters.add("dropped_on_full", Int64(spans))
        let log: Bool = state.withLock { state in
            state.tally.accepted += spans
            state.tally.lost += spans
            guard state.lastDropLog.map({ ContinuousClock.now - $0 >= .seconds(1) }) ?? true else { return false }
            state.lastDropLog = .now
            return true
        }
        if log { logger.warning("sending queue full; batch dropped for this exporter (on_full: drop)", metadata: ["spans": "\(spans)"]) }
        return nil
    }

    /// Whether `accept` returns without waiting: it only queues in memory, or it exports now
    /// through a plugin that never blocks.
    public var acceptNeverBlocks: Bool { queue.map { $0 is MemoryQueue } ?? instance.neverBlocks }

    /// A plugin that never blocks is called on the caller's thread while its memory queue is
    /// empty and no worker is exporting (so batches keep their order): no worker to wake.
    private var exportsDirectly: Bool { instance.neverBlocks && queue is MemoryQueue }

    /// Exports a batch now if nothing is ahead of it; true when it was delivered. Anything else
    /// (something queued, a failure) leaves it to the queue, where failures are retried.
    private func exportAhead(_ batch: SpanBatch, spans: Int, queue: BatchQueue) -> Bool {
        guard gate.inHand == 0, !state.withLock({ $0.stopping }), queue.depth == 0 else { return false }
        guard case .ok = instance.export(batch) else { return false }
        counters.add("exported", Int64(spans))
        state.withLock { state in
            state.tally.accepted += spans
            state.tally.delivered += spans
        }
        return true
    }

    /// No queue: one attempt on the caller's thread; a retryable failure is the client's to retry.
    private func exportNow(_ batch: SpanBatch, spans: Int) -> ConsumeOutcome? {
        switch instance.export(batch) {
        case .ok, .consumed:
            counters.add("exported", Int64(spans))
            state.withLock { state in
                state.tally.accepted += spans
                state.tally.delivered += spans
            }
            return nil
        // The plugin's message may name internal addresses: it goes to the log, and the client
        // learns only which exporter failed.
        case .permanent(let message):
            counters.add("failed", Int64(spans))
            logger.warning("export failed; batch rejected", metadata: ["spans": "\(spans)", "error": "\(message)"])
            return .rejected(message: "exporter \(id) rejected the batch (details in the server log)")
        case .retryable(let after, let message):
            counters.add("refused", Int64(spans))
            logger.warning("export failed; client asked to retry", metadata: ["spans": "\(spans)", "error": "\(message)"])
            return .refused(retryAfterSeconds: after.map { max(1, Int($0.seconds.rounded(.up))) } ?? 1,
                            message: "exporter \(id) is unavailable (details in the server log)")
        case .unavailable(let message):
            counters.add("refused", Int64(spans))
            logger.warning("exporter unavailable; client asked to retry", metadata: ["spans": "\(spans)", "error": "\(message)"])
            return .refused(retryAfterSeconds: 1, message: "exporter \(id) is unavailable (details in the server log)")
        }
    }

    /// Stops taking batches and exports what is queued until `deadline` (a disk queue keeps
    /// it instead), then destroys the instance. Returns what became of every span it accepted.
    public func shutdown(deadline: ContinuousClock.Instant) -> DeliveryTally {
        state.withLock(wake: .all) { state in  // ends a retry wait at once
            state.stopping = true
            state.drainDeadline = deadline
        }
        if let queue {
            gate.close(at: queue.isPersistent ? .now : deadline)
            queue.wake()
            // An export finishing wakes the wait; the 20 ms bound covers a queue that empties
            // otherwise.
            while ContinuousClock.now < deadline {
                let finished = state.withLock { $0.finished }
                if (queue.isPersistent || queue.depth == 0) && gate.inHand == 0 { break }
                _ = state.wait(until: min(deadline, .now + .milliseconds(20))) { $0.finished != finished ? true : nil }
            }
        }
        let stillBusy = gate.inHand > 0
        let left = queue?.settle() ?? .none
        if left.lostSpans > 0 {
            counters.add("undelivered", Int64(left.lostSpans))
            logger.error("shutdown deadline passed with spans still queued", metadata: ["undelivered_spans": "\(left.lostSpans)"])
        }
        if left.keptBatches > 0 {
            logger.info("queued batches kept on disk for the next start", metadata: ["batches": "\(left.keptBatches)"])
        }
        if !stillBusy {
            _ = instance.flush()
            instance.destroy()
        }
        let persistent = queue?.isPersistent == true
        let (tally, abandonedSpans) = state.withLock { state in
            state.tally.lost += left.lostSpans
            state.tally.keptOnDisk += left.keptSpans
            state.tally.keptBatches += left.keptBatches
            let inHand = state.spansInHand
            if stillBusy && inHand > 0 {
                // A call still running (hung): its batch stays on disk unacknowledged for the
                // next start, or was only in memory.
                if persistent { state.tally.keptOnDisk += inHand } else { state.tally.lost += inHand }
                state.spansInHand = 0
                state.abandoned = true
                return (state.tally, inHand)
            }
            return (state.tally, 0)
        }
        if abandonedSpans > 0 {
            logger.error("shutdown with an export still running; its spans are counted",
                         metadata: ["spans": "\(abandonedSpans)", "as": "\(persistent ? "kept on disk" : "lost")"])
        }
        return tally
    }

    private func run() {
        guard let queue else { return }
        while let first = queue.take(through: gate) {
            let items = gather(after: first, from: queue)
            let spans = items.reduce(0) { $0 + $1.spans }
            state.withLock { $0.spansInHand += spans }
            for export in partition(items) { deliver(export, from: queue) }
            gate.returned(items.count)
            state.withLock(wake: .all) { state in
                if !state.abandoned { state.spansInHand -= spans }
                state.finished += 1
            }
        }
    }

    /// With `sending_queue.batch`: more requests taken after `first`, until `min_size` spans or
    /// `flush_timeout` after the first, never past `max_size`. They stay in the queue (on disk)
    /// until the export of all of them is done.
    private func gather(after first: QueuedBatch, from queue: BatchQueue) -> [QueuedBatch] {
        guard let batching = queueSettings.batch else { return [first] }
        var items = [first]
        var spans = first.spans
        let deadline = ContinuousClock.now + batching.flushTimeout
        while spans < batching.minSize && (batching.maxSize == 0 || spans < batching.maxSize),
              let more = queue.take(through: gate, until: deadline) {
            items.append(more)
            spans += more.spans
        }
        return items
    }

    /// The gathered requests as exports: all together, or with `metadata_keys` one export per
    /// combination of those headers' values, in order of first arrival. A request whose
    /// metadata is unknown (read back from disk) or new past the cardinality limit goes alone.
    private func partition(_ items: [QueuedBatch]) -> [[QueuedBatch]] {
        guard let batching = queueSettings.batch, !batching.metadataKeys.isEmpty, items.count > 1 else { return [items] }
        var exports: [[QueuedBatch]] = []
        var exportOf: [[String]: Int] = [:]
        for item in items {
            let values = batching.metadataKeys.map { item.batch.clientMetadata("metadata." + $0) ?? "" }
            if let index = exportOf[values] {
                exports[index].append(item)
            } else if item.metadataKnown && admitPartition(values, limit: batching.metadataCardinalityLimit) {
                exportOf[values] = exports.count
                exports.append([item])
            } else {
                exports.append([item])
            }
        }
        return exports
    }

    /// Whether `values` may be batched: seen before, or new within the cardinality limit.
    private func admitPartition(_ values: [String], limit: Int) -> Bool {
        let (admitted, firstRefusal) = state.withLock { state in
            if state.seenPartitions.contains(values) { return (true, false) }
            if state.seenPartitions.count < limit {
                state.seenPartitions.insert(values)
                return (true, false)
            }
            defer { state.partitionLimitLogged = true }
            return (false, !state.partitionLimitLogged)
        }
        if firstRefusal {
            logger.warning("metadata_cardinality_limit reached: requests with new metadata values are exported unbatched",
                           metadata: ["limit": "\(limit)"])
        }
        return admitted
    }

    /// One export of the gathered requests (one partition): alone, or their spans copied into
    /// one batch that carries the partition's metadata values.
    private func merge(_ items: [QueuedBatch]) -> SpanBatch? {
        guard items.count > 1 else { return items.first?.batch }
        guard let merged = SpanBatch.empty() else { return nil }
        for item in items where !merged.append(spansOf: item.batch) { return nil }
        let keys = (queueSettings.batch?.metadataKeys ?? []).map { "metadata." + $0 }
        let pairs = keys.compactMap { key in items[0].batch.clientMetadata(key).map { (key: key, value: $0) } }
        guard merged.setClientMetadata(pairs) else { return nil }
        return merged
    }

    private func deliver(_ items: [QueuedBatch], from queue: BatchQueue) {
        let count = items.reduce(0) { $0 + $1.spans }
        let spans = Int64(count)
        var schedule = RetrySchedule(retry)
        func giveUp(_ counter: String, _ message: String, _ reason: String) {
            counters.add(counter, spans)
            let where_ = queue.isPersistent ? "batch dead-lettered" : "batch dropped"
            logger.error("\(message); \(where_)", metadata: ["spans": "\(spans)", "error": "\(reason)"])
            let persistent = queue.isPersistent
            state.withLock { state in
                guard !state.abandoned else { return }
                if persistent { state.tally.deadLettered += count } else { state.tally.lost += count }
            }
            for item in items { queue.done(item, .failed(reason: reason)) }
        }
        guard let batch = merge(items) else { return giveUp("failed", "cannot gather the batch", "out of memory") }
        /// Waits before the next attempt; false when it is time to stop trying.
        func backOff(_ retryAfter: Duration?, _ message: String) -> Bool {
            let (stopping, deadline) = state.withLock { ($0.stopping, $0.drainDeadline) }
            // Stopping, a disk queue keeps the batch for whoever takes the queue next (the next
            // start, or the runner of a reload); a memory queue's batch is retried until the
            // drain deadline.
            if stopping && queue.isPersistent {
                for item in items { queue.release(item) }
                return false
            }
            switch schedule.next(retryAfter: retryAfter, deadline: deadline) {
            case .pastDeadline, .exhausted:
                giveUp("failed", "export failed; giving up", message)
                return false
            case .wait(let wait):
                counters.add("retried", spans)
                logger.warning("export failed; retrying", metadata: ["in": "\(wait)", "error": "\(message)"])
                // A shutdown or reload arriving ends the wait at once: the next attempt may be
                // the last before its deadline, or the batch goes back to disk.
                _ = state.wait(until: .now + wait) { $0.stopping != stopping ? true : nil }
                return true
            }
        }
        while true {
            // A crash during this export names the queue record in the crash record.
            sh_crash_set_record(items[0].record.map(Int64.init) ?? -1)
            let result = instance.export(batch)
            sh_crash_set_record(-1)
            switch result {
            case .ok, .consumed:
                counters.add("exported", spans)
                state.withLock { state in if !state.abandoned { state.tally.delivered += count } }
                for item in items { queue.done(item, .delivered) }
                return
            case .permanent(let message):
                return giveUp("failed", "export failed permanently", message)
            case .retryable(let retryAfter, let message):
                if !backOff(retryAfter, message) { return }
            case .unavailable(let message):
                // A hung instance or an open circuit breaker: not this batch's fault; wait for it.
                counters.add("unavailable", spans)
                if !backOff(.seconds(1), message) { return }
            }
        }
    }
}

/// What became of the spans one exporter accepted, for the shutdown report and the exit code.
public struct DeliveryTally: Sendable, Equatable {
    public var accepted = 0
    public var delivered = 0
    /// Left in the persistent queue for the next start (spans of recovered batches not counted).
    public var keptOnDisk = 0
    public var keptBatches = 0
    /// Given up on and written to the dead-letter file.
    public var deadLettered = 0
    /// Dropped: given up on without a persistent queue, dropped on a full queue, or still in a
    /// memory queue when the drain deadline passed.
    public var lost = 0

    public init() {}

    mutating func add(_ other: DeliveryTally) {
        accepted += other.accepted
        delivered += other.delivered
        keptOnDisk += other.keptOnDisk
        keptBatches += other.keptBatches
        deadLettered += other.deadLettered
        lost += other.lost
    }
}
