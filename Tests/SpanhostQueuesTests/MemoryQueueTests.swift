import Foundation
@testable import SpanhostQueues
import SpanhostModel
import XCTest

final class MemoryQueueTests: XCTestCase {
    func batch(_ spans: Int) throws -> SpanBatch {
        let list = (0..<spans).map { #"{"traceId":"\#(String(format: "%032x", $0 + 1))","spanId":"\#(String(format: "%016x", $0 + 1))","name":"op"}"# }
        return try SpanBatch.decode(Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[\#(list.joined(separator: ","))]}]}]}"#.utf8),
                                    encoding: .json)
    }

    func testItemsLeaveInOrderAndAFullQueueRefusesUnlessForced() throws {
        let queue = MemoryQueue(limits: QueueLimits(items: 2, bytes: 1 << 30))
        XCTAssertEqual(queue.offer(try batch(1), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(2), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(3), force: false), .full)
        XCTAssertEqual(queue.offer(try batch(4), force: true), .queued, "a shutdown's flush is always taken")
        var claims = 0
        let taken = (0..<3).compactMap { _ in queue.take(while: { true }, claim: { claims += 1 }) }
        XCTAssertEqual(taken.map(\.spans), [1, 2, 4])
        XCTAssertEqual(claims, 3, "each batch is claimed as it is handed out")
        XCTAssertNil(queue.take(while: { false }, claim: { claims += 1 }), "an inactive taker gets nothing")
    }

    func testTheByteLimitRefusesAndWhatIsLeftAtShutdownIsCountedAsLost() throws {
        let one = try batch(10)
        let queue = MemoryQueue(limits: QueueLimits(items: 100, bytes: one.arenaBytes * 2))
        XCTAssertEqual(queue.offer(one, force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(10), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(10), force: false), .full, "over the bytes limit")
        XCTAssertEqual(queue.settle(), QueueSettlement(lostSpans: 20, keptBatches: 0, keptSpans: 0))
        XCTAssertEqual(queue.settle(), .none, "settled once")
    }

    func testATakerWaitingOnAnEmptyQueueWakesForAnOffer() throws {
        let queue = MemoryQueue(limits: QueueLimits(items: 10, bytes: 1 << 30))
        let got = expectation(description: "taken")
        Thread.detachNewThread {
            if queue.take(while: { true }, claim: {}) != nil { got.fulfill() }
        }
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(queue.offer(try batch(1), force: false), .queued)
        wait(for: [got], timeout: 5)
    }
}
