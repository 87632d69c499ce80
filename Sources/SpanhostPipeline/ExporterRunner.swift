import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPlugins
import SpanhostQueues

/// Retry on retryable export failures, as the Collector's exporter helper does it.
public struct RetryPolicy: Sendable, Equatable {
    public var enabled = true
    public var initialInterval: Duration = .seconds(5)
    public var maxInterval: Duration = .seconds(30)
    public var maxElapsedTime: Duration = .seconds(300)

    public init() {}

    /// Reads `retry_on_failure` from a component's settings; what is not set keeps `defaults`.
    public init(settings: ConfigValue, path: String, defaults: RetryPolicy = RetryPolicy()) throws {
        self = defaults
        guard let retry = settings["retry_on_failure"], retry != .null else { return }
        let p = "\(path).retry_on_failure"
        if let v = retry["enabled"] {
            guard let b = v.boolValue else { throw ConfigError("\(p).enabled", "must be true or false") }
            enabled = b
        }
        if let v = retry["initial_interval"] { initialInterval = try parseDuration(v, path: "\(p).initial_interval") }
        if let v = retry["max_interval"] { maxInterval = try parseDuration(v, path: "\(p).max_interval") }
        if let v = retry["max_elapsed_time"] { maxElapsedTime = try parseDuration(v, path: "\(p).max_elapsed_time") }
        if initialInterval <= .zero { throw ConfigError("\(p).initial_interval", "must be greater than zero") }
        if maxInterval < initialInterval { throw ConfigError("\(p).max_interval", "must not be less than initial_interval") }
    }
}

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
        let wait = max(interval, retryAfter ?? .zero)
        if let deadline, ContinuousClock.now + wait > deadline { return .pastDeadline }
        if !policy.enabled || ContinuousClock.now - started + wait > policy.maxElapsedTime { return .exhausted }
        interval = min(interval * 2, policy.maxInterval)
        return .wait(wait)
    }
}

/// One exporter instance with its sending queue and the worker threads that drain it.
///
/// Receivers never wait on an exporter: they enqueue (or are refused when the queue is full)
/// and the workers call the plugin, retrying retryable failures with exponential backoff. The
/// queue is in memory, or on disk with `sending_queue.storage` (see DiskQueue): then a batch
/// is on disk before the receiver answers, a shutdown leaves what is queued there for the next
/// start, and a batch given up on goes to the dead-letter file instead of being dropped.
public final class ExporterRunner: @unchecked Sendable {
    public let instance: PluginInstance
    public let retry: RetryPolicy
    public let queue: BatchQueue
    private let condition = NSCondition()
    private var stopping = false
    private var started = false
    /// Set by shutdown: retries continue until then, not beyond.
    private var drainDeadline: ContinuousClock.Instant?
    /// Batches being exported right now (one per consumer thread at most).
    private var busy = 0
    /// Worker threads taking batches from the queue (`sending_queue.num_consumers`). More than
    /// one helps only plugins that declare SPANHOST_PLUGIN_CONCURRENT; others are serialized.
    public let consumers: Int
    private let logger: Logger

    public var id: ComponentID { instance.id }
    public var counters: Counters { instance.counters }

    public init(instance: PluginInstance, settings: ConfigValue, path: String) throws {
        self.instance = instance
        self.retry = try RetryPolicy(settings: settings, path: path)
        let config = try SendingQueueConfig(settings: settings["sending_queue"], path: "\(path).sending_queue",
                                            concurrent: instance.library.isConcurrent)
        consumers = config.consumers
        if let storage = config.storage {
            // One directory per exporter id under the storage directory.
            let directory = "\(storage)/\(instance.id.description.replacingOccurrences(of: "/", with: "_"))"
            do {
                queue = try DiskQueue.open(directory: directory, limits: config.limits, fsync: config.fsync)
            } catch {
                throw ConfigError("\(path).sending_queue.storage", "\(error)")
            }
        } else {
            queue = MemoryQueue(limits: config.limits)
        }
        var logger = Logger(label: "spanhost.exporter")
        logger[metadataKey: "component"] = "\(instance.id)"
        self.logger = logger
    }

    /// Starts the consumer threads; a runner carried over by a reload is already started.
    public func start() {
        guard condition.withLock({ defer { started = true }; return !started }) else { return }
        for n in 0..<consumers {
            let thread = Thread { [self] in run() }
            thread.name = "exporter \(id) #\(n)"
            thread.start()
        }
    }

    /// Batches waiting, not counting those being exported.
    public var queueDepth: Int { queue.depth }

    public var isFull: Bool { queue.isFull }

    /// Queues a batch. `force` lets a fan-out that already checked every queue for room
    /// finish even if another receiver filled this one in the meantime.
    @discardableResult
    public func enqueue(_ batch: SpanBatch, force: Bool = false) -> Bool {
        let spans = Int64(batch.spanCount)
        guard !condition.withLock({ stopping }), queue.offer(batch, force: force) else {
            counters.add("refused", spans)
            return false
        }
        counters.add("queued", spans)
        return true
    }

