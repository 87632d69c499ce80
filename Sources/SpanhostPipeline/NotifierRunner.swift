import DequeModule
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPlugins

/// One notifier instance with its event queue and the thread that delivers from it.
///
/// Pipelines and rules only enqueue: a slow or failing notifier never holds up spans. When the
/// queue is full the oldest event is dropped and counted. Retryable failures are retried with
/// backoff (`retry_on_failure`, starting at 1 s) while later events wait their turn.
public final class NotifierRunner: @unchecked Sendable {
    public let instance: PluginInstance
    public let retry: RetryPolicy
    public let queueCapacity: Int
    private let condition = NSCondition()
    private var queue: Deque<NotificationEvent> = []
    private var stopping = false
    private var started = false
    private var drainDeadline: ContinuousClock.Instant?
    private var busy = false
    /// Milliseconds from an event's first occurrence reaching the host to its notify call.
    private var delays = DelaySample(capacity: 1024)
    private var recent: [RecentNotification] = []
    private let logger: Logger

    public var id: ComponentID { instance.id }
    public var counters: Counters { instance.counters }

    /// One notification this notifier finished with, for the admin page.
    public struct RecentNotification: Encodable, Sendable {
        public var time, kind, summary, outcome: String
        public var count: UInt64
    }

    /// The last ten, newest first.
    public var recentNotifications: [RecentNotification] { condition.withLock { recent } }

    private func remember(_ event: NotificationEvent, _ outcome: String) {
        let entry = RecentNotification(time: ISO8601DateFormatter().string(from: Date()), kind: event.kind,
                                       summary: event.pointer.pointee.summary.string, outcome: outcome, count: event.count)
        condition.withLock { recent = Array(([entry] + recent).prefix(10)) }
    }

    static let defaultRetry: RetryPolicy = {
        var policy = RetryPolicy()
        policy.initialInterval = .seconds(1)
        policy.maxInterval = .seconds(30)
        policy.maxElapsedTime = .seconds(120)
        return policy
    }()

    public init(instance: PluginInstance, settings: ConfigValue, path: String) throws {
        self.instance = instance
        retry = try RetryPolicy(settings: settings, path: path, defaults: Self.defaultRetry)
        queueCapacity = try NotifierQueueSettings(settings: settings["sending_queue"], path: "\(path).sending_queue").queueSize
        var logger = Logger(label: "spanhost.notifier")
        logger[metadataKey: "component"] = "\(instance.id)"
        self.logger = logger
    }

    /// Starts the delivery thread; a runner carried over by a reload is already started.
    public func start() {
        guard condition.withLock({ defer { started = true }; return !started }) else { return }
        let thread = Thread { [self] in run() }
        thread.name = "notifier \(id)"
        thread.start()
    }

    public func enqueue(_ event: NotificationEvent) {
        condition.withLock {
            guard !stopping else {
                counters.add("dropped", 1)
                return
            }
            if queue.count >= queueCapacity {
                queue.removeFirst()
                counters.add("dropped", 1)
            }
            queue.append(event)
            counters.add("queued", 1)
            condition.signal()
        }
    }

    public var queueDepth: Int { condition.withLock { queue.count } }

    /// p50 and p99 of the delay from an event's first occurrence to its notify call, over the
    /// last 1024 calls; nil before the first.
    public var delayPercentiles: (p50: Double, p99: Double)? { condition.withLock { delays.percentiles } }

    /// Delivers what is queued until `deadline`, then destroys the instance.
    public func shutdown(deadline: ContinuousClock.Instant) {
        condition.lock()
        stopping = true
        drainDeadline = deadline
        condition.broadcast()
        while (!queue.isEmpty || busy) && ContinuousClock.now < deadline {
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.02))
        }
        let left = queue.count
        queue.removeAll()
        let stillBusy = busy
        condition.broadcast()
        condition.unlock()
        if left > 0 {
            counters.add("undelivered", Int64(left))
            logger.error("shutdown deadline passed with notifications still queued", metadata: ["undelivered": "\(left)"])
        }
        if !stillBusy {
            _ = instance.flush()
            instance.destroy()
        }
    }

    private func next() -> NotificationEvent? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if stopping { return nil }
            condition.wait()
        }
        busy = true
        return queue.removeFirst()
    }

    private func run() {
        while let event = next() {
            deliver(event)
            condition.withLock {
                busy = false
                condition.broadcast()
            }
        }
    }

    private func deliver(_ event: NotificationEvent) {
        condition.withLock { delays.add((ContinuousClock.now - event.firstSeen).milliseconds) }
        var schedule = RetrySchedule(retry)
        while true {
            switch instance.notify(event.pointer) {
            case .ok, .consumed:
                counters.add("notified", 1)
                remember(event, "notified")
                return
            case .permanent(let message), .unavailable(let message):
                counters.add("failed", 1)
                remember(event, "failed: \(message)")
                logger.error("notification not delivered", metadata: ["kind": "\(event.kind)", "error": "\(message)"])
                return
            case .retryable(let retryAfter, let message):
                guard case .wait(let wait) = schedule.next(retryAfter: retryAfter, deadline: condition.withLock { drainDeadline }) else {
                    counters.add("failed", 1)
                    remember(event, "failed: \(message)")
                    logger.error("notification not delivered; giving up", metadata: ["kind": "\(event.kind)", "error": "\(message)"])
                    return
                }
                counters.add("retried", 1)
                logger.warning("notification failed; retrying", metadata: ["in": "\(wait)", "error": "\(message)"])
                // A shutdown or reload ends the wait at once (and then sets the deadline).
                let until = Date(timeIntervalSinceNow: wait.seconds)
                condition.withLock {
                    while !stopping && condition.wait(until: until) {}
                }
            }
        }
    }
}

/// The last `capacity` values, for percentiles shown at /status.
struct DelaySample {
    private var values: [Double] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func add(_ value: Double) {
        if values.count < capacity { values.append(value) } else { values[next] = value }
        next = (next + 1) % capacity
    }

    var percentiles: (p50: Double, p99: Double)? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func at(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        return (at(0.5), at(0.99))
    }
}
