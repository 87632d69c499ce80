import Foundation
import Logging
import SpanhostConfig
import Synchronization

/// Health of one instance: every call in progress (each watched for a hang on its own, since a
/// concurrent plugin has several at once) and the circuit breaker.
final class CallGuard: Sendable {
    let policy: CallPolicy
    private struct Call {
        var hook: String
        var start: ContinuousClock.Instant
        var hung = false
    }
    private struct Health {
        var calls: [Int: Call] = [:]
        /// Calls in `calls` marked hung; most of the time zero, and then no call is looked at.
        var hungCalls = 0
        var nextToken = 0
        var consecutiveFailures = 0
        var openUntil: ContinuousClock.Instant?

        /// The oldest hung call, if any.
        var hung: Call? { hungCalls == 0 ? nil : calls.values.filter(\.hung).min { $0.start < $1.start } }
    }
    private let health = Mutex(Health())

    init(policy: CallPolicy) { self.policy = policy }

    /// Now plus the call timeout, as a Date for lock waits.
    func deadline() -> Date { Date(timeIntervalSinceNow: policy.timeout.seconds) }

    /// Why a call must not be made now, or nil.
    func refusal(now: ContinuousClock.Instant = .now) -> String? {
        health.withLock { health in
            if let hung = health.hung {
                return "unhealthy: a \(hung.hook) call has been running for \(Self.formatted(now - hung.start))"
            }
            if let openUntil = health.openUntil, now < openUntil {
                return "circuit open after \(health.consecutiveFailures) failures in a row; calls resume in \(Self.formatted(openUntil - now))"
            }
            return nil
        }
    }

    /// Starts watching one call; hand the token to `end`.
    func begin(_ hook: String) -> Int {
        health.withLock { health in
            health.nextToken += 1
            health.calls[health.nextToken] = Call(hook: hook, start: .now)
            return health.nextToken
        }
    }

    /// Ends a call. `recovered`: it had been reported hung and no other call is hung now.
    /// `opened`: this failure opened the circuit breaker.
    func end(_ token: Int, success: Bool?) -> (recovered: Bool, opened: Bool) {
        let policy = self.policy
        return health.withLock { health in
            let call = health.calls.removeValue(forKey: token)
            if call?.hung == true { health.hungCalls -= 1 }
            let recovered = call?.hung == true && health.hung == nil
            guard let success else { return (recovered, false) }
            if success {
                health.consecutiveFailures = 0
                health.openUntil = nil
                return (recovered, false)
            }
            health.consecutiveFailures += 1
            // Half-open after a cool-down: one more failure opens the breaker again.
            if health.consecutiveFailures >= policy.failureThreshold {
                health.openUntil = .now + policy.coolDown
                return (recovered, true)
            }
            return (recovered, false)
        }
    }

    /// Called by the watchdog: marks calls hung once they pass the timeout; returns their hooks.
    func checkHung(now: ContinuousClock.Instant) -> [String] {
        let timeout = policy.timeout
        return health.withLock { health in
            var newlyHung: [String] = []
            for (token, call) in health.calls where !call.hung && now - call.start > timeout {
                health.calls[token]?.hung = true
                health.hungCalls += 1
                newlyHung.append(call.hook)
            }
            return newlyHung
        }
    }

    var isWatching: Bool { health.withLock { !$0.calls.isEmpty } }

    var state: String {
        health.withLock { health in
            if health.hung != nil { return "unhealthy" }
            if let openUntil = health.openUntil, ContinuousClock.now < openUntil { return "circuit_open" }
            return "healthy"
        }
    }

    private static func formatted(_ d: Duration) -> String { String(format: "%.1fs", d.seconds) }
}

/// One thread that looks at every call in progress and reports the ones past their timeout.
final class Watchdog: Sendable {
    static let shared = Watchdog()
    private let watched = Mutex<[ObjectIdentifier: PluginInstance]>([:])

    private init() {
        let thread = Thread { [unowned self] in
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                let now = ContinuousClock.now
                for instance in watched.withLock({ Array($0.values) }) {
                    for hook in instance.guardState.checkHung(now: now) { instance.reportHung(hook) }
                }
                // Instances with no call in progress leave. A call begins, then sets the
                // instance's `watched` flag and calls `watch` if it was clear; so the flag is
                // cleared before looking again, and a call that began meanwhile keeps it.
                watched.withLock { watched in
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

    func watch(_ instance: PluginInstance) { watched.withLock { $0[ObjectIdentifier(instance)] = instance } }
}
