import SpanhostConfig
@testable import SpanhostConnectors
import SpanhostModel
import XCTest

/// The servicegraph and spanmetrics connectors on batches decoded from OTLP JSON.
final class ConnectorTests: XCTestCase {
    private func span(_ service: String, id: String, parent: String = "", kind: Int, status: Int = 0, trace: String = "0102030405060708090a0b0c0d0e0f10",
                      name: String = "op", ms: Int = 10) -> String {
        """
        {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"\(service)"}}]},
         "scopeSpans":[{"spans":[{"traceId":"\(trace)","spanId":"\(id)","parentSpanId":"\(parent)","name":"\(name)","kind":\(kind),
           "startTimeUnixNano":"1000000000","endTimeUnixNano":"\(1_000_000_000 + ms * 1_000_000)","status":{"code":\(status)}}]}]}
        """
    }

    private func batch(_ resourceSpans: [String]) throws -> SpanBatch {
        let json = "{\"resourceSpans\":[\(resourceSpans.joined(separator: ","))]}"
        return try Array(json.utf8).withUnsafeBytes { try SpanBatch.decode($0, format: .otlpJSON, gzip: false, limit: 1 << 20) }
    }

    func testAClientAndItsServerSpanMakeOneEdgeInWhicheverOrderTheyArrive() throws {
        let graph = ServiceGraph(id: ComponentID(type: "servicegraph"), settings: ServiceGraphSettings())
        let now = ContinuousClock.now
        // The server half first, in one batch; its client in the next.
        graph.observe(try batch([span("api", id: "0000000000000002", parent: "0000000000000001", kind: 2, status: 2)]), now: now)
        graph.observe(try batch([span("web", id: "0000000000000001", kind: 3, ms: 30)]), now: now)
        let edges = graph.status.edges ?? []
        XCTAssertEqual(edges.count, 1)
        XCTAssertEqual(edges.first?.client, "web")
        XCTAssertEqual(edges.first?.server, "api")
        XCTAssertEqual(edges.first?.calls, 1)
        XCTAssertEqual(edges.first?.failed, 1, "the server span failed")
    }

    func testAHalfWithoutItsOtherSideExpiresAndIsCounted() throws {
        var settings = ServiceGraphSettings()
        settings.ttl = .milliseconds(10)
        let graph = ServiceGraph(id: ComponentID(type: "servicegraph"), settings: settings)
        let now = ContinuousClock.now
        graph.observe(try batch([span("web", id: "0000000000000001", kind: 3)]), now: now)
        graph.observe(try batch([span("api", id: "0000000000000009", parent: "00000000000000ff", kind: 2,
                                      trace: "ffffffffffffffffffffffffffffffff")]), now: now + .seconds(1))
        let status = graph.status
        XCTAssertEqual(status.edges?.count ?? 0, 0)
        XCTAssertEqual(status.counters["expired_halves"], 1)
    }

    func testSpanMetricsCountCallsPerServiceNameKindAndStatus() throws {
        let metrics = SpanMetrics(id: ComponentID(type: "spanmetrics"), settings: SpanMetricsSettings())
        metrics.observe(try batch([span("web", id: "0000000000000001", kind: 2, name: "GET /"),
                                   span("web", id: "0000000000000002", kind: 2, name: "GET /"),
                                   span("web", id: "0000000000000003", kind: 2, status: 2, name: "GET /")]))
        let calls = try XCTUnwrap(metrics.families.first { $0.name.hasSuffix("calls_total") })
        func value(_ status: String) -> Double? {
            calls.points.first { point in point.labels.contains { $0 == ("status_code", status) } }?.value
        }
        XCTAssertEqual(value("STATUS_CODE_UNSET"), 2)
        XCTAssertEqual(value("STATUS_CODE_ERROR"), 1)
        XCTAssertTrue(calls.points.allSatisfy { point in point.labels.contains { $0 == ("service_name", "web") } }, "\(calls.points.map(\.labels))")
        XCTAssertEqual(metrics.status.series, 2)
    }
}
