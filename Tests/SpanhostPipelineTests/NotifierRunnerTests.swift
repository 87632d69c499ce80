import Foundation
@testable import SpanhostPipeline
import SpanhostConfig
import SpanhostModel
import XCTest

/// A notifier's runner retrying an event while spanhost shuts down.
final class NotifierRunnerTests: XCTestCase, GenerationFixture {
    let tmp = NSTemporaryDirectory() + "spanhost-notifier-tests-\(getpid())"

    override func setUpWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func testRetriesDuringAShutdownKeepTheirBackoffUntilTheDeadline() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {"null": {}}
            notifiers:
              webhook:
                endpoint: "http://127.0.0.1:1/hook"
                retry_on_failure: {initial_interval: 200ms, max_interval: 200ms, randomization_factor: 0}
                circuit_breaker: {failure_threshold: 100000}  # every attempt reaches the socket
            service: {pipelines: {traces: {receivers: [otlp], exporters: ["null"], notifiers: [webhook]}}}
            """)
        let notifier = try XCTUnwrap(g.notifiers.first)
        notifier.enqueue(try XCTUnwrap(NotificationEvent(kind: "error_span", severity: 2, source: "error_span", key: "k",
                                                         summary: "boom", attributes: [])))
        let retrying = ContinuousClock.now + .seconds(10)
        while notifier.counters.snapshot["retried"] == nil && ContinuousClock.now < retrying { Thread.sleep(forTimeInterval: 0.01) }
        let before = try XCTUnwrap(notifier.counters.snapshot["retried"], "a refused connection is retried")
        _ = g.shutdown(timeout: .seconds(1))
        // One attempt when the shutdown ends the wait, then one every 200 ms until the deadline:
        // a handful, not an attempt after another for the whole second.
        XCTAssertLessThanOrEqual((notifier.counters.snapshot["retried"] ?? 0) - before, 7)
        XCTAssertEqual(notifier.counters.snapshot["failed"], 1, "given up on before the deadline, and counted")
    }
}
