import Foundation

/// A value shared between threads: read and changed under a lock, with a condition a thread can
/// wait on until the value is what it needs. `Mutex` from `Synchronization` covers the cases
/// with no waiting; this is for queues and workers that sleep until there is work.
///
/// Bodies get the value `inout` for the length of the call only, and the wait happens between
/// calls of `ready`, never inside one, so no access to the value spans a wait.
public final class Guarded<Value>: @unchecked Sendable {
    // Unchecked because NSCondition guards `value` by convention, not by type: every access
    // below is between `condition.lock()` and `condition.unlock()`. The value comes in as
    // `sending`, so no caller keeps a reference into it. Unlike `Mutex`, bodies are not checked
    // for storing a caller's non-Sendable objects into the value (a buffer being written, say):
    // the rule for users is that they do not, and the types kept in values here are structs of
    // values, Sendable objects, and objects only ever reached through the value.
    private let condition = NSCondition()
    private var value: Value

    public init(_ value: consuming sending Value) { self.value = value }

    /// Who to wake after a change: nobody, one waiter (one new item), or all of them (stopping,
    /// or a change more than one waiter may be looking for).
    public enum Wake: Sendable { case none, one, all }

    /// Runs `body` with the lock held, then wakes waiters as asked.
    public func withLock<R, E: Error>(wake: Wake = .none, _ body: (inout Value) throws(E) -> R) throws(E) -> R {
        condition.lock()
        defer {
            switch wake {
            case .none: break
            case .one: condition.signal()
            case .all: condition.broadcast()
            }
            condition.unlock()
        }
        return try body(&value)
    }

    /// Waits until `ready` returns a result, and returns it; nil when `deadline` passes first.
    /// `ready` runs with the lock held: at once, then after each wake-up and each `recheck`
    /// (for conditions outside the value, such as a clock or another object's state).
    public func wait<R, E: Error>(until deadline: ContinuousClock.Instant? = nil, recheck: Duration? = nil,
                                  _ ready: (inout Value) throws(E) -> R?) throws(E) -> R? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let result = try ready(&value) { return result }
            let now = ContinuousClock.now
            var until = recheck.map { now + $0 }
            if let deadline {
                if now >= deadline { return nil }
                until = until.map { min($0, deadline) } ?? deadline
            }
            if let until {
                let left = (until - now).components
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(left.seconds) + Double(left.attoseconds) / 1e18))
            } else {
                condition.wait()
            }
        }
    }
}
