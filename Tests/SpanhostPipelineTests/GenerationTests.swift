import Foundation
import Logging
@testable import SpanhostPipeline
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues
import XCTest

/// How a generation hands one receiver's batch to several pipelines, with the real
/// first-party plugins built by `make build`.
final class GenerationTests: XCTestCase, GenerationFixture {
    let tmp = NSTemporaryDirectory() + "spanhost-generation-tests-\(getpid())"

    // Each test starts from an empty directory: a pid can come again, and with it an old run's files.
    override func setUpWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func testOnlyAPipelineThatAloneSeesTheBatchMayChangeTheOriginal() {
        XCTAssertEqual(Generation.plan([]), [])
        XCTAssertEqual(Generation.plan([true]), [true])
        XCTAssertEqual(Generation.plan([false]), [true])
        // A pipeline without processors hands the original to exporters: every changing one copies.
        XCTAssertEqual(Generation.plan([false, true]), [true, false])
        XCTAssertEqual(Generation.plan([true, false]), [false, true])
        XCTAssertEqual(Generation.plan([true, false, true]), [false, true, false])
        // All change it: the last one may have the original, the others copy.
        XCTAssertEqual(Generation.plan([true, true, true]), [false, false, true])
        XCTAssertEqual(Generation.plan([false, false]), [true, true])
    }

    func testMergeLetsARefusalWinThenARejection() {
        let ok = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        let filtered = ConsumeOutcome.accepted(rejectedSpans: 3, message: "3 dropped")
        let refused = ConsumeOutcome.refused(retryAfterSeconds: 1, message: "full")
        let rejected = ConsumeOutcome.rejected(message: "bad")
        XCTAssertEqual(Generation.merge(ok, refused), refused)
        XCTAssertEqual(Generation.merge(rejected, refused), refused)
        XCTAssertEqual(Generation.merge(ok, rejected), rejected)
        XCTAssertEqual(Generation.merge(filtered, ok), filtered)
        XCTAssertEqual(Generation.merge(ok, filtered), filtered)
    }

    func testAReadOnlyProcessorSharesTheReceiversBatchAndAChangingOneGetsACopy() throws {
        // error_flow declares SPANHOST_PLUGIN_READONLY; attributes does not.
        let g = try generation("""
            receivers: {otlp: {}}
            processors: {error_flow: {}, attributes/mask: {actions: [{key: user.email, action: delete}]}}
            exporters: {file/flows: {path: TMP/flows.jsonl}, file/masked: {path: TMP/masked.jsonl}}
            service:
              pipelines:
                traces/flows: {receivers: [otlp], processors: [error_flow], exporters: [file/flows]}
                traces/masked: {receivers: [otlp], processors: [attributes/mask], exporters: [file/masked]}
            """)
        let changes = g.pipelines.map(\.changesBatches)
        XCTAssertEqual(changes, [false, true])
        XCTAssertEqual(Generation.plan(changes), [true, false], "the read-only pipeline takes the original, the other a copy")
        _ = g.shutdown(timeout: .seconds(5))
    }

