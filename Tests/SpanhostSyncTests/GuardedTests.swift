import Foundation
import SpanhostSync
import XCTest

final class GuardedTests: XCTestCase {
    func testAWaitEndsWithTheChangeItWaitsFor() {
        let queue = Guarded([Int]())
        let taken = Guarded([Int]())
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            for _ in 0..<3 {
                let item = queue.wait { $0.isEmpty ? nil : $0.removeFirst() }!
                taken.withLock { $0.append(item) }
            }
            done.signal()
        }
        for i in 1...3 { queue.withLock(wake: .one) { $0.append(i) } }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(taken.withLock { $0 }, [1, 2, 3])
    }

    func testAWaitPastItsDeadlineIsNil() {
        let flag = Guarded(false)
        let started = ContinuousClock.now
        XCTAssertNil(flag.wait(until: .now + .milliseconds(100)) { $0 ? true : nil })
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(100))
    }

    func testARecheckSeesAConditionOutsideTheValue() {
        // Nothing changes the value: only the recheck notices the clock passing.
        let value = Guarded(0)
        let until = ContinuousClock.now + .milliseconds(150)
        let result = value.wait(recheck: .milliseconds(20)) { _ in ContinuousClock.now >= until ? "late enough" : nil }
        XCTAssertEqual(result, "late enough")
    }

    func testWakingAllEndsEveryWaiter() {
        let stop = Guarded(false)
        let ended = DispatchSemaphore(value: 0)
        for _ in 0..<3 {
            Thread.detachNewThread {
                _ = stop.wait { $0 ? true : nil }
                ended.signal()
            }
        }
        Thread.sleep(forTimeInterval: 0.05)
        stop.withLock(wake: .all) { $0 = true }
        for _ in 0..<3 { XCTAssertEqual(ended.wait(timeout: .now() + 10), .success) }
    }
}
