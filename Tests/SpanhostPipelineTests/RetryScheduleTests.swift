import SpanhostConfig
import XCTest

@testable import SpanhostPipeline

/// retry_on_failure as the Collector reads it: exponential backoff by `multiplier` with jitter of
/// ±`randomization_factor` (the OTLP specification asks for jitter), both configurable.
final class RetryScheduleTests: XCTestCase {
    private func policy(_ yaml: String) throws -> RetryPolicy {
        try RetryPolicy(settings: YAMLLoader.load(yaml, environment: [:]), path: "exporters.x")
    }

    func testTheDefaultsAreTheCollectorsWithJitter() throws {
        let p = try policy("{}")
        XCTAssertEqual(p.randomizationFactor, 0.5)
        XCTAssertEqual(p.multiplier, 1.5)
        var waits: [Duration] = []
        for _ in 0..<50 {
            var schedule = RetrySchedule(p)
            guard case .wait(let first) = schedule.next(retryAfter: nil, deadline: nil) else { return XCTFail("no first wait") }
            waits.append(first)
            XCTAssert(first >= .milliseconds(2500) && first <= .milliseconds(7500), "\(first) is not within 5 s ± 50%")
        }
        XCTAssertGreaterThan(Set(waits).count, 10, "the waits are not randomized")
    }

    func testTheIntervalGrowsByTheMultiplierUpToTheMaximum() throws {
        let p = try policy("retry_on_failure: {initial_interval: 1s, max_interval: 5s, randomization_factor: 0, multiplier: 2}")
        var schedule = RetrySchedule(p)
        var waits: [Duration] = []
        for _ in 0..<5 {
            guard case .wait(let w) = schedule.next(retryAfter: nil, deadline: nil) else { return XCTFail("exhausted") }
            waits.append(w)
        }
        XCTAssertEqual(waits, [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5)])
    }

    func testOutOfRangeSettingsAreRefused() throws {
        XCTAssertThrowsError(try policy("retry_on_failure: {randomization_factor: 1.5}")) {
            XCTAssert("\($0)".contains("exporters.x.retry_on_failure.randomization_factor"), "\($0)")
        }
        XCTAssertThrowsError(try policy("retry_on_failure: {multiplier: 0.5}")) {
            XCTAssert("\($0)".contains("exporters.x.retry_on_failure.multiplier"), "\($0)")
        }
        XCTAssertThrowsError(try policy("retry_on_failure: {multiplier: fast}"))
    }
}
