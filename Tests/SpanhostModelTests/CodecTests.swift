import CSpanhost
import SpanhostModel
import XCTest

final class CodecTests: XCTestCase {
    static let json = """
        {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}],
        "droppedAttributesCount":1},"schemaUrl":"https://s/1",
        "scopeSpans":[{"scope":{"name":"lib","version":"1.0","attributes":[{"key":"k","value":{"boolValue":true}}]},
        "spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718","parentSpanId":"2122232425262728",
        "traceState":"a=b","flags":257,"name":"op \\"quoted\\" \\u00fc \\ud83d\\ude00","kind":3,
        "startTimeUnixNano":"1700000000000000001","endTimeUnixNano":1700000000000000999,
        "attributes":[{"key":"s","value":{"stringValue":"x"}},{"key":"i","value":{"intValue":"-9223372036854775808"}},
        {"key":"d","value":{"doubleValue":0.5}},{"key":"b","value":{"bytesValue":"AAEC/w=="}},
        {"key":"arr","value":{"arrayValue":{"values":[{"intValue":1},{"stringValue":"two"}]}}},
        {"key":"kv","value":{"kvlistValue":{"values":[{"key":"inner","value":{"doubleValue":"NaN"}}]}}}],
        "droppedAttributesCount":2,
        "events":[{"timeUnixNano":"5","name":"ev","attributes":[{"key":"e","value":{"intValue":3}}]}],"droppedEventsCount":3,
        "links":[{"traceId":"a1a2a3a4a5a6a7a8a9aaabacadaeafb0","spanId":"b1b2b3b4b5b6b7b8","traceState":"t","flags":1,
        "attributes":[{"key":"l","value":{"stringValue":"v"}}]}],"droppedLinksCount":4,
        "status":{"code":2,"message":"bad"}}]}]}]}
        """

    func testJSONAndProtobufRoundTripPreserveEveryField() throws {
        let batch = try SpanBatch.decode(Array(Self.json.utf8), encoding: .json)
        XCTAssertEqual(batch.spanCount, 1)
        let json1 = try XCTUnwrap(batch.encode(.json))
        let proto = try XCTUnwrap(batch.encode(.protobuf))
        let fromProto = try SpanBatch.decode(proto, encoding: .protobuf)
        XCTAssertEqual(fromProto.encode(.json), json1)
        XCTAssertEqual(fromProto.encode(.protobuf), proto)
        let again = try SpanBatch.decode(json1, encoding: .json)
        XCTAssertEqual(again.encode(.protobuf), proto)

        var seen = 0
        fromProto.forEachSpan { rs, ss, span in
            seen += 1
            let s = span.pointee
            XCTAssertEqual(s.name.string, "op \"quoted\" ü 😀")
            XCTAssertEqual(s.kind, 3)
            XCTAssertEqual(s.flags, 257)
            XCTAssertEqual(s.start_time_unix_nano, 1_700_000_000_000_000_001)
            XCTAssertEqual(s.end_time_unix_nano, 1_700_000_000_000_000_999)
            XCTAssertEqual(s.attributes.count, 6)
            XCTAssertEqual(s.attributes.items[1].value.as.int_value, Int64.min)
            XCTAssertEqual(s.attributes.items[3].value.as.bytes_value.len, 4)
            XCTAssertTrue(s.attributes.items[5].value.as.kvlist_value.items[0].value.as.double_value.isNaN)
            XCTAssertEqual(s.events_count, 1)
            XCTAssertEqual(s.links_count, 1)
            XCTAssertEqual(s.links[0]!.pointee.flags, 1)
            XCTAssertEqual(s.status_code, 2)
            XCTAssertEqual(s.status_message.string, "bad")
            XCTAssertEqual(s.dropped_attributes_count, 2)
            XCTAssertEqual(s.dropped_events_count, 3)
            XCTAssertEqual(s.dropped_links_count, 4)
            XCTAssertEqual(s.parent_span_id.0, 0x21)
            XCTAssertEqual(rs.pointee.schema_url.string, "https://s/1")
            XCTAssertEqual(rs.pointee.resource.pointee.dropped_attributes_count, 1)
            XCTAssertEqual(ss.pointee.scope.pointee.version.string, "1.0")
        }
        XCTAssertEqual(seen, 1)
    }

