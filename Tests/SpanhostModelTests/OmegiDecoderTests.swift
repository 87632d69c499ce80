import CSpanhost
import Foundation
import SpanhostModel
import XCTest

/// The Omegi decoder against messages the Python agent really published (Tests/fixtures/omegi).
final class OmegiDecoderTests: XCTestCase {
    struct Span {
        var traceID, spanID, parentID, name: String
        var kind, status: UInt32
        var start, end: UInt64
        var attributes: [String: String]
        var derived: Bool
        var exception: [String: String]?
        var steps: [String]
        var service: String
    }

    static func fixture(_ name: String) throws -> [UInt8] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        return Array(try Data(contentsOf: dir.appendingPathComponent("fixtures/omegi/\(name)")))
    }

    static func decode(_ bytes: [UInt8], offset: Int32 = 0) throws -> [Span] {
        let batch = try bytes.withUnsafeBytes { try SpanBatch.decode($0, format: .omegiJSON(utcOffsetSeconds: offset), gzip: false, limit: 1 << 20) }
        var out: [Span] = []
        batch.forEachSpan { rs, _, s in
            func hex<T>(_ v: T) -> String { withUnsafeBytes(of: v) { $0.map { String(format: "%02x", $0) }.joined() } }
            var attributes: [String: String] = [:]
            var derived = false
            for i in 0..<s.pointee.attributes.count {
                let kv = s.pointee.attributes.items[i]
                if kv.value.type == UInt32(SPANHOST_VALUE_STRING) { attributes[kv.key.string] = kv.value.as.string_value.string }
                if kv.key.string == "omegi.trace_id_derived" { derived = kv.value.as.bool_value == 1 }
            }
            var exception: [String: String]?
            var steps: [String] = []
            if s.pointee.events_count > 0, let e = s.pointee.events[0] {
                XCTAssertEqual(e.pointee.name.string, "exception")
                exception = [:]
                for i in 0..<e.pointee.attributes.count {
                    let kv = e.pointee.attributes.items[i]
                    if kv.value.type == UInt32(SPANHOST_VALUE_STRING) { exception![kv.key.string] = kv.value.as.string_value.string }
                    if kv.value.type == UInt32(SPANHOST_VALUE_ARRAY) {
                        let a = kv.value.as.array_value
                        steps = (0..<a.count).map { a.items[$0].as.string_value.string }
                    }
                }
            }
            let resource = rs.pointee.resource.pointee.attributes
            let service = (0..<resource.count).first { resource.items[$0].key.string == "service.name" }
                .map { resource.items[$0].value.as.string_value.string } ?? ""
            out.append(Span(traceID: hex(s.pointee.trace_id), spanID: hex(s.pointee.span_id), parentID: hex(s.pointee.parent_span_id),
                            name: s.pointee.name.string, kind: s.pointee.kind, status: s.pointee.status_code,
                            start: s.pointee.start_time_unix_nano, end: s.pointee.end_time_unix_nano,
                            attributes: attributes, derived: derived, exception: exception, steps: steps, service: service))
        }
        return out
    }

    /// 2026-11-22 01:30:28.374 UTC in nanoseconds.
    static let t374: UInt64 = 1_795_311_028_374_000_000

    func testErrorMessageBecomesASpanTreeWithTheFailingPathMarked() throws {
        let spans = try Self.decode(try Self.fixture("error.pretty.json"))
        XCTAssertEqual(spans.map(\.name), ["service.order_service.validate_qty", "service.order_service.place_order", "/error"])
        XCTAssertTrue(spans.allSatisfy { $0.traceID == "581e822d42a627ae17b9404a247ddec3" && !$0.derived && $0.service == "demo-flask" })
        let entry = spans[2]
        XCTAssertEqual(entry.kind, UInt32(SPANHOST_SPAN_KIND_SERVER))
        XCTAssertEqual(entry.parentID, "0000000000000000")
        XCTAssertEqual(spans[0].parentID, spans[1].spanID)
        XCTAssertEqual(spans[1].parentID, entry.spanID)
        XCTAssertEqual(entry.start, Self.t374)
        XCTAssertEqual(entry.end, Self.t374 + 5_000_000)
        XCTAssertEqual(entry.attributes["http.route"], "/error")
        XCTAssertEqual(entry.attributes["omegi.message"], "error")
        // Every span on the failing path is ERROR; the entry span and step.1's span carry the exception.
        XCTAssertEqual(spans.map(\.status), [2, 2, 2])
        for failing in [spans[0], entry] {
            XCTAssertEqual(failing.exception?["exception.type"], "ValueError")
            XCTAssertEqual(failing.exception?["exception.message"], "qty must be positive, got -1")
            XCTAssertTrue(failing.exception?["exception.stacktrace"]?.hasSuffix("ValueError: qty must be positive, got -1\n") ?? false)
            XCTAssertEqual(failing.steps.count, 10)
            XCTAssertEqual(failing.steps.first, "tmp.omegi-app.service.order_service.validate_qty")
        }
        XCTAssertNil(spans[1].exception)
    }

    func testMixedBatchGivesEachRequestItsOwnTraceAndTheErrorToTheLastOnesTree() throws {
        let spans = try Self.decode(try Self.fixture("error_mixed_batch_run2.json"))
        XCTAssertEqual(spans.count, 7)
        let ok = spans.filter { ["5c3cfed605d1b2b6", "c8fd493a0c0babbe", "a560085be4842068", "cee5c62badb8d836"].contains($0.spanID) }
        let failed = spans.filter { ["72b15a4c8e7d7d02", "cf137fda5dad4b57", "5c69e2255b8417ec"].contains($0.spanID) }
        XCTAssertEqual(ok.count, 4)
        XCTAssertEqual(failed.count, 3)
        // spans[0] belongs to the /ok request: its tree keeps the message's trace id.
        XCTAssertTrue(ok.allSatisfy { $0.traceID == "2ddab54e050f10963435daec6beb0a88" && !$0.derived && $0.status == 0 })
        XCTAssertTrue(ok.allSatisfy { $0.exception == nil })
        // The /error request gets one derived id of its own, and the error.
        XCTAssertEqual(Set(failed.map(\.traceID)).count, 1)
        XCTAssertNotEqual(failed[0].traceID, ok[0].traceID)
        XCTAssertTrue(failed.allSatisfy { $0.derived && $0.status == UInt32(SPANHOST_STATUS_ERROR) })
        XCTAssertEqual(failed.first { $0.name == "/error" }?.exception?["exception.type"], "ValueError")
        XCTAssertEqual(failed.first { $0.name.hasSuffix("validate_qty") }?.exception?["exception.type"], "ValueError")
        XCTAssertEqual(try Self.decode(try Self.fixture("error_mixed_batch_run2.json")).map(\.traceID), spans.map(\.traceID),
                       "derived ids are deterministic")
    }

    func testFlowMessageIsOneSpanAndTheZoneOffsetApplies() throws {
        let utc = try Self.decode(try Self.fixture("flow.pretty.json"))
        XCTAssertEqual(utc.count, 1)
        XCTAssertEqual(utc[0].name, "omegi flow")
        XCTAssertEqual(utc[0].traceID, "0def0320f9d43e768ebd6c41ab9b23ea")
        // An id of its own (the real span keeps 0d01...); the message's spanId is kept.
        XCTAssertNotEqual(utc[0].spanID, "0d0135487ad6763e")
        XCTAssertEqual(utc[0].attributes["omegi.span_id"], "0d0135487ad6763e")
        XCTAssertEqual(try Self.decode(try Self.fixture("flow.pretty.json"))[0].spanID, utc[0].spanID, "derived ids are deterministic")
        XCTAssertEqual(utc[0].attributes["omegi.message"], "flow")
        XCTAssertEqual(utc[0].end - utc[0].start, 4_000_000)
        let seoul = try Self.decode(try Self.fixture("flow.pretty.json"), offset: 9 * 3600)
        XCTAssertEqual(utc[0].start - seoul[0].start, 9 * 3600 * 1_000_000_000)
    }

    func testJavaStyleFlatStepsAndTolerantValues() throws {
        let message = """
            {"tracer":"omegi-tracer-java","traceId":"0102030405060708090a0b0c0d0e0f10","token":"t","serviceName":"orders",
             "error":{"exception.type":"java.lang.IllegalStateException","exception.message":"no stock",
                      "exception.flow":{"step.2":"com.shop.Api.order","step.1":"com.shop.Stock.take"}},
             "spans":[{"name":"Stock.take","spanId":"00000000000000b2","parentSpanId":"00000000000000b1","kind":"INTERNAL",
                       "spanEnterTime":"2024-05-20T10:00:00.1","spanExitTime":"2024-05-20T10:00:00.25","attributes":{"n":42,"ok":true}},
                      {"name":"POST /order","spanId":"00000000000000b1","parentSpanId":"00000000000000a1","kind":"SERVER",
                       "spanEnterTime":"2024-05-20 10:00:00.000","spanExitTime":"2024-05-20 10:00:00.300","attributes":null}]}
            """
        let spans = try Self.decode(Array(message.utf8))
        XCTAssertEqual(spans.map(\.status), [2, 2])
        XCTAssertEqual(spans[0].steps, ["com.shop.Stock.take", "com.shop.Api.order"])
        XCTAssertEqual(spans[0].attributes["n"], "42")
        XCTAssertEqual(spans[0].attributes["ok"], "true")
        XCTAssertEqual(spans[0].end - spans[0].start, 150_000_000)
        XCTAssertEqual(spans[1].parentID, "00000000000000a1", "the caller's span id is kept as the parent")
    }

    func testBadMessagesFailWithAMessageAndEveryTruncationFailsCleanly() throws {
        let cases: [(String, String)] = [
            ("[]", "expected a JSON object"),
            (#"{"serviceName":"a","spans":[]}"#, "needs traceId"),
            (#"{"traceId":"0102030405060708090a0b0c0d0e0f10","spans":[]}"#, "needs serviceName"),
            (#"{"traceId":"0102","serviceName":"a"}"#, "traceId must be 32 hex digits"),
            (#"{"traceId":"0102030405060708090a0b0c0d0e0f10","serviceName":"a"}"#, "needs spans (error) or spanId (flow)"),
            (#"{"traceId":"0102030405060708090a0b0c0d0e0f10","serviceName":"a","spans":[{"spanId":"0000000000000001","spanEnterTime":"yesterday"}]}"#,
             "times must look like"),
            (#"{"traceId":"0102030405060708090a0b0c0d0e0f10","serviceName":"a","spans":[{"name":"x"}]}"#, "needs spanId"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Self.decode(Array(text.utf8)), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)")
            }
        }
        let sample = try Self.fixture("error_mixed_batch_run2.json")
        for length in stride(from: 0, to: sample.count - 1, by: 7) {
            XCTAssertThrowsError(try Self.decode(Array(sample.prefix(length))))
        }
    }
}
