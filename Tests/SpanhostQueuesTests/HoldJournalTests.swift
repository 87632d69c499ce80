import CSpanhost
import Foundation
@testable import SpanhostQueues
import SpanhostModel
import XCTest

final class HoldJournalTests: XCTestCase {
    var storage: String!

    override func setUp() {
        storage = NSTemporaryDirectory() + "spanhost-hold-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: storage) }

    /// Spans 1...n of trace `trace`.
    func batch(trace: Int, spans: ClosedRange<Int>) throws -> SpanBatch {
        let items = spans.map { """
            {"traceId":"\(String(format: "%032x", trace))","spanId":"\(String(format: "%016x", $0))","name":"op-\($0)"}
            """ }
        let json = #"{"resourceSpans":[{"scopeSpans":[{"spans":["# + items.joined(separator: ",") + "]}]}]}"
        return try SpanBatch.decode(Array(json.utf8), encoding: .json)
    }

    func journal(_ processor: String = "p") -> HoldJournal {
        HoldJournal(storage: storage, pipeline: "traces", processor: processor, fsync: .always)
    }

    /// What an earlier process would have left: the journal's directory under another name.
    func leftOver(_ journal: HoldJournal, as name: String) throws -> String {
        let copy = (journal.directory as NSString).deletingLastPathComponent + "/" + name
        try FileManager.default.copyItem(atPath: journal.directory, toPath: copy)
        return copy
    }

    func traceID(_ n: Int) -> HoldJournal.TraceID {
        var bytes = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: UInt64(n).bigEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        return bytes.withUnsafeBufferPointer { HoldJournal.TraceID($0.baseAddress!) }
    }

    func testHeldSpansStayOnDiskUntilEmittedOrReleasedAndALaterProcessFindsTheRest() throws {
        let held = journal()
        let a = try batch(trace: 1, spans: 1...3), b = try batch(trace: 2, spans: 4...5), c = try batch(trace: 3, spans: 6...6)
        for x in [a, b, c] { try held.hold(x, keys: HoldJournal.keys(of: x)) }
        XCTAssertEqual(held.heldSpans, 6)
        held.emitted(HoldJournal.keys(of: a))   // trace 1 went on
        held.release(traceID(2))                // trace 2 was dropped on purpose
        XCTAssertEqual(held.heldSpans, 1)

        // A process killed now leaves trace 3 only.
        _ = try leftOver(held, as: "earlier-1")
        let next = journal()
        let leftovers = next.leftovers()
        XCTAssertEqual(leftovers.map { ($0.directory as NSString).lastPathComponent }, ["earlier-1"])
        XCTAssertEqual(try leftovers[0].open(), 1)
        let back = try leftovers[0].batch(0)
        XCTAssertEqual(HoldJournal.keys(of: back), HoldJournal.keys(of: c))
        leftovers[0].done(0)
        leftovers[0].remove()
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftovers[0].directory))
        XCTAssertTrue(next.leftovers().isEmpty, "leftovers are handed out once per process")
    }

    func testASpanEmittedBeforeItsHoldWasRecordedIsNotHeldAgain() throws {
        let held = journal()
        let warmUp = try batch(trace: 9, spans: 90...90)
        try held.hold(warmUp, keys: HoldJournal.keys(of: warmUp))
        held.emitted(HoldJournal.keys(of: warmUp))
        // The processor emitted these from another thread before process returned.
        let raced = try batch(trace: 1, spans: 1...2)
        held.emitted(HoldJournal.keys(of: raced))
        try held.hold(raced, keys: HoldJournal.keys(of: raced))
        XCTAssertEqual(held.heldSpans, 0)
        _ = try leftOver(held, as: "earlier-1")
        XCTAssertEqual(try journal().leftovers().first?.open(), 0)
    }

    func testATraceReleasedDuringTheProcessCallIsNotHeld() throws {
        let held = journal()
        let dropped = try batch(trace: 1, spans: 1...3), kept = try batch(trace: 2, spans: 4...4)
        held.beginProcess()
        held.release(traceID(1))  // the processor dropped it inside process, then consumed the batch
        try held.hold(dropped, keys: HoldJournal.keys(of: dropped))
        held.endProcess()
        XCTAssertEqual(held.heldSpans, 0)
        held.beginProcess()
        try held.hold(kept, keys: HoldJournal.keys(of: kept))
        held.endProcess()
        // A trace released earlier is held again when the processor takes its spans later.
        held.beginProcess()
        let again = try batch(trace: 1, spans: 5...5)
        try held.hold(again, keys: HoldJournal.keys(of: again))
        held.endProcess()
        XCTAssertEqual(held.heldSpans, 2)
    }

    func testTheSameSpanHeldTwiceLeavesOnceForEachEmit() throws {
        let held = journal()
        let first = try batch(trace: 1, spans: 1...1), retried = try batch(trace: 1, spans: 1...1)
        try held.hold(first, keys: HoldJournal.keys(of: first))
        try held.hold(retried, keys: HoldJournal.keys(of: retried))
        held.emitted(HoldJournal.keys(of: first))
        XCTAssertEqual(held.heldSpans, 1)
        held.emitted(HoldJournal.keys(of: retried))
        XCTAssertEqual(held.heldSpans, 0)
    }

    func testDiscardRemovesTheJournalAndNothingIsWrittenBeforeTheFirstHold() throws {
        let held = journal()
        held.emitted(HoldJournal.keys(of: try batch(trace: 1, spans: 1...1)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: held.directory))
        let x = try batch(trace: 1, spans: 1...4)
        try held.hold(x, keys: HoldJournal.keys(of: x))
        XCTAssertTrue(FileManager.default.fileExists(atPath: held.directory))
        held.discard()
        XCTAssertFalse(FileManager.default.fileExists(atPath: held.directory))
    }

    func testOnlyTheTakenSpansAreCopied() throws {
        let x = try batch(trace: 1, spans: 1...4)
        var n = 0
        x.forEachSpan { _, _, span in
            if n % 2 == 0 { span.pointee.host_flags |= UInt32(SPANHOST_SPAN_TAKEN) }
            n += 1
        }
        let taken = try XCTUnwrap(x.copy(flagged: UInt32(SPANHOST_SPAN_TAKEN)))
        XCTAssertEqual(HoldJournal.keys(of: taken), HoldJournal.keys(of: x, flagged: UInt32(SPANHOST_SPAN_TAKEN)))
        XCTAssertEqual(HoldJournal.keys(of: taken).map(\.span), [1, 3].map { UInt64($0).bigEndian })
    }
}
