@testable import SpanhostAlerts
import SpanhostModel
import XCTest

final class AlertsTests: XCTestCase {
    func testHistogramPercentilesStayWithinTheBucketPrecision() {
        var h = LatencyHistogram()
        for micros in 1...100_000 { h.record(micros: UInt64(micros)) }
        for p in [50.0, 95.0, 99.0] {
            let exact = p / 100 * 100_000
            let got = Double(h.value(atPercentile: p))
            XCTAssertGreaterThanOrEqual(got, exact * 0.999, "p\(p)")
            XCTAssertLessThanOrEqual(got, exact * 1.04, "p\(p)")
        }
        var other = LatencyHistogram()
        other.record(micros: 5_000_000_000)
        h.merge(other)
        XCTAssertEqual(h.count, 100_001)
        XCTAssertGreaterThanOrEqual(h.value(atPercentile: 100), 5_000_000_000)
    }

    func event(_ summary: String) -> NotificationEvent {
        NotificationEvent(kind: "error_span", severity: 2, source: "error_span", key: "k", summary: summary, attributes: [])!
    }

    func testABurstIsOneNotificationWithItsCountAndTheCooldownReportsTheRest() {
        var dedup = Deduplicator(groupWait: .seconds(1), cooldown: .seconds(60))
        let t0 = ContinuousClock.now
        var made = 0
        for _ in 0..<10_000 {
            let r = dedup.occur("a", now: t0) { made += 1; return event("first") }
            XCTAssertNil(r.send)
        }
        XCTAssertEqual(made, 1, "the event is built once per group")
        XCTAssertTrue(dedup.due(now: t0 + .milliseconds(999)).isEmpty)
        let burst = dedup.due(now: t0 + .seconds(1))
        XCTAssertEqual(burst.map(\.count), [10_000])
        XCTAssertEqual(burst.first?.pointer.pointee.summary.string, "first")
        for _ in 0..<3 { _ = dedup.occur("a", now: t0 + .seconds(2)) { event("again") } }
        XCTAssertTrue(dedup.due(now: t0 + .seconds(30)).isEmpty, "cooling down")
        XCTAssertEqual(dedup.due(now: t0 + .seconds(61)).map(\.count), [3])
        XCTAssertTrue(dedup.due(now: t0 + .seconds(122)).isEmpty)
        XCTAssertEqual(dedup.openKeys, 0, "a quiet key's group closes")
    }

    func testGroupWaitZeroSendsTheFirstAtOnceAndKeysAreBounded() {
        var dedup = Deduplicator(groupWait: .zero, cooldown: .seconds(10), maxKeys: 2)
        let now = ContinuousClock.now
        XCTAssertNotNil(dedup.occur("a", now: now) { event("a") }.send)
        XCTAssertNil(dedup.occur("a", now: now) { event("a") }.send)
        XCTAssertTrue(dedup.occur("b", now: now) { event("b") }.accepted)
        XCTAssertFalse(dedup.occur("c", now: now) { event("c") }.accepted)
    }
}