    /// Stops taking batches and exports what is queued until `deadline` (a disk queue keeps
    /// it instead), then destroys the instance. Returns how many spans were not delivered.
    public func shutdown(deadline: ContinuousClock.Instant) -> Int {
        condition.withLock {
            stopping = true
            drainDeadline = deadline
        }
        queue.wake()
        // The queue's lock is never taken while holding ours: takers hold the queue's lock
        // while they ask `active`, which takes ours.
        var stillBusy = true
        while ContinuousClock.now < deadline {
            let waiting = queue.isPersistent ? 0 : queue.depth
            stillBusy = condition.withLock { busy > 0 }
            if waiting == 0 && !stillBusy { break }
            condition.withLock { _ = condition.wait(until: Date(timeIntervalSinceNow: 0.02)) }
        }
        stillBusy = condition.withLock { busy > 0 }
        let left = queue.settle()
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
        return left.lostSpans
    }

    /// Whether consumers take more: until shutdown; a memory queue drains until the deadline,
    /// a disk queue keeps what is left.
    private var active: Bool { condition.withLock { !stopping || (!queue.isPersistent && ContinuousClock.now < (drainDeadline ?? .now)) } }

    private func run() {
        while let item = queue.take(while: { active }, claim: { condition.withLock { busy += 1 } }) {
            deliver(item)
            condition.withLock {
                busy -= 1
                condition.broadcast()
            }
        }
    }

    private func deliver(_ item: QueuedBatch) {
        let spans = Int64(item.spans)
        var schedule = RetrySchedule(retry)
        func giveUp(_ counter: String, _ message: String, _ reason: String) {
            counters.add(counter, spans)
            let where_ = queue.isPersistent ? "batch dead-lettered" : "batch dropped"
            logger.error("\(message); \(where_)", metadata: ["spans": "\(spans)", "error": "\(reason)"])
            queue.done(item, .failed(reason: reason))
        }
        /// Waits before the next attempt; false when it is time to stop trying.
        func backOff(_ retryAfter: Duration?, _ message: String) -> Bool {
            // Draining for a shutdown or reload: keep retrying, but not past its deadline.
            switch schedule.next(retryAfter: retryAfter, deadline: condition.withLock { drainDeadline }) {
            case .pastDeadline where queue.isPersistent:
                queue.release(item)  // stays on disk for whoever takes the queue next
                return false
            case .pastDeadline, .exhausted:
                giveUp("failed", "export failed; giving up", message)
                return false
            case .wait(let wait):
                counters.add("retried", spans)
                logger.warning("export failed; retrying", metadata: ["in": "\(wait)", "error": "\(message)"])
                Thread.sleep(forTimeInterval: wait.seconds)
                return true
            }
        }
        while true {
            switch instance.export(item.batch) {
            case .ok, .consumed:
                counters.add("exported", spans)
                queue.done(item, .delivered)
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

/// `sending_queue` of an exporter.
struct SendingQueueConfig {
    var limits = QueueLimits(items: 1000, bytes: Int.max)
    var consumers: Int
    var storage: String?
    var fsync = FsyncPolicy.interval(.seconds(1))

    init(settings: ConfigValue?, path: String, concurrent: Bool) throws {
        consumers = concurrent ? 4 : 1
        guard let settings, settings != .null else { return }
        let known = ["enabled", "queue_size", "num_consumers", "max_size_mib", "storage", "fsync"]
        for entry in settings.mapEntries ?? [] where !known.contains(entry.key) {
            throw ConfigError("\(path).\(entry.key)", "unknown key; expected \(known.joined(separator: ", "))")
        }
        if let size = settings["queue_size"] {
            guard let n = size.intValue, n > 0 else { throw ConfigError("\(path).queue_size", "must be a positive integer") }
            limits.items = Int(n)
        }
        if let value = settings["num_consumers"] {
            guard let n = value.intValue, (1...64).contains(n) else {
                throw ConfigError("\(path).num_consumers", "must be an integer from 1 to 64")
            }
            consumers = Int(n)
        }
        if let value = settings["storage"] {
            storage = try requireString(value, "\(path).storage")
            limits.bytes = 1 << 30
        }
        if let value = settings["max_size_mib"] {
            guard let mib = value.doubleValue, mib > 0 else { throw ConfigError("\(path).max_size_mib", "must be a positive number of MiB") }
            limits.bytes = Int(mib * 1024 * 1024)
        }
        if let value = settings["fsync"] {
            guard storage != nil else { throw ConfigError("\(path).fsync", "applies only with storage") }
            switch value.stringValue {
            case "always": fsync = .always
            case "never": fsync = .never
            default:
                let every = try parseDuration(value, path: "\(path).fsync")
                guard every > .zero else { throw ConfigError("\(path).fsync", "must be always, never or an interval like 1s") }
                fsync = .interval(every)
            }
        }
    }
}

extension CallPolicy {
    /// Reads `call_timeout` and `circuit_breaker: {failure_threshold, cool_down}` from a
    /// component's settings.
    public init(settings: ConfigValue, path: String) throws {
        self.init()
        if let v = settings["call_timeout"] {
            timeout = try parseDuration(v, path: "\(path).call_timeout")
            guard timeout > .zero else { throw ConfigError("\(path).call_timeout", "must be greater than zero") }
        }
        guard let breaker = settings["circuit_breaker"], breaker != .null else { return }
        if let v = breaker["failure_threshold"] {
            guard let n = v.intValue, n > 0 else { throw ConfigError("\(path).circuit_breaker.failure_threshold", "must be a positive integer") }
            failureThreshold = Int(n)
        }
        if let v = breaker["cool_down"] { coolDown = try parseDuration(v, path: "\(path).circuit_breaker.cool_down") }
    }
}
