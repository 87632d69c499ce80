import Foundation
import CSpanhost
@testable import SpanhostAlerts
import SpanhostConfig
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

    /// A batch of `count` spans of `service`, `errors` of them with status ERROR, each lasting `ms`.
    func batch(_ service: String, count: Int, errors: Int = 0, ms: Int = 1) throws -> SpanBatch {
        let spans = (0..<count).map { i in
            #"{"traceId":"\#(String(format: "%032x", i + 1))","spanId":"\#(String(format: "%016x", i + 1))","name":"op","#
                + #""startTimeUnixNano":"1000000","endTimeUnixNano":"\#(1_000_000 + ms * 1_000_000)""#
                + (i < errors ? #","status":{"code":2}}"# : "}")
        }
        let json = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"\#(service)"}}]},"#
            + #""scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
        return try SpanBatch.decode(Array(json.utf8), encoding: .json)
    }

    final class Sink: @unchecked Sendable {
        let lock = NSLock()
        var events: [(kind: String, key: String)] = []
        func take() -> [String] { lock.withLock { defer { events = [] }; return events.map { "\($0.kind) \($0.key)" } } }
    }

    func engine(_ yaml: String, _ sink: Sink) throws -> RuleEngine {
        let settings = try YAMLLoader.load(yaml, environment: [:])
        let rules = try settings.mapEntries!.map { try RuleConfig(id: ComponentID(parsing: $0.key, path: "rules"), settings: $0.value) }
        return RuleEngine(pipeline: "traces", rules: rules) { event in
            sink.lock.withLock { sink.events.append((event.pointer.pointee.kind.string, event.pointer.pointee.key.string)) }
        }
    }

    /// `requests` traces of service "shop": a root SERVER span and an INTERNAL child each; the
    /// children of the first `failedCalls` traces fail, the roots of the first `failedRequests`.
    func requests(_ requests: Int, failedCalls: Int, failedRequests: Int) throws -> SpanBatch {
        var spans: [String] = []
        for i in 0..<requests {
            let trace = String(format: "%032x", i + 1)
            let error = #","status":{"code":2}"#
            spans.append(#"{"traceId":"\#(trace)","spanId":"\#(String(format: "%016x", 2 * i + 1))","name":"GET /order","kind":2,"#
                + #""startTimeUnixNano":"1000000","endTimeUnixNano":"2000000""# + (i < failedRequests ? error : "") + "}")
            spans.append(#"{"traceId":"\#(trace)","spanId":"\#(String(format: "%016x", 2 * i + 2))","#
                + #""parentSpanId":"\#(String(format: "%016x", 2 * i + 1))","name":"db","kind":1,"#
                + #""startTimeUnixNano":"1000000","endTimeUnixNano":"2000000""# + (i < failedCalls ? error : "") + "}")
        }
        let json = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"#
            + #""scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
        return try SpanBatch.decode(Array(json.utf8), encoding: .json)
    }

    func testErrorRatesCountRequestsByDefaultAndSpansOrTracesWhenAsked() throws {
        let t0 = ContinuousClock.now
        func fired(_ rule: String, _ batch: SpanBatch) throws -> [String] {
            let sink = Sink()
            let rules = try engine(rule, sink)
            rules.observe(batch, now: t0)
            rules.evaluate(now: t0 + .seconds(1))
            return sink.take()
        }
        // 20 requests; 2 made a failing call they recovered from: no request failed.
        let recovered = try requests(20, failedCalls: 2, failedRequests: 0)
        XCTAssertEqual(try fired("error_rate: {threshold: 0.04, min_count: 10}", recovered), [], "0 of 20 requests failed")
        XCTAssertEqual(try fired("error_rate: {threshold: 0.04, min_count: 10, per: span}", recovered), ["error_rate shop"], "2 of 40 spans")
        // 20 requests, 2 failed, each with its failing call: 10% of requests, as of traces.
        let failed = try requests(20, failedCalls: 2, failedRequests: 2)
        XCTAssertEqual(try fired("error_rate: {threshold: 0.09, min_count: 10}", failed), ["error_rate shop"])
        XCTAssertEqual(try fired("error_rate: {threshold: 0.09, min_count: 10, per: trace}", failed), ["error_rate shop"])
        XCTAssertEqual(try fired("error_rate: {threshold: 0.11, min_count: 10}", failed), [], "10% is under 11%")
        XCTAssertThrowsError(try engine("error_rate: {per: call}", Sink()))
    }

    func testSilenceNeverResolvesARateRuleAndNoDataFiresOnItThenResolvesWhenSpansReturn() throws {
        let sink = Sink()
        let rules = try engine("""
            error_rate: {threshold: 0.1, min_count: 10, window: 10s}
            no_data: {window: 10s, min_count: 5}
            no_data/billing: {window: 10s, services: [billing]}
            """, sink)
        let t0 = ContinuousClock.now
        rules.observe(try batch("checkout", count: 20, errors: 10), now: t0)
        rules.evaluate(now: t0 + .seconds(1))
        XCTAssertEqual(sink.take(), ["error_rate checkout"])
        // checkout goes silent: the window empties, and the rate rule says nothing (no "resolved").
        for s in stride(from: 5, through: 40, by: 5) { rules.evaluate(now: t0 + .seconds(s)) }
        XCTAssertEqual(Set(sink.take()), ["no_data checkout", "no_data billing"],
                       "the service seen then silent, and the listed one never seen, fire no_data; nothing resolves")
        // Spans come back, healthy: both rules resolve on that evidence.
        rules.observe(try batch("checkout", count: 20), now: t0 + .seconds(41))
        rules.observe(try batch("billing", count: 5), now: t0 + .seconds(41))
        rules.evaluate(now: t0 + .seconds(42))
        XCTAssertEqual(sink.take().sorted(), ["resolved billing", "resolved checkout", "resolved checkout"],
                       "error_rate and no_data each resolve checkout")
    }

    func testForAndAResolveThresholdStopALatencyRuleFromFlapping() throws {
        let sink = Sink()
        let rules = try engine("latency: {threshold: 100ms, resolve_threshold: 50ms, for: 3s, min_count: 5, window: 10s}", sink)
        let t0 = ContinuousClock.now
        // Slow for 2 s only: not long enough to fire.
        rules.observe(try batch("api", count: 10, ms: 200), now: t0)
        rules.evaluate(now: t0 + .seconds(2))
        rules.observe(try batch("api", count: 100, ms: 10), now: t0 + .milliseconds(2500))
        rules.evaluate(now: t0 + .seconds(3))
        XCTAssertEqual(sink.take(), [])
        // Slow and staying slow for 3 s: fires once.
        let t1 = t0 + .seconds(20)
        for s in 0...4 {
            rules.observe(try batch("api", count: 10, ms: 200), now: t1 + .seconds(s))
            rules.evaluate(now: t1 + .seconds(s))
        }
        XCTAssertEqual(sink.take(), ["latency api"])
        // p95 at 80 ms: under the threshold, above the resolve threshold: still firing, no flap.
        let t2 = t1 + .seconds(20)
        rules.observe(try batch("api", count: 50, ms: 80), now: t2)
        rules.evaluate(now: t2)
        XCTAssertEqual(sink.take(), [])
        rules.observe(try batch("api", count: 200, ms: 20), now: t2 + .seconds(11))
        rules.evaluate(now: t2 + .seconds(11))
        XCTAssertEqual(sink.take(), ["resolved api"])
    }

    func testACooldownReportCarriesTheLatestTraceRecentTracesAndItsOwnTimes() throws {
        var dedup = Deduplicator(groupWait: .seconds(1), cooldown: .seconds(60))
        let t0 = ContinuousClock.now
        let wall = Date(timeIntervalSince1970: 1_800_000_000)
        func trace(_ n: UInt8) -> [UInt8] { [UInt8](repeating: 0, count: 15) + [n] }
        let first = NotificationEvent(kind: "error_span", severity: 2, source: "error_span", key: "k", summary: "boom",
                                      attributes: [], traceID: trace(1), time: wall)!
        _ = dedup.occur("k", now: t0, traceID: trace(1), time: wall) { first }
        let opening = dedup.due(now: t0 + .seconds(1))
        XCTAssertEqual(opening.first?.pointer.pointee.trace_id.15, 1, "the first report is the first error")
        for n in 2...13 {
            _ = dedup.occur("k", now: t0 + .seconds(Int64(n)), traceID: trace(UInt8(n)), time: wall + Double(n)) { nil }
        }
        let report = try XCTUnwrap(dedup.due(now: t0 + .seconds(61)).first)
        XCTAssertEqual(report.count, 12)
        XCTAssertEqual(report.pointer.pointee.trace_id.15, 13, "the latest trace, not the first error's")
        XCTAssertEqual(report.pointer.pointee.time_unix_nano, 1_800_000_013 * 1_000_000_000)
        let json = report.json
        XCTAssertTrue(json.contains("\"first_seen\":\"2027-01-15T08:00:02.000Z\""), json)
        XCTAssertTrue(json.contains("\"last_seen\":\"2027-01-15T08:00:13.000Z\""), json)
        let recent = (13...13).map { String(format: "%032x", $0) } + (4...12).reversed().map { String(format: "%032x", $0) }
        XCTAssertTrue(json.contains("\"recent_trace_ids\":\"\(recent.joined(separator: ","))\""), json)
    }

    func testRepeatsGoOutWithinRepeatWaitAndEachReportDescribesItsOwnTrace() throws {
        // Three failures of one signature 10 s apart (orders 101, 102, 103), as a team saw them.
        var dedup = Deduplicator(groupWait: .seconds(1), cooldown: .seconds(60), repeatWait: .seconds(20))
        let t0 = ContinuousClock.now
        func trace(_ n: UInt8) -> [UInt8] { [UInt8](repeating: 0, count: 15) + [n] }
        func failure(_ order: Int, _ n: UInt8) -> NotificationEvent {
            NotificationEvent(kind: "error_flow", severity: 2, source: "error_flow", key: "shop checkout ValueError",
                              summary: "order \(order) failed", attributes: [("exception.message", .string("order \(order)"))],
                              traceID: trace(n))!
        }
        var sent: [(at: Int, event: NotificationEvent)] = []
        func tick(_ second: Int) { for e in dedup.due(now: t0 + .seconds(Int64(second))) { sent.append((second, e)) } }
        _ = dedup.occur("k", now: t0, traceID: trace(1)) { failure(101, 1) }
        for second in 1...9 { tick(second) }
        _ = dedup.occur("k", now: t0 + .seconds(10), traceID: trace(2)) { failure(102, 2) }
        for second in 10...19 { tick(second) }
        _ = dedup.occur("k", now: t0 + .seconds(20), traceID: trace(3)) { failure(103, 3) }
        for second in 20...70 { tick(second) }
        XCTAssertEqual(sent.map(\.at), [1, 30], "the new signature at once, its repeats 20 s after the first repeat")
        let repeats = sent[1].event
        XCTAssertEqual(repeats.count, 2)
        XCTAssertEqual(repeats.pointer.pointee.summary.string, "order 103 failed", "the text of the latest repeat")
        XCTAssertEqual(repeats.pointer.pointee.trace_id.15, 3, "and that repeat's own trace")
        XCTAssertTrue(repeats.json.contains("\"exception.message\":\"order 103\""), repeats.json)
        XCTAssertTrue(repeats.json.contains(String(format: "%032x", 3) + "," + String(format: "%032x", 2)), "both traces listed")
        XCTAssertFalse(repeats.json.contains("order 101"), "nothing of the failure reported before")
    }

    func testTheErrorSignatureIsConfigurable() throws {
        let settings = try YAMLLoader.load("error_span: {group_wait: 0s, signature: [service]}", environment: [:])
        let rules = try settings.mapEntries!.map { try RuleConfig(id: ComponentID(parsing: $0.key, path: "rules"), settings: $0.value) }
        XCTAssertEqual(rules[0].signature, ["service"])
        XCTAssertEqual(rules[0].repeatWait, .seconds(20))
        let sink = Sink()
        let engine = RuleEngine(pipeline: "traces", rules: rules) { event in
            sink.lock.withLock { sink.events.append((event.pointer.pointee.kind.string, event.pointer.pointee.key.string)) }
        }
        // Five error spans named "op" and, by the default signature, another error: one signature here.
        engine.observe(try batch("checkout", count: 5, errors: 5))
        XCTAssertEqual(sink.take().count, 1, "one notification for the service")
        XCTAssertThrowsError(try RuleConfig(id: ComponentID(type: "error_span"), settings: try YAMLLoader.load("signature: []", environment: [:])))
    }

    func testErrorSpansOfATraceAreFoldedIntoItsErrorFlowEventAndUnclaimedOnesStillGoOut() throws {
        let sink = Sink()
        let settings = try YAMLLoader.load("error_span: {group_wait: 0s, fold_wait: 5s}", environment: [:])
        let rules = try settings.mapEntries!.map { try RuleConfig(id: ComponentID(parsing: $0.key, path: "rules"), settings: $0.value) }
        let counted = NSLock()
        nonisolated(unsafe) var errorSpans: [Int64] = []
        let engine = RuleEngine(pipeline: "traces", rules: rules, errorFlowInPipeline: true) { event in
            sink.lock.withLock { sink.events.append((event.pointer.pointee.kind.string, event.pointer.pointee.key.string)) }
            for (key, value) in AttributesOf(event) where key == "error_spans" { counted.withLock { errorSpans.append(value) } }
        }
        let t0 = ContinuousClock.now
        // Five error spans of trace 1 (one failing request crossing services), one of trace 2.
        engine.observe(try batch("checkout", count: 5, errors: 5), now: t0)
        engine.evaluate(now: t0 + .seconds(1))
        XCTAssertEqual(sink.take(), [], "held for the trace's error_flow event")
        let trace = [UInt8](repeating: 0, count: 15) + [1]
        let flow = NotificationEvent(kind: "error_flow", severity: 2, source: "error_flow", key: "checkout", summary: "flow",
                                     attributes: [], traceID: trace)!
        engine.raised(flow, standsForTrace: true)
        engine.evaluate(now: t0 + .seconds(2))
        engine.evaluate(now: t0 + .seconds(3))
        XCTAssertEqual(sink.take(), ["error_flow checkout"], "one notification for the failing trace")
        XCTAssertEqual(counted.withLock { errorSpans }, [1], "the batch's spans 2...5 are other traces")
        // Spans of traces no error_flow event claimed go out once fold_wait has passed.
        engine.evaluate(now: t0 + .seconds(6))
        XCTAssertEqual(sink.take(), ["error_span checkout op "], "the unclaimed traces, deduplicated into one")
        XCTAssertEqual(engine.counters["error_span.folded"], 1)
        XCTAssertEqual(engine.counters["error_span.unfolded"], 4)
    }
}

/// (key, int value) pairs of an event's int attributes.
func AttributesOf(_ event: NotificationEvent) -> [(String, Int64)] {
    let list = event.pointer.pointee.attributes
    return (0..<list.count).compactMap { i in
        let kv = list.items[i]
        return kv.value.type == UInt32(SPANHOST_VALUE_INT) ? (kv.key.string, kv.value.as.int_value) : nil
    }
}
