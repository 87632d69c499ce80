import SpanhostConfig
@testable import SpanhostPluginHost
import XCTest

/// The health of one instance: each call watched for a hang on its own, and the circuit breaker.
final class CallGuardTests: XCTestCase {
    private func policy(timeout: Duration = .seconds(10), failures: Int = 3, coolDown: Duration = .seconds(30)) -> CallPolicy {
        var policy = CallPolicy()
        policy.timeout = timeout
        policy.failureThreshold = failures
        policy.coolDown = coolDown
        return policy
    }

    func testACallPastItsTimeoutIsHungUntilItReturns() {
        let guardState = CallGuard(policy: policy(timeout: .milliseconds(100)))
        let start = ContinuousClock.now
        let token = guardState.begin("export")
        XCTAssertEqual(guardState.checkHung(now: start + .milliseconds(50)), [], "not past its timeout yet")
        XCTAssertEqual(guardState.checkHung(now: start + .seconds(1)), ["export"])
        XCTAssertEqual(guardState.checkHung(now: start + .seconds(2)), [], "reported once")
        XCTAssertEqual(guardState.state, "unhealthy")
        XCTAssertTrue(guardState.refusal()?.hasPrefix("unhealthy: a export call has been running for") ?? false)
        let end = guardState.end(token, success: true)
        XCTAssertTrue(end.recovered)
        XCTAssertEqual(guardState.state, "healthy")
        XCTAssertNil(guardState.refusal())
    }

    func testOneHungCallAmongConcurrentOnesKeepsTheInstanceUnhealthyUntilItEnds() {
        let guardState = CallGuard(policy: policy(timeout: .milliseconds(100)))
        let start = ContinuousClock.now
        let hung = guardState.begin("export")
        _ = guardState.checkHung(now: start + .seconds(1))
        let quick = guardState.begin("export")
        XCTAssertFalse(guardState.end(quick, success: true).recovered, "a quick call ending is not a recovery")
        XCTAssertEqual(guardState.state, "unhealthy")
        XCTAssertTrue(guardState.end(hung, success: true).recovered)
        XCTAssertFalse(guardState.isWatching)
    }

    func testTheBreakerOpensAfterTheThresholdOfFailuresInARowAndASuccessClosesIt() {
        let guardState = CallGuard(policy: policy(failures: 3, coolDown: .seconds(30)))
        for _ in 0..<2 { XCTAssertFalse(guardState.end(guardState.begin("export"), success: false).opened) }
        XCTAssertNil(guardState.refusal(), "two failures do not open it")
        XCTAssertTrue(guardState.end(guardState.begin("export"), success: false).opened)
        XCTAssertEqual(guardState.state, "circuit_open")
        XCTAssertTrue(guardState.refusal()?.hasPrefix("circuit open after 3 failures in a row") ?? false)
        XCTAssertNil(guardState.refusal(now: .now + .seconds(31)), "half-open once the cool-down is over")
        _ = guardState.end(guardState.begin("export"), success: true)
        XCTAssertEqual(guardState.state, "healthy")
        XCTAssertFalse(guardState.end(guardState.begin("export"), success: false).opened, "the count starts again after a success")
    }

    func testACallWithoutAVerdictLeavesTheBreakerAlone() {
        let guardState = CallGuard(policy: policy(failures: 1))
        XCTAssertEqual(guardState.end(guardState.begin("flush"), success: nil).opened, false)
        XCTAssertEqual(guardState.state, "healthy")
    }
}
