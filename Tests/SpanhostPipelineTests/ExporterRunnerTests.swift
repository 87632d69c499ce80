import Foundation
@testable import SpanhostPipeline
import SpanhostConfig
import SpanhostModel
import XCTest

/// What an exporter's runner does with what it queued when it shuts down: drains a memory
/// queue until the deadline, keeps a disk queue's batches, and counts every span either way.
final class ExporterRunnerTests: XCTestCase, GenerationFixture {
    let tmp = NSTemporaryDirectory() + "spanhost-runner-tests-\(getpid())"

    override func setUpWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    /// A backend that refuses connections: every export is retryable, so batches stay queued.
    let unreachable = "otlphttp: {endpoint: \"http://127.0.0.1:1\", timeout: 1s, retry_on_failure: {initial_interval: 10ms, max_interval: 10ms}"

    func testAMemoryQueueIsDrainedAtShutdownByEveryConsumer() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {file: {path: TMP/out.jsonl, sending_queue: {num_consumers: 3, queue_size: 1000}}}
            service: {pipelines: {traces: {receivers: [otlp], exporters: [file]}}}
            """)
        for _ in 0..<60 { XCTAssertEqual(g.consume(try spans(2), from: ComponentID(type: "otlp")), .accepted(rejectedSpans: 0, message: nil)) }
        let tally = try XCTUnwrap(g.shutdown(timeout: .seconds(20)).exporters["file"])
        XCTAssertEqual(tally.accepted, 120)
        XCTAssertEqual(tally.delivered, 120, "what was queued is exported before the deadline")
        XCTAssertEqual(tally.lost, 0)
        let lines = try String(contentsOfFile: "\(tmp)/out.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 60)
    }

    func testAMemoryQueueThatCannotDrainCountsWhatIsLeftAsLost() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {\(unreachable), sending_queue: {queue_size: 1000}}}
            service: {pipelines: {traces: {receivers: [otlp], exporters: [otlphttp]}}}
            """)
        for _ in 0..<5 { XCTAssertEqual(g.consume(try spans(3), from: ComponentID(type: "otlp")), .accepted(rejectedSpans: 0, message: nil)) }
        let tally = try XCTUnwrap(g.shutdown(timeout: .milliseconds(300)).exporters["otlphttp"])
        XCTAssertEqual(tally.accepted, 15)
        XCTAssertEqual(tally.delivered, 0)
        XCTAssertEqual(tally.lost, 15, "queued or in hand at the deadline, every span is counted")
    }

    func testADiskQueueStopsTakingAtShutdownAndKeepsItsBatches() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {\(unreachable), sending_queue: {storage: TMP/queue}}}
            service: {pipelines: {traces: {receivers: [otlp], exporters: [otlphttp]}}}
            """)
        for _ in 0..<5 { XCTAssertEqual(g.consume(try spans(3), from: ComponentID(type: "otlp")), .accepted(rejectedSpans: 0, message: nil)) }
        let exporter = try XCTUnwrap(g.exporters.first { $0.id.type == "otlphttp" })
        // Shut down while the batch in hand waits out the open circuit breaker's second.
        let breakerOpen = ContinuousClock.now + .seconds(10)
        while exporter.counters.snapshot["unavailable"] == nil && ContinuousClock.now < breakerOpen { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertNotNil(exporter.counters.snapshot["unavailable"], "the circuit breaker opens after five failures")
        let retriedBefore = exporter.counters.snapshot["retried"] ?? 0
        let tally = try XCTUnwrap(g.shutdown(timeout: .seconds(10)).exporters["otlphttp"])
        XCTAssertEqual(tally.accepted, 15)
        XCTAssertEqual(tally.keptOnDisk, 15, "nothing is retried past shutdown: it waits on disk for the next start")
        XCTAssertEqual(tally.keptBatches, 5)
        XCTAssertEqual(tally.lost + tally.delivered + tally.deadLettered, 0)
        // The batch in hand goes back to disk at its next failure: no retry loop until the deadline.
        XCTAssertLessThanOrEqual((exporter.counters.snapshot["retried"] ?? 0) - retriedBefore, 3)
    }
}
