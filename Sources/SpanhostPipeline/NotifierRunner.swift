import DequeModule
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostSync

/// One notifier instance with its event queue and the thread that delivers from it.
///
/// Pipelines and rules only enqueue: a slow or failing notifier never holds up spans. When the
/// queue is full the oldest event is dropped and counted. Retryable failures are retried with
/// backoff (`retry_on_failure`, starting at 1 s) while later events wait their turn.
public final class NotifierRunner: Sendable {
    public let instance: PluginInstance
    public let retry: RetryPolicy
    public let queueCapacity: Int
    private struct State {
        var queue: Deque<NotificationEvent> = []
        var stopping = false
        var started = false
        var drainDeadline: ContinuousClock.Instant?
        /// A notify call is running (its event has left the queue).
        var busy = false
        /// Milliseconds from an event's first occurrence reaching the host to its notify call.
        var delays = DelaySample(capacity: 1024)
        var recent: [RecentNotification] = []
    }
    private let state = Guarded(State())
    private let logger: Logger

    public var id: ComponentID { instance.id }
    public var counters: Counters { instance.counters }

    /// One notification this notifier finished with, for the admin page.
    public struct RecentNotification: Encodable, Sendable {
        public var time, kind, summary, outcome: String
        public var count: UInt64
    }

    /// The last ten, newest first.
    public var recentNotifications: [RecentNotification] { state.withLock { $0.recent } }

    private func remember(_ event: NotificationEvent, _ outcome: String) {
        let entry = RecentNotification(time: ISO8601DateFormatter().string(from: Date()), kind: event.kind,
                                       summary: event.pointer.pointee.summary.string, outcome: outcome, count: event.count)
        state.withLock { $0.recent = Array(([entry] + $0.recent).prefix(10)) }
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
        guard state.withLock({ state in defer { state.started = true }; return !state.started }) else { return }
        let thread = Thread { [self] in run() }
        thread.name = "notifier \(id)"
        thread.start()
    }

    public func enqueue(_ event: NotificationEvent) {
        let (capacity, counters) = (queueCapacity, self.counters)
        state.withLock(wake: .one) { state in
            guard !state.stopping else {
                counters.add("dropped", 1)
                return
            }
            if state.queue.count >= capacity {
                state.queue.removeFirst()
                counters.add("dropped", 1)
            }
            state.queue.append(event)
            counters.add("queued", 1)
        }
    }

    public var queueDepth: Int { state.withLock { $0.queue.count } }

    /// p50 and p99 of the delay from an event's first occurrence to its notify call, over the
    /// last 1024 calls; nil before the first.
    public var delayPercentiles: (p50: Double, p99: Double)? { state.withLock { $0.delays.percentiles } }

    /// Delivers what is queued until `deadline`, then destroys the instance.
    public func shutdown(deadline: ContinuousClock.Instant) {
        state.withLock(wake: .all) { state in
            state.stopping = true
            state.drainDeadline = deadline
        }
        _ = state.wait(until: deadline) { $0.queue.isEmpty && !$0.busy ? true : nil }
        let (left, stillBusy) = state.withLock(wake: .all) { state in
            defer { state.queue.removeAll() }
            return (state.queue.count, state.busy)
        }
        if left > 0 {
            counters.add("undelivered", Int64(left))
            logger.error("shutdown deadline passed with notifications still queued", metadata: ["undelivered": "\(left)"])
        }
        if !stillBusy {
            _ = instance.flush()
            instance.destroy()
        }
    }

    /// The next event to deliver; nil once stopping with the queue empty.
    private func next() -> NotificationEvent? {
        let next: NotificationEvent?? = state.wait { state in
            if !state.queue.isEmpty {
                state.busy = true
                return .some(state.queue.removeFirst())
            }
            return state.stopping ? .some(nil) : nil
        }
        return next ?? nil
    }

    private func run() {
        while let event = next() {
            deliver(event)
            state.withLock(wake: .all) { $0.busy = false }
        }
    }

    private func deliver(_ event: NotificationEvent) {
        state.withLock { $0.delays.add((ContinuousClock.now - event.firstSeen).milliseconds) }
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
                let (stopping, deadline) = state.withLock { ($0.stopping, $0.drainDeadline) }
                guard case .wait(let wait) = schedule.next(retryAfter: retryAfter, deadline: deadline) else {
                    counters.add("failed", 1)
                    remember(event, "failed: \(message)")
                    logger.error("notification not delivered; giving up", metadata: ["kind": "\(event.kind)", "error": "\(message)"])
                    return
                }
                counters.add("retried", 1)
                logger.warning("notification failed; retrying", metadata: ["in": "\(wait)", "error": "\(message)"])
                // A shutdown or reload arriving ends the wait at once: the next attempt may be
                // the last before its deadline.
                _ = state.wait(until: .now + wait) { $0.stopping != stopping ? true : nil }
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
