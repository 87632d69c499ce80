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
        let gate = TakeGate()
        let taken = (0..<3).compactMap { _ in queue.take(through: gate) }
        XCTAssertEqual(taken.map(\.spans), [1, 2, 4])
        XCTAssertEqual(gate.inHand, 3, "each batch is counted as it is handed out")
        gate.returned(3)
        XCTAssertEqual(gate.inHand, 0)
    }

    func testAGateClosedNowGetsNothingAndOneClosingLaterTakesUntilThen() throws {
        let queue = MemoryQueue(limits: QueueLimits(items: 10, bytes: 1 << 30))
        XCTAssertEqual(queue.offer(try batch(1), force: false), .queued)
        let closed = TakeGate()
        closed.close(at: .now)
        XCTAssertNil(queue.take(through: closed), "a closed gate gets nothing")
        XCTAssertEqual(closed.inHand, 0)
        XCTAssertEqual(queue.depth, 1, "and the batch stays queued")
        let draining = TakeGate()
        draining.close(at: .now + .seconds(60))
        XCTAssertEqual(queue.take(through: draining)?.spans, 1, "a gate closing later still takes")
        XCTAssertEqual(draining.inHand, 1)
    }

    func testATakeWithADeadlineOnAnEmptyQueueReturnsNothingOnceItPasses() throws {
        let queue = MemoryQueue(limits: QueueLimits(items: 10, bytes: 1 << 30))
        let gate = TakeGate()
        XCTAssertNil(queue.take(through: gate, until: .now + .milliseconds(20)))
        XCTAssertEqual(gate.inHand, 0)
    }

    func testClosingTheGateAndWakingTheQueueEndsAWaitingTake() throws {
        let queue = MemoryQueue(limits: QueueLimits(items: 10, bytes: 1 << 30))
        let gate = TakeGate()
        let ended = expectation(description: "take returned")
        Thread.detachNewThread {
            if queue.take(through: gate) == nil { ended.fulfill() }
        }
        Thread.sleep(forTimeInterval: 0.05)
        gate.close(at: .now)
        queue.wake()
        wait(for: [ended], timeout: 5)
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
            if queue.take(through: TakeGate()) != nil { got.fulfill() }
        }
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(queue.offer(try batch(1), force: false), .queued)
        wait(for: [got], timeout: 5)
    }
}
