import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import CSpanhost
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostModel
import SpanhostReceivers
import Synchronization
import XCTest

/// A consumer that answers as told and records where each batch ran.
final class RecordingConsumer: BatchConsumer {
    struct Seen: Sendable {
        var spans: Int
        var placement: BatchPlacement
        var onEventLoop: Bool
    }
    let placementAnswer: BatchPlacement
    /// What `consume` answers; nil on the event loop stands for a reload in between.
    let outcome: @Sendable (BatchPlacement) -> ConsumeOutcome?
    private let seen = Mutex<[Seen]>([])

    /// Remove the first span from the batch before answering, as a processor that drops it does.
    let dropFirstSpan: Bool

    init(placement: BatchPlacement, dropFirstSpan: Bool = false,
         outcome: @escaping @Sendable (BatchPlacement) -> ConsumeOutcome? = { _ in .accepted(rejectedSpans: 0, message: nil) }) {
        self.placementAnswer = placement
        self.dropFirstSpan = dropFirstSpan
        self.outcome = outcome
    }

    var batches: [Seen] { seen.withLock { $0 } }

    func placement(from receiver: ComponentID, bodyBytes: Int, compressed: Bool) -> BatchPlacement { placementAnswer }

    func consume(_ batch: SpanBatch, from receiver: ComponentID, placement: BatchPlacement) -> ConsumeOutcome? {
        let result = outcome(placement)
        if result != nil, dropFirstSpan, let scope = batch.pointer.pointee.resource_spans[0]?.pointee.scope_spans[0] {
            scope.pointee.spans[0] = scope.pointee.spans[scope.pointee.spans_count - 1]
            scope.pointee.spans_count -= 1
        }
        let onLoop = MultiThreadedEventLoopGroup.currentEventLoop != nil
        if result != nil { seen.withLock { $0.append(Seen(spans: batch.spanCount, placement: placement, onEventLoop: onLoop)) } }
        return result
    }
}

