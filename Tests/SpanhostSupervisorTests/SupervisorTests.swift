import Foundation
@testable import SpanhostSupervisor
import XCTest

/// The supervisor's decisions: when to start the next worker, when a plugin image is
/// quarantined, and what a crash record says.
final class SupervisorTests: XCTestCase {
    func testQuickDeathsDoubleTheWaitUpTo30sAndAWorkerThatRanAMinuteStartsItOver() {
        var backoff = RestartBackoff()
        let waits = (0..<11).map { _ in backoff.delay(afterRunning: .seconds(2)) }
        XCTAssertEqual(waits, [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                               .milliseconds(3200), .milliseconds(6400), .milliseconds(12800), .milliseconds(25600),
                               .seconds(30), .seconds(30)])
        XCTAssertEqual(backoff.delay(afterRunning: .seconds(61)), .milliseconds(100))
        XCTAssertEqual(backoff.delay(afterRunning: .seconds(1)), .milliseconds(200))
    }

    func testAnImageIsQuarantinedAtItsThirdCrashWithinTheWindowAndCountedApartFromOthers() {
        var ledger = CrashLedger(limit: 3, window: .seconds(600))
        let start = ContinuousClock.now
        XCTAssertNil(ledger.note("aaa", at: start))
        XCTAssertNil(ledger.note("bbb", at: start + .seconds(1)), "another image has a count of its own")
        XCTAssertNil(ledger.note("aaa", at: start + .seconds(2)))
        XCTAssertEqual(ledger.note("aaa", at: start + .seconds(3)), 3)
        XCTAssertNil(ledger.note("aaa", at: start + .seconds(4)), "counting starts again once quarantined")
    }

    func testCrashesFurtherApartThanTheWindowNeverAddUp() {
        var ledger = CrashLedger(limit: 3, window: .seconds(600))
        let start = ContinuousClock.now
        for n in 0..<5 { XCTAssertNil(ledger.note("aaa", at: start + .seconds(400 * n))) }
        XCTAssertEqual(ledger.note("aaa", at: start + .seconds(1700)), 3, "three within 600 s: 1200, 1600, 1700")
        ledger.forgetAll()
        XCTAssertNil(ledger.note("aaa", at: start + .seconds(1701)))
    }

    func testTheLastWholeCrashRecordIsRead() throws {
        let text = """
            signal=11
            plugin=old
            end
            signal=6
            plugin=crashy
            version=1.0.0
            file=/p/crashy.so
            sha256=abc
            component=crashy/a
            hook=export
            record=42
            hook_started=1
            end
            signal=9
            plugin=cut-off
            """
        let record = try XCTUnwrap(CrashRecord.parse(text + "\n"))
        XCTAssertEqual(record.signal, 6)
        XCTAssertEqual(record.plugin, "crashy")
        XCTAssertEqual(record.component, "crashy/a")
        XCTAssertEqual(record.record, 42)
        XCTAssertEqual(record.summary, "plugin crashy 1.0.0 (/p/crashy.so, sha256 abc) in export of crashy/a: signal 6 (SIGABRT), "
                       + "exporting queue record 42")
        XCTAssertNil(CrashRecord.parse("plugin=x\n"), "no signal, no record")
    }
}
