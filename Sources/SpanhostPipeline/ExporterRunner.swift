import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPlugins

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

/// One exporter instance with its sending queue and the worker thread that drains it.
///
/// Receivers never wait on an exporter: they enqueue (or are refused when the queue is full)
/// and the worker calls the plugin, retrying retryable failures with exponential backoff.
public final class ExporterRunner: @unchecked Sendable {
    public let instance: PluginInstance
    public let queueCapacity: Int
    public let retry: RetryPolicy
    private let condition = NSCondition()
    private var queue: [SpanBatch] = []
    private var head = 0
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
        var capacity = 1000
        var consumers = instance.library.isConcurrent ? 4 : 1
        if let queue = settings["sending_queue"] {
            if let size = queue["queue_size"] {
                guard let n = size.intValue, n > 0 else {
                    throw ConfigError("\(path).sending_queue.queue_size", "must be a positive integer")
                }
                capacity = Int(n)
            }
            if let value = queue["num_consumers"] {
                guard let n = value.intValue, (1...64).contains(n) else {
                    throw ConfigError("\(path).sending_queue.num_consumers", "must be an integer from 1 to 64")
                }
                consumers = Int(n)
            }
        }
        self.queueCapacity = capacity
        self.consumers = consumers
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

    /// Batches waiting, not counting the one being exported.
    public var queueDepth: Int { condition.withLock { queue.count - head } }

    public var isFull: Bool { condition.withLock { queue.count - head >= queueCapacity } }

    /// Queues a batch. `force` lets a fan-out that already checked every queue for room
    /// finish even if another receiver filled this one in the meantime.
    @discardableResult
    public func enqueue(_ batch: SpanBatch, force: Bool = false) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, force || queue.count - head < queueCapacity else {
            counters.add("refused", Int64(batch.spanCount))
            return false
        }
        queue.append(batch)
        counters.add("queued", Int64(batch.spanCount))
        condition.signal()
        return true
    }

    /// Stops taking batches, exports what is queued until `deadline`, then destroys the
    /// instance. Returns how many spans were not delivered.
    public func shutdown(deadline: ContinuousClock.Instant) -> Int {
        condition.lock()
        stopping = true
        drainDeadline = deadline
        condition.broadcast()
        while (queue.count > head || busy > 0) && ContinuousClock.now < deadline {
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.02))
        }
        let left = queue[head...].reduce(0) { $0 + $1.spanCount }
        queue.removeAll()
        head = 0
        condition.broadcast()
        let stillBusy = busy > 0
        condition.unlock()
        if left > 0 {
            counters.add("undelivered", Int64(left))
            logger.error("shutdown deadline passed with spans still queued", metadata: ["undelivered_spans": "\(left)"])
        }
        if !stillBusy {
            _ = instance.flush()
            instance.destroy()
        }
        return left
    }

    private func next() -> SpanBatch? {
        condition.lock()
        defer { condition.unlock() }
        while queue.count == head {
            if stopping { return nil }
            condition.wait()
        }
        let batch = queue[head]
        head += 1
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        busy += 1
        return batch
    }

    private func run() {
        while let batch = next() {
            deliver(batch)
            condition.withLock {
                busy -= 1
                condition.broadcast()
            }
        }
    }

    private func deliver(_ batch: SpanBatch) {
        let spans = Int64(batch.spanCount)
        let started = ContinuousClock.now
        var interval = retry.initialInterval
        while true {
            switch instance.export(batch) {
            case .ok, .consumed:
                counters.add("exported", spans)
                return
            case .permanent(let message):
                counters.add("failed", spans)
                logger.error("export failed permanently; batch dropped", metadata: ["spans": "\(spans)", "error": "\(message)"])
                return
            case .unavailable(let message):
                counters.add("undelivered", spans)
                logger.error("exporter unavailable; batch dropped", metadata: ["spans": "\(spans)", "reason": "\(message)"])
                return
            case .retryable(let retryAfter, let message):
                let wait = max(interval, retryAfter ?? .zero)
                // Draining for a shutdown or reload: keep retrying, but not past its deadline.
                let pastDrain = condition.withLock { drainDeadline.map { ContinuousClock.now + wait > $0 } ?? false }
                if !retry.enabled || ContinuousClock.now - started + wait > retry.maxElapsedTime || pastDrain {
                    counters.add("failed", spans)
                    logger.error("export failed; giving up", metadata: ["spans": "\(spans)", "error": "\(message)"])
                    return
                }
                counters.add("retried", spans)
                logger.warning("export failed; retrying", metadata: ["in": "\(wait)", "error": "\(message)"])
                Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
                interval = min(interval * 2, retry.maxInterval)
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
