import Foundation
import Logging
import SpanhostConfig

/// Health of one instance: every call in progress (each watched for a hang on its own, since a
/// concurrent plugin has several at once) and the circuit breaker.
final class CallGuard: @unchecked Sendable {
    let policy: CallPolicy
    private let lock = NSLock()
    private struct Call {
        var hook: String
        var start: ContinuousClock.Instant
        var hung = false
    }
    private var calls: [Int: Call] = [:]
    /// Calls in `calls` marked hung; most of the time zero, and then no call is looked at.
    private var hungCalls = 0
    private var nextToken = 0
    private var consecutiveFailures = 0
    private var openUntil: ContinuousClock.Instant?

    init(policy: CallPolicy) { self.policy = policy }

    /// Now plus the call timeout, as a Date for lock waits.
    func deadline() -> Date { Date(timeIntervalSinceNow: policy.timeout.seconds) }

    /// The oldest hung call, if any.
    private var hung: Call? { hungCalls == 0 ? nil : calls.values.filter(\.hung).min { $0.start < $1.start } }

    /// Why a call must not be made now, or nil.
    func refusal(now: ContinuousClock.Instant = .now) -> String? {
        lock.withLock {
            if let hung {
                return "unhealthy: a \(hung.hook) call has been running for \(formatted(now - hung.start))"
            }
            if let openUntil, now < openUntil {
                return "circuit open after \(consecutiveFailures) failures in a row; calls resume in \(formatted(openUntil - now))"
            }
            return nil
        }
    }

    /// Starts watching one call; hand the token to `end`.
    func begin(_ hook: String) -> Int {
        lock.withLock {
            nextToken += 1
            calls[nextToken] = Call(hook: hook, start: .now)
            return nextToken
        }
    }

    /// Ends a call. `recovered`: it had been reported hung and no other call is hung now.
    /// `opened`: this failure opened the circuit breaker.
    func end(_ token: Int, success: Bool?) -> (recovered: Bool, opened: Bool) {
        lock.withLock {
            let call = calls.removeValue(forKey: token)
            if call?.hung == true { hungCalls -= 1 }
            let recovered = call?.hung == true && hung == nil
            guard let success else { return (recovered, false) }
            if success {
                consecutiveFailures = 0
                openUntil = nil
                return (recovered, false)
            }
            consecutiveFailures += 1
            // Half-open after a cool-down: one more failure opens the breaker again.
            if consecutiveFailures >= policy.failureThreshold {
                openUntil = .now + policy.coolDown
                return (recovered, true)
            }
            return (recovered, false)
        }
    }

    /// Called by the watchdog: marks calls hung once they pass the timeout; returns their hooks.
    func checkHung(now: ContinuousClock.Instant) -> [String] {
        lock.withLock {
            var newlyHung: [String] = []
            for (token, call) in calls where !call.hung && now - call.start > policy.timeout {
                calls[token]?.hung = true
                hungCalls += 1
                newlyHung.append(call.hook)
            }
            return newlyHung
        }
    }

    var isWatching: Bool { lock.withLock { !calls.isEmpty } }

    var state: String {
        lock.withLock {
            if hung != nil { return "unhealthy" }
            if let openUntil, ContinuousClock.now < openUntil { return "circuit_open" }
            return "healthy"
        }
    }

    private func formatted(_ d: Duration) -> String { String(format: "%.1fs", d.seconds) }
}

/// One thread that looks at every call in progress and reports the ones past their timeout.
final class Watchdog: @unchecked Sendable {
    static let shared = Watchdog()
    private let lock = NSLock()
    private var watched: [ObjectIdentifier: PluginInstance] = [:]

    private init() {
        let thread = Thread { [unowned self] in
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                let now = ContinuousClock.now
                for instance in lock.withLock({ Array(watched.values) }) {
                    for hook in instance.guardState.checkHung(now: now) { instance.reportHung(hook) }
                }
                // Instances with no call in progress leave. A call begins, then sets the
                // instance's `watched` flag and calls `watch` if it was clear; so the flag is
                // cleared before looking again, and a call that began meanwhile keeps it.
                lock.withLock {
                    watched = watched.filter { _, instance in
                        if instance.guardState.isWatching { return true }
                        instance.watched.store(false, ordering: .sequentiallyConsistent)
                        guard instance.guardState.isWatching else { return false }
                        instance.watched.store(true, ordering: .sequentiallyConsistent)
                        return true
                    }
                }
            }
        }
        thread.name = "plugin watchdog"
        thread.start()
    }

    func watch(_ instance: PluginInstance) { lock.withLock { watched[ObjectIdentifier(instance)] = instance } }
}
