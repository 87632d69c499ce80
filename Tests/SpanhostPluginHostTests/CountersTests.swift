import Foundation
@testable import SpanhostPluginHost
import SpanhostConfig
import XCTest

final class CountersTests: XCTestCase {
    func testAddsByHandleFromManyThreadsSumExactly() {
        let counters = Counters()
        let sent = counters.handle("sent")!
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<10_000 { counters.add(sent, 1) }
            counters.add("by_name{status=\"200\"}", 2)
        }
        XCTAssertEqual(counters.snapshot["sent"], 80_000)
        XCTAssertEqual(counters.snapshot["by_name{status=\"200\"}"], 16)
        XCTAssertEqual(counters.handle("sent"), sent, "a name declared twice is one series")
    }

    func testAPluginsHandleIsCheckedAndTheSeriesAreBounded() {
        let counters = Counters()
        XCTAssertNil(counters.handle(id: 0))
        XCTAssertNil(counters.handle(id: 1), "never handed out")
        let first = counters.handle("a")!
        XCTAssertEqual(counters.handle(id: first.id), first)
        XCTAssertNil(counters.handle(id: first.id + 1))
        for i in 1..<Counters.maxSeries { XCTAssertNotNil(counters.handle("s\(i)")) }
        XCTAssertNil(counters.handle("one_too_many"))
        counters.add("one_too_many", 5)
        XCTAssertEqual(counters.snapshot["series_over_limit"], 1)
        XCTAssertNil(counters.snapshot["one_too_many"])
    }

    func testASchemaDeclaringAHostKeyIsRefused() {
        func schema(_ path: String) -> ConfigSchema {
            ConfigSchema(keys: [.init(path: path, type: .int, required: false, defaultValue: nil, doc: "")])
        }
        XCTAssertThrowsError(try schema("sending_queue.queue_size").refuseHostKeys(HostKeys.exporter)) { error in
            XCTAssertTrue("\(error)".contains("'sending_queue' is a host key"), "\(error)")
        }
        XCTAssertThrowsError(try schema("spanhost_anything").refuseHostKeys(HostKeys.processor), "the prefix for later host keys")
        XCTAssertNoThrow(try schema("sending_queue").refuseHostKeys(HostKeys.processor), "processors have no queue")
        XCTAssertNoThrow(try schema("topic").refuseHostKeys(HostKeys.exporter))
    }
}