    func testAMaskingPipelineNeverChangesTheBatchAnotherPipelineExports() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            processors: {attributes/mask: {actions: [{key: user.email, action: delete}]}}
            exporters: {file/raw: {path: TMP/raw.jsonl}, file/masked: {path: TMP/masked.jsonl}}
            service:
              pipelines:
                traces/raw: {receivers: [otlp], exporters: [file/raw]}
                traces/masked: {receivers: [otlp], processors: [attributes/mask], exporters: [file/masked]}
            """)
        // The masking pipeline comes last, where it used to be handed the original batch that
        // the raw pipeline's exporter already held.
        let batch = try spans(5)
        XCTAssertEqual(g.consume(batch, from: ComponentID(type: "otlp")), .accepted(rejectedSpans: 0, message: nil))
        // The batch the raw pipeline queued is the receiver's own: still unmasked.
        var emails = 0
        batch.forEachSpan { _, _, span in
            let list = span.pointee.attributes
            for i in 0..<list.count where list.items[i].key.string == "user.email" { emails += 1 }
        }
        XCTAssertEqual(emails, 5)
        let report = g.shutdown(timeout: .seconds(5))
        XCTAssertEqual(report.exporters["file/raw"]?.delivered, 5)
        XCTAssertEqual(report.exporters["file/masked"]?.delivered, 5)
        XCTAssertEqual(report.lostSpans, 0)
        let masked = try String(contentsOfFile: "\(tmp)/masked.jsonl", encoding: .utf8)
        let raw = try String(contentsOfFile: "\(tmp)/raw.jsonl", encoding: .utf8)
        XCTAssertFalse(masked.contains("user.email"))
        XCTAssertEqual(raw.components(separatedBy: "user.email").count - 1, 5)
    }

    func testAReceiverWithoutARouteIsAskedToComeBack() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {"null": {}}
            service: {pipelines: {traces: {receivers: [otlp], exporters: ["null"]}}}
            """)
        guard case .refused = g.consume(try spans(1), from: ComponentID(type: "zipkin")) else {
            return XCTFail("a receiver bound before its pipelines exist must get 503, not 400")
        }
        _ = g.shutdown(timeout: .seconds(1))
    }
}

extension GenerationTests {
    func testAFailedReloadLeavesASharedDiskQueueAsItWas() throws {
        let exporter = #"exporters: {"null": {sending_queue: {storage: TMP/queues, queue_size: QSIZE}}}"#
        let pipelines = #"service: {pipelines: {traces: {receivers: [otlp], PROCESSORS exporters: ["null"]}}}"#
        func yaml(_ size: Int, processors: String) -> String {
            ["receivers: {otlp: {}}", "processors: {attributes: {bogus_key: 1}}",
             exporter.replacingOccurrences(of: "QSIZE", with: "\(size)"),
             pipelines.replacingOccurrences(of: "PROCESSORS", with: processors)].joined(separator: "\n")
        }
        let running = try generation(yaml(50, processors: ""))
        let queue = try XCTUnwrap(running.exporters.first?.queue as? DiskQueue)
        XCTAssertEqual(queue.limits.items, 50)
        // The exporter changes (a smaller queue on the same directory), and a processor of the
        // same config is refused: the reload fails after the exporter was built.
        XCTAssertThrowsError(try generation(yaml(2, processors: "processors: [attributes],"), previous: running))
        XCTAssertEqual(queue.limits.items, 50, "a failed reload must not change the running queue")
        // A reload that commits applies the new limits to the shared queue.
        let next = try generation(yaml(2, processors: ""), previous: running)
        XCTAssertTrue((next.exporters.first?.queue as? DiskQueue) === queue)
        XCTAssertEqual(queue.limits.items, 2)
        _ = running.retire(keeping: next, deadline: .now + .seconds(1))
        _ = next.shutdown(timeout: .seconds(1))
    }
}

