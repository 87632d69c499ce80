import Foundation
import Logging

/// Limits on calls into one plugin instance.
public struct CallPolicy: Sendable, Equatable {
    /// A call running longer than this is reported as hung and the instance marked unhealthy;
    /// further calls fail fast until it returns.
    public var timeout: Duration = .seconds(10)
    /// This many failed calls in a row open the circuit breaker...
    public var failureThreshold = 5
    /// ...and no call is made for this long.
    public var coolDown: Duration = .seconds(30)

    public init() {}
}

/// Health of one instance: the call in progress (watched for hangs) and the circuit breaker.
final class CallGuard: @unchecked Sendable {
    let policy: CallPolicy
    private let lock = NSLock()
    private var callStart: ContinuousClock.Instant?
    private var callHook = ""
    private(set) var hungSince: ContinuousClock.Instant?
    private var consecutiveFailures = 0
    private var openUntil: ContinuousClock.Instant?

    init(policy: CallPolicy) { self.policy = policy }

    /// Now plus the call timeout, as a Date for lock waits.
    func deadline() -> Date {
        let t = policy.timeout.components
        return Date(timeIntervalSinceNow: Double(t.seconds) + Double(t.attoseconds) / 1e18)
    }

    /// Why a call must not be made now, or nil.
    func refusal(now: ContinuousClock.Instant = .now) -> String? {
        lock.withLock {
            if let hungSince {
                return "unhealthy: a \(callHook) call has been running for \(formatted(now - hungSince + policy.timeout))"
            }
            if let openUntil, now < openUntil {
                return "circuit open after \(consecutiveFailures) failures in a row; calls resume in \(formatted(openUntil - now))"
            }
            return nil
        }
    }

    func begin(_ hook: String) {
        lock.withLock {
            callStart = .now
            callHook = hook
        }
    }

    /// Ends a call. Returns true if the instance had been reported hung and has now recovered.
    func end(success: Bool?) -> (recovered: Bool, opened: Bool) {
        lock.withLock {
            let recovered = hungSince != nil
            callStart = nil
            hungSince = nil
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

    /// Called by the watchdog: marks the call hung once it passes the timeout.
    func checkHung(now: ContinuousClock.Instant) -> String? {
        lock.withLock {
            guard hungSince == nil, let callStart, now - callStart > policy.timeout else { return nil }
            hungSince = now
            return callHook
        }
    }

    var state: String {
        lock.withLock {
            if hungSince != nil { return "unhealthy" }
            if let openUntil, ContinuousClock.now < openUntil { return "circuit_open" }
            return "healthy"
        }
    }

    private func formatted(_ d: Duration) -> String {
        String(format: "%.1fs", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
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
                    if let hook = instance.guardState.checkHung(now: now) { instance.reportHung(hook) }
                }
            }
        }
        thread.name = "plugin watchdog"
        thread.start()
    }

    func watch(_ instance: PluginInstance) { lock.withLock { watched[ObjectIdentifier(instance)] = instance } }
    func unwatch(_ instance: PluginInstance) { lock.withLock { watched[ObjectIdentifier(instance)] = nil } }
}