    /// The protobuf decoder gathers repeated fields in scratch space and moves a long list into
    /// the arena: lists longer than any scratch keep every item, in order.
    func testLongRepeatedFieldsKeepEveryItemInOrder() throws {
        func kv(_ key: String, _ value: String) -> String { #"{"key":"\#(key)","value":\#(value)}"# }
        let attributes = (0..<300).map { kv("a\($0)", #"{"intValue":\#($0)}"#) }.joined(separator: ",")
        let events = (0..<40).map { #"{"name":"e\#($0)","attributes":[\#((0..<20).map { kv("k\($0)", "{\"boolValue\":true}") }.joined(separator: ","))]}"# }
        let links = (0..<9).map { _ in #"{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718"}"# }
        let array = (0..<50).map { #"{"intValue":\#($0)}"# }.joined(separator: ",")
        let span = #"{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718","name":"s","attributes":[\#(attributes),"#
            + kv("arr", #"{"arrayValue":{"values":[\#(array)]}}"#) + #"],"events":[\#(events.joined(separator: ","))],"links":[\#(links.joined(separator: ","))]}"#
        let small = #"{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718","name":"small"}"#
        let scopes = (0..<9).map { _ in #"{"spans":[\#(span),\#(Array(repeating: small, count: 69).joined(separator: ","))]}"# }
        let resources = (0..<9).map { _ in #"{"scopeSpans":[\#(scopes.joined(separator: ","))]}"# }
        let json = #"{"resourceSpans":[\#(resources.joined(separator: ","))]}"#
        let proto = try XCTUnwrap(SpanBatch.decode(Array(json.utf8), encoding: .json).encode(.protobuf))
        let batch = try SpanBatch.decode(proto, encoding: .protobuf)
        XCTAssertEqual(batch.spanCount, 9 * 9 * 70)
        XCTAssertEqual(batch.encode(.protobuf), proto)
        var checked = 0
        batch.forEachSpan { _, _, span in
            let s = span.pointee
            guard s.name.string == "s" else { return XCTAssertEqual(s.name.string, "small") }
            XCTAssertEqual(s.attributes.count, 301)
            XCTAssertEqual(s.attributes.items[299].key.string, "a299")
            XCTAssertEqual(s.attributes.items[299].value.as.int_value, 299)
            XCTAssertEqual(s.attributes.items[300].value.as.array_value.count, 50)
            XCTAssertEqual(s.attributes.items[300].value.as.array_value.items[49].as.int_value, 49)
            XCTAssertEqual(s.events_count, 40)
            XCTAssertEqual(s.events[39]!.pointee.name.string, "e39")
            XCTAssertEqual(s.events[39]!.pointee.attributes.count, 20)
            XCTAssertEqual(s.links_count, 9)
            checked += 1
        }
        XCTAssertEqual(checked, 81)
    }

    func testEveryTruncationOfAValidMessageIsRefusedOrDecodedWithoutCrashing() throws {
        let proto = try XCTUnwrap(SpanBatch.decode(Array(Self.json.utf8), encoding: .json).encode(.protobuf))
        var refused = 0
        for length in 0..<proto.count {
            do {
                _ = try SpanBatch.decode(Array(proto[..<length]), encoding: .protobuf)
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, proto.count / 2)
        let json = Array(Self.json.utf8)
        for length in stride(from: 0, to: json.count - 1, by: 7) {
            XCTAssertThrowsError(try SpanBatch.decode(Array(json[..<length]), encoding: .json))
        }
    }

    func testMalformedInputsNameTheProblem() {
        func message(_ body: String, _ encoding: OTLPEncoding = .json) -> String {
            do {
                _ = try SpanBatch.decode(Array(body.utf8), encoding: encoding)
                return "decoded"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(message(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"12"}]}]}]}"#).contains("spanId must be 16 hex digits"))
        XCTAssertTrue(message(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-1"}]}]}]}"#).contains("unsigned"))
        XCTAssertTrue(message(#"{"resourceSpans": 5}"#).contains("expected '['"))
        XCTAssertTrue(message(#"{} trailing"#).contains("trailing"))
        XCTAssertTrue(message(String(repeating: "[", count: 100)).contains("expected '{'"))
        let deep = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":"# +
            String(repeating: #"{"arrayValue":{"values":["#, count: 80)
        XCTAssertTrue(message(deep).contains("nested too deeply"))
        XCTAssertEqual(message(""), "invalid OTLP JSON at byte 0: expected '{'")
        XCTAssertEqual(message("", .protobuf), "decoded")  // an empty request is valid
    }

    func testGzipLimitAppliesAfterDecompression() throws {
        let payload = [UInt8](repeating: 0, count: 1 << 20)
        var gz = spanhost_buffer()
        XCTAssertEqual(sh_gzip(payload, payload.count, &gz), 0)
        let compressed = Array(UnsafeBufferPointer(start: gz.data, count: gz.len))
        sh_buffer_free(&gz)
        XCTAssertLessThan(compressed.count, 8192)
        XCTAssertThrowsError(try SpanBatch.decode(compressed, encoding: .protobuf, gzip: true, limit: 65536)) { error in
            XCTAssertEqual(error as? DecodeError, .tooLarge(limit: 65536))
        }
        XCTAssertThrowsError(try SpanBatch.decode(Array(compressed.dropLast(20)), encoding: .protobuf, gzip: true)) { error in
            XCTAssertEqual(error as? DecodeError, .corruptGzip)
        }
    }

    func testDroppedSpansAreRemovedAndCloneIsDeep() throws {
        let svc = #"{"attributes":[{"key":"service.name","value":{"stringValue":"%@"}}]}"#
        let body = #"{"resourceSpans":[{"resource":\#(svc.replacingOccurrences(of: "%@", with: "a")),"scopeSpans":[{"spans":[{"name":"a"},{"name":"b"},{"name":"c"}]}]},"#
            + #"{"resource":\#(svc.replacingOccurrences(of: "%@", with: "b")),"scopeSpans":[{"spans":[{"name":"d"}]}]}]}"#
        let batch = try SpanBatch.decode(Array(body.utf8), encoding: .json)
        let copy = try XCTUnwrap(batch.clone())
        XCTAssertEqual(copy.encode(.protobuf), batch.encode(.protobuf))

        // Groups with equal resources and scopes are merged in a copy: spans are grouped by content.
        let twice = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x"}]}]},{"scopeSpans":[{"spans":[{"name":"y"}]}]}]}"#
        let merged = try XCTUnwrap(SpanBatch.decode(Array(twice.utf8), encoding: .json).clone())
        XCTAssertEqual(merged.pointee.resource_spans_count, 1)
        XCTAssertEqual(merged.spanCount, 2)
        batch.forEachSpan { _, _, span in
            if span.pointee.name.string != "b" { span.pointee.host_flags |= UInt32(SPANHOST_SPAN_DROP) }
        }
        XCTAssertEqual(batch.removeDroppedSpans(), 3)
        XCTAssertEqual(batch.spanCount, 1)
        XCTAssertEqual(batch.pointee.resource_spans_count, 1)
        XCTAssertEqual(copy.spanCount, 4)
    }
}

extension CodecTests {
    /// Copies (tail sampling's held traces) share equal short strings once a few spans are in:
    /// the copy encodes the same, and changing one span's attribute leaves the others alone.
    func testCopiedSpansShareStringsWithoutSeeingEachOthersChanges() throws {
        let spans = (0..<40).map { i in
            #"{"name":"GET /items","attributes":[{"key":"http.method","value":{"stringValue":"GET"}},"#
                + #"{"key":"n","value":{"intValue":"\#(i)"}}]}"#
        }
        let body = #"{"resourceSpans":[{"scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
        let batch = try SpanBatch.decode(Array(body.utf8), encoding: .json)
        let copy = try XCTUnwrap(batch.clone())
        XCTAssertEqual(copy.encode(.protobuf), batch.encode(.protobuf))
        var keys: [UnsafePointer<CChar>?] = []
        var copied: [UnsafeMutablePointer<spanhost_span>] = []
        copy.forEachSpan { _, _, span in
            keys.append(span.pointee.attributes.items[0].key.ptr)
            copied.append(span)
        }
        XCTAssertEqual(Set(keys.suffix(30)).count, 1, "later copies share one key string")
        var post = spanhost_value()
        post.type = UInt32(SPANHOST_VALUE_STRING)
        "POST".withCString { text in
            post.as.string_value = spanhost_str(ptr: text, len: 4)
            XCTAssertEqual("http.method".withCString { sh_set_attribute(copy.pointer, &copied[20].pointee.attributes,
                                                                        spanhost_str(ptr: $0, len: 11), &post) }, 0)
        }
        let methods = copied.map { span -> String in
            let value = span.pointee.attributes.items[0].value.as.string_value
            return String(decoding: UnsafeRawBufferPointer(start: value.ptr, count: value.len), as: UTF8.self)
        }
        XCTAssertEqual(methods.filter { $0 == "POST" }.count, 1)
        XCTAssertEqual(methods[20], "POST")
    }
}

private extension SpanBatch {
    var pointee: spanhost_batch { pointer.pointee }
}

extension CodecTests {
    static func varint(_ n: Int) -> [UInt8] {
        var n = UInt64(n), out: [UInt8] = []
        repeat {
            out.append(UInt8(n & 0x7f) | (n >= 0x80 ? 0x80 : 0))
            n >>= 7
        } while n > 0
        return out
    }

    /// An OTLP request of `count` empty spans: two bytes each on the wire.
    static func emptySpans(_ count: Int) -> [UInt8] {
        let spans = [UInt8](repeating: 0, count: count * 2).enumerated().map { $0.offset % 2 == 0 ? UInt8(0x12) : 0 }
        let resource = [0x12] + varint(spans.count) + spans  // ResourceSpans.scope_spans holding them
        return [0x0a] + varint(resource.count) + resource
    }

    func testARepeatedArrayKeyReplacesTheEarlierOneInsteadOfOverrunningIt() throws {
        // Found by the fuzzer: the second "events" array continued the first one's count with a
        // fresh capacity and copied past the end of its block.
        let events = (0..<9).map { #"{"name":"e\#($0)"}"# }.joined(separator: ",")
        let json = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s","events":[\#(events)],"events":[{"name":"last"}],"#
            + #""attributes":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"1"},{"intValue":"2"}],"values":[{"intValue":"3"}]}}}]}]}]}]}"#
        let batch = try SpanBatch.decode(Array(json.utf8), encoding: .json)
        let span = batch.pointer.pointee.resource_spans[0]!.pointee.scope_spans[0]!.pointee.spans[0]!.pointee
        XCTAssertEqual(span.events_count, 1)
        XCTAssertEqual(span.events[0]!.pointee.name.string, "last")
        XCTAssertEqual(span.attributes.items[0].value.as.array_value.count, 1)
    }

    func testASmallBodyCannotBuildAHugeBatch() throws {
        let body = Self.emptySpans(2 << 20)  // 4 MiB of empty spans: about 90x that as structs
        XCTAssertThrowsError(try SpanBatch.decode(body, encoding: .protobuf)) { error in
            guard case .expandsTooMuch(let limit)? = error as? DecodeError else { return XCTFail("\(error)") }
            // What the batch held before decoding (its own header), the body, 16x it, 1 MiB.
            let empty = sh_batch_new()!
            defer { sh_batch_release(empty) }
            XCTAssertEqual(limit, sh_batch_bytes(empty) + body.count * (SpanBatch.decodeExpansion + 1) + (1 << 20))
        }
        // A realistic request is well inside the cap, and the cap ends with decoding: the batch can grow.
        let batch = try SpanBatch.decode(Array(Self.json.utf8), encoding: .json)
        XCTAssertEqual(batch.spanCount, 1)
        XCTAssertEqual(sh_batch_over_limit(batch.pointer), 0)
        XCTAssertNotNil(sh_arena_alloc(batch.pointer, 64 << 20))
        // 1,000 empty spans are fine: the cap has 1 MiB of room beyond the multiple.
        XCTAssertEqual(try SpanBatch.decode(Self.emptySpans(1000), encoding: .protobuf).spanCount, 1000)
    }
}