extension GenerationTests {
    /// A receiver's batches may run on the thread that read them only when every processor and
    /// exporter on their way declares it never blocks; the check is made in the generation the
    /// batch enters, so a reload to a blocking pipeline sends batches back to the pool.
    func testOnlyPipelinesThatNeverBlockRunOnTheCallersThread() throws {
        let g = try generation("""
            receivers: {otlp: {}, otlp/disk: {protocols: {http: {endpoint: "127.0.0.1:4319"}}},
                        otlp/file: {protocols: {http: {endpoint: "127.0.0.1:4320"}}}, otlp/tail: {protocols: {http: {endpoint: "127.0.0.1:4321"}}}}
            processors: {attributes: {actions: [{key: a, value: b, action: upsert}]}, tail_sampling: {policies: [{name: all, type: always_sample}]}}
            exporters: {"null": {}, null/disk: {sending_queue: {storage: TMP/q}}, file: {path: TMP/out.jsonl}}
            service:
              pipelines:
                traces: {receivers: [otlp], processors: [attributes], exporters: ["null"]}
                traces/disk: {receivers: [otlp/disk], processors: [attributes], exporters: [null/disk]}
                traces/file: {receivers: [otlp/file], processors: [attributes], exporters: [file]}
                traces/tail: {receivers: [otlp/tail], processors: [tail_sampling], exporters: ["null"]}
            """)
        // A memory queue takes a batch without waiting, whatever its exporter does later.
        XCTAssertTrue(g.neverBlocks(from: ComponentID(type: "otlp")))
        XCTAssertTrue(g.neverBlocks(from: ComponentID(type: "otlp", name: "file")))
        // A disk queue writes before it answers; tail_sampling does not declare the flag.
        XCTAssertFalse(g.neverBlocks(from: ComponentID(type: "otlp", name: "disk")))
        XCTAssertFalse(g.neverBlocks(from: ComponentID(type: "otlp", name: "tail")))

        // The placement policy: the event loop only for a small uncompressed body whose way never blocks.
        let current = CurrentGeneration(g)
        let otlp = ComponentID(type: "otlp")
        XCTAssertEqual(current.placement(from: otlp, bodyBytes: 1000, compressed: false), .eventLoop)
        XCTAssertEqual(current.placement(from: otlp, bodyBytes: 1000, compressed: true), .pool)
        XCTAssertEqual(current.placement(from: otlp, bodyBytes: CurrentGeneration.eventLoopBodyLimit + 1, compressed: false), .pool)
        XCTAssertEqual(current.placement(from: ComponentID(type: "otlp", name: "tail"), bodyBytes: 1000, compressed: false), .pool)
        XCTAssertEqual(current.consume(try spans(3), from: otlp, placement: .eventLoop), .accepted(rejectedSpans: 0, message: nil))
        XCTAssertNil(current.consume(try spans(3), from: ComponentID(type: "otlp", name: "tail"), placement: .eventLoop))

        let blocking = try generation("""
            receivers: {otlp: {}}
            processors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}
            exporters: {"null": {}}
            service: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: ["null"]}}}
            """)
        let old = current.swap(to: blocking)
        // A reload between the placement and the hand-over: the batch is not run on the loop.
        XCTAssertEqual(current.placement(from: otlp, bodyBytes: 1000, compressed: false), .pool)
        XCTAssertNil(current.consume(try spans(3), from: otlp, placement: .eventLoop))
        XCTAssertEqual(old.shutdown(timeout: .seconds(5)).exporters["null"]?.delivered, 3)
        _ = blocking.shutdown(timeout: .seconds(5))
    }

    /// An exporter that never blocks and has nothing queued is called by whoever hands it the
    /// batch: delivered before `consume` returns, with no worker woken. One that may block is
    /// always left to its queue's workers.
    func testAnIdleExporterThatNeverBlocksIsCalledWithoutAWorker() throws {
        let g = try generation("""
            receivers: {otlp: {}}
            exporters: {"null": {}, file: {path: TMP/out.jsonl}}
            service: {pipelines: {traces: {receivers: [otlp], exporters: ["null", file]}}}
            """)
        XCTAssertEqual(g.consume(try spans(4), from: ComponentID(type: "otlp")), .accepted(rejectedSpans: 0, message: nil))
        let null = try XCTUnwrap(g.exporters.first { $0.id.type == "null" })
        let file = try XCTUnwrap(g.exporters.first { $0.id.type == "file" })
        XCTAssertEqual(null.counters.snapshot["exported"], 4)
        XCTAssertNil(null.counters.snapshot["queued"])
        XCTAssertEqual(file.counters.snapshot["queued"], 4)
        let report = g.shutdown(timeout: .seconds(5))
        XCTAssertEqual(report.exporters["null"]?.delivered, 4)
        XCTAssertEqual(report.exporters["file"]?.delivered, 4)
    }
}