final class HTTPSpanReceiverTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var pool: NIOThreadPool!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
    }

    override func tearDown() {
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    private static let otlpJSON = Data("""
        {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},
         "scopeSpans":[{"spans":[
           {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"one","startTimeUnixNano":"1","endTimeUnixNano":"2"},
           {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060709","name":"two","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}
        """.utf8)

    private func serve(_ wire: any SpanWire, consumer: any BatchConsumer, accepting: Bool = true,
                       timeout: Duration = .seconds(5)) async throws -> (HTTPServer, ReceiverCounters) {
        let counters = ReceiverCounters()
        let flag = AcceptingFlag()
        flag.value = accepting
        let receiver = HTTPSpanReceiver(id: ComponentID(type: "otlp"), wire: wire, endpoint: Endpoint(host: "127.0.0.1", port: 0),
                                        maxBodyBytes: 1 << 20, requestTimeout: timeout, connections: HTTPConnectionSettings(),
                                        counters: counters, security: .none, admission: Admission(accepting: flag, memoryLimit: nil),
                                        consumer: consumer, pool: pool)
        let server = try await HTTPServer.start(.tcp(host: "127.0.0.1", port: 0), service: receiver, group: group)
        return (server, counters)
    }

    private func post(_ server: HTTPServer, path: String, contentType: String?, body: Data) async throws -> (Int, [String: String], Data) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(server.localPort)\(path)")!)
        request.httpMethod = "POST"
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        request.httpBody = body
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
        return (http.statusCode, headers, data)
    }

    func testASmallRequestRunsOnTheEventLoopWhenTheConsumerSaysSo() async throws {
        let consumer = RecordingConsumer(placement: .eventLoop)
        let (server, counters) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer)
        let (status, headers, _) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 200)
        XCTAssertEqual(headers["content-type"], "application/json")
        XCTAssertEqual(consumer.batches.map(\.spans), [2])
        XCTAssertEqual(consumer.batches.first?.placement, .eventLoop)
        XCTAssertEqual(consumer.batches.first?.onEventLoop, true)
        XCTAssertEqual(counters.snapshot["accepted_spans"], 2)
    }

    func testAPoolPlacementRunsOffTheEventLoop() async throws {
        let consumer = RecordingConsumer(placement: .pool)
        let (server, _) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer)
        let (status, _, _) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 200)
        XCTAssertEqual(consumer.batches.first?.placement, .pool)
        XCTAssertEqual(consumer.batches.first?.onEventLoop, false)
    }

    func testABatchTheLoopMayNoLongerRunGoesToThePool() async throws {
        // The consumer said event loop, then (a reload) declines it there: the batch still runs, once, on the pool.
        let consumer = RecordingConsumer(placement: .eventLoop) { placement in
            placement == .eventLoop ? nil : .accepted(rejectedSpans: 0, message: nil)
        }
        let (server, _) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer)
        let (status, _, _) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 200)
        XCTAssertEqual(consumer.batches.count, 1)
        XCTAssertEqual(consumer.batches.first?.placement, .pool)
        XCTAssertEqual(consumer.batches.first?.onEventLoop, false)
    }

    func testRefusedSpansAreA503WithTheRetryAfterThePipelinesAskedForInTheRequestsEncoding() async throws {
        let consumer = RecordingConsumer(placement: .pool) { _ in .refused(retryAfterSeconds: 7, message: "queue full") }
        let (server, counters) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer)
        let (status, headers, body) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 503)
        XCTAssertEqual(headers["retry-after"], "7")
        XCTAssertEqual(headers["content-type"], "application/json")
        let rpcStatus = try JSONSerialization.jsonObject(with: body) as? [String: Any]
        XCTAssertEqual(rpcStatus?["code"] as? Int, 14)
        XCTAssertEqual(rpcStatus?["message"] as? String, "queue full")
        XCTAssertEqual(counters.snapshot["refused_requests"], 1)
    }

    func testPartiallyRejectedSpansAreCountedAsDropped() async throws {
        // As a filter does: the dropped span leaves the batch in place before the answer is made.
        let consumer = RecordingConsumer(placement: .pool, dropFirstSpan: true) { _ in .accepted(rejectedSpans: 1, message: "filtered") }
        let (server, counters) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer)
        let (status, _, body) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 200)
        let answer = try JSONSerialization.jsonObject(with: body) as? [String: Any]
        let partial = answer?["partialSuccess"] as? [String: Any]
        XCTAssertEqual("\(partial?["rejectedSpans"] ?? "")", "1")
        XCTAssertEqual(counters.snapshot["accepted_spans"], 1)
        XCTAssertEqual(counters.snapshot["dropped_spans"], 1)
    }

    func testBadBodiesAreA400AndNeverReachTheConsumer() async throws {
        let consumer = RecordingConsumer(placement: .eventLoop)
        let (server, counters) = try await serve(SpanPostWire.zipkin, consumer: consumer)
        let (status, _, body) = try await post(server, path: "/api/v2/spans", contentType: "application/json", body: Data("[{\"traceId\": 5}]".utf8))
        await server.close()
        XCTAssertEqual(status, 400)
        XCTAssertFalse(body.isEmpty, "the answer says what is wrong")
        XCTAssertTrue(consumer.batches.isEmpty)
        XCTAssertEqual(counters.snapshot["rejected_requests"], 1)
    }

    func testAnUnknownMediaTypeIsRejectedAndAWrongPathIsNot() async throws {
        let consumer = RecordingConsumer(placement: .pool)
        let (server, counters) = try await serve(SpanPostWire.zipkin, consumer: consumer)
        let (unsupported, _, _) = try await post(server, path: "/api/v2/spans", contentType: "text/plain", body: Data("x".utf8))
        let (missing, _, _) = try await post(server, path: "/api/v9/spans", contentType: "application/json", body: Data("[]".utf8))
        await server.close()
        XCTAssertEqual(unsupported, 415)
        XCTAssertEqual(missing, 404)
        XCTAssertEqual(counters.snapshot["rejected_requests"], 1)
        XCTAssertTrue(consumer.batches.isEmpty)
    }

    func testAZipkinRequestTakenIsA202() async throws {
        let consumer = RecordingConsumer(placement: .pool)
        let (server, _) = try await serve(SpanPostWire.zipkin, consumer: consumer)
        let span = #"[{"traceId":"0102030405060708090a0b0c0d0e0f10","id":"0102030405060708","name":"get","localEndpoint":{"serviceName":"z"}}]"#
        let (status, _, _) = try await post(server, path: "/api/v2/spans", contentType: "application/json", body: Data(span.utf8))
        await server.close()
        XCTAssertEqual(status, 202)
        XCTAssertEqual(consumer.batches.map(\.spans), [1])
    }

    func testNothingIsTakenOnceShutdownBegan() async throws {
        // Refused on the head, by the server asking the receiver's admission, before any body is read.
        let consumer = RecordingConsumer(placement: .eventLoop)
        let (server, _) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer, accepting: false)
        let (status, headers, body) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        await server.close()
        XCTAssertEqual(status, 503)
        XCTAssertNotNil(headers["retry-after"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["code"] as? Int, 14)
        XCTAssertTrue(consumer.batches.isEmpty)
    }

    func testAPipelineThatTakesTooLongIsAnsweredWithA503() async throws {
        let consumer = RecordingConsumer(placement: .pool) { _ in
            Thread.sleep(forTimeInterval: 1)
            return .accepted(rejectedSpans: 0, message: nil)
        }
        let (server, counters) = try await serve(OTLPWire(tracesPath: "/v1/traces"), consumer: consumer, timeout: .milliseconds(200))
        let (status, _, _) = try await post(server, path: "/v1/traces", contentType: "application/json", body: Self.otlpJSON)
        XCTAssertEqual(status, 503)
        XCTAssertEqual(counters.snapshot["refused_requests"], 1)
        await server.close()
    }
}
