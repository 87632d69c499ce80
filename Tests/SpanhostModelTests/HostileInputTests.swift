import CSpanhost
import SpanhostModel
import XCTest

/// Bytes from the network that once corrupted memory or passed invalid text along.
final class HostileInputTests: XCTestCase {
    private func span(attributes: String, name: String = "op") -> String {
        """
        {"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",
        "spanId":"1112131415161718","name":"\(name)","attributes":[\(attributes)]}]}]}]}
        """
    }

    private func validate(_ batch: SpanBatch) -> String? {
        var err = [CChar](repeating: 0, count: 256)
        if sh_batch_validate(batch.pointer, nil, 0, &err, err.count) == 0 { return nil }
        return err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private func firstValue(_ batch: SpanBatch) -> spanhost_value {
        var value = spanhost_value()
        batch.forEachSpan { _, _, span in value = span.pointee.attributes.items[0].value }
        return value
    }

    /// Two value keys in one AnyValue: the later replaces the earlier whole. Before, arrayValue
    /// set the type and left the string in the union: an array at address 4096.
    func testALaterJSONValueKeyReplacesTheEarlierOneWhole() throws {
        let body = span(attributes: #"{"key":"k","value":{"stringValue":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","intValue":"4096","arrayValue":{}}}"#)
        let batch = try SpanBatch.decode(Array(body.utf8), encoding: .json)
        XCTAssertNil(validate(batch))
        let value = firstValue(batch)
        XCTAssertEqual(value.type, UInt32(SPANHOST_VALUE_ARRAY))
        XCTAssertEqual(value.as.array_value.count, 0)
        XCTAssertNil(value.as.array_value.items)
        // Every encoder reads it safely.
        XCTAssertNotNil(batch.encode(.protobuf))
        XCTAssertEqual(batch.encode(.json).map { String(decoding: $0, as: UTF8.self).contains(#""arrayValue":{"values":[]}"#) }, true)

        let kvlist = span(attributes: #"{"key":"k","value":{"bytesValue":"AAEC","kvlistValue":{}}}"#)
        let second = try SpanBatch.decode(Array(kvlist.utf8), encoding: .json)
        XCTAssertNil(validate(second))
        XCTAssertEqual(firstValue(second).type, UInt32(SPANHOST_VALUE_KVLIST))
        XCTAssertEqual(firstValue(second).as.kvlist_value.count, 0)
    }

    /// The same in protobuf: AnyValue is a oneof, the last member on the wire wins whole.
    func testALaterProtobufOneofMemberReplacesTheEarlierOneWhole() throws {
        // AnyValue { string_value: "AAAA...", array_value: {} }
        let anyValue: [UInt8] = [0x0a, 20] + Array(repeating: 0x41, count: 20) + [0x2a, 0x00]
        let kv: [UInt8] = [0x0a, 1, 0x6b, 0x12, UInt8(anyValue.count)] + anyValue
        let spanBody: [UInt8] = [0x0a, 16] + Array(1...16) + [0x12, 8] + Array(17...24) + [0x2a, 1, 0x6f, 0x4a, UInt8(kv.count)] + kv
        let scopeSpans: [UInt8] = [0x12, UInt8(spanBody.count)] + spanBody
        let resourceSpans: [UInt8] = [0x12, UInt8(scopeSpans.count)] + scopeSpans
        let request: [UInt8] = [0x0a, UInt8(resourceSpans.count)] + resourceSpans
        let batch = try SpanBatch.decode(request, encoding: .protobuf)
        XCTAssertNil(validate(batch))
        let value = firstValue(batch)
        XCTAssertEqual(value.type, UInt32(SPANHOST_VALUE_ARRAY))
        XCTAssertEqual(value.as.array_value.count, 0)
    }

    /// proto3 strings are UTF-8; the Collector refuses requests that break it, and so do we,
    /// naming the field.
    func testInvalidUTF8IsRefusedNamingTheField() {
        let cases: [(body: [UInt8], encoding: OTLPEncoding, field: String)] = [
            (Array(span(attributes: "", name: "ok").utf8).replacing(Array("\"ok\"".utf8), with: [0x22, 0xff, 0xfe, 0x22]),
             .json, "spans[0].name is not valid UTF-8"),
            (Array(span(attributes: #"{"key":"k","value":{"stringValue":"XX"}}"#).utf8).replacing(Array("XX".utf8), with: [0xed, 0xa0, 0x80]),
             .json, "spans[0].attributes[0].value is not valid UTF-8"),
            (Array(span(attributes: #"{"key":"KK","value":{"intValue":1}}"#).utf8).replacing(Array("KK".utf8), with: [0xc0, 0xaf]),
             .json, "spans[0].attributes[0].key is not valid UTF-8"),
        ]
        for c in cases {
            XCTAssertThrowsError(try SpanBatch.decode(c.body, encoding: c.encoding)) { error in
                XCTAssertTrue("\(error)".contains(c.field), "\(error)")
            }
        }
        // Protobuf: a span name of 0xff.
        let spanBody: [UInt8] = [0x0a, 16] + Array(1...16) + [0x12, 8] + Array(17...24) + [0x2a, 2, 0x41, 0xff]
        let scopeSpans: [UInt8] = [0x12, UInt8(spanBody.count)] + spanBody
        let resourceSpans: [UInt8] = [0x12, UInt8(scopeSpans.count)] + scopeSpans
        XCTAssertThrowsError(try SpanBatch.decode([0x0a, UInt8(resourceSpans.count)] + resourceSpans, encoding: .protobuf)) { error in
            XCTAssertTrue("\(error)".contains("resourceSpans[0].scopeSpans[0].spans[0].name is not valid UTF-8"), "\(error)")
        }
        // Zipkin tags.
        let zipkin: [UInt8] = Array(#"[{"traceId":"0102030405060708","id":"1112131415161718","name":"x","tags":{"k":"ZZ"}}]"#.utf8)
            .replacing(Array("ZZ".utf8), with: [0xf8, 0x88, 0x80])
        XCTAssertThrowsError(try zipkin.withUnsafeBytes { try SpanBatch.decode($0, format: .zipkinJSON, gzip: false, limit: 1 << 20) }) { error in
            XCTAssertTrue("\(error)".contains("attributes[0].value is not valid UTF-8"), "\(error)")
        }
        // Escapes that make valid text still decode: é, 😀, and a lone surrogate becomes U+FFFD.
        let escaped = span(attributes: "", name: #"\u00e9\ud83d\ude00\ud800"#)
        XCTAssertNoThrow(try SpanBatch.decode(Array(escaped.utf8), encoding: .json))
    }

    /// Whatever a processor writes into a batch, the JSON encoders write UTF-8.
    func testTheJSONEncoderWritesValidUTF8WhateverTheBatchHolds() throws {
        let batch = try SpanBatch.decode(Array(span(attributes: #"{"key":"k","value":{"stringValue":"x"}}"#).utf8), encoding: .json)
        // a ff b c3( eda080 f09f9880 "
        let bad: [CChar] = [0x61, -1, 0x62, -61, 0x28, -19, -96, -128, -16, -97, -104, -128, 0x22]
        batch.forEachSpan { _, _, span in
            span.pointee.name = sh_arena_strdup(batch.pointer, bad, bad.count)
        }
        let json = try XCTUnwrap(batch.encode(.json))
        XCTAssertNotNil(String(validatingCString: json.map { CChar(bitPattern: $0) } + [0]))
        let text = String(decoding: json, as: UTF8.self)
        XCTAssertTrue(text.contains("\"a\u{FFFD}b\u{FFFD}(\u{FFFD}\u{FFFD}\u{FFFD}😀\\\""), text)
    }

    // MARK: Expressions

    private func compile(_ text: String, _ kind: UInt32 = UInt32(SPANHOST_EXPR_CONDITION)) -> (OpaquePointer?, String) {
        var err = [CChar](repeating: 0, count: 256)
        let bytes = Array(text.utf8)
        let expr = bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { sh_expr_compile($0.baseAddress, $0.count, kind, UInt32(SPANHOST_CONTEXT_SPAN), &err, err.count) }
        }
        return (expr, err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }

    /// A NUL inside a value hid what followed it from a pattern meant to redact it.
    func testReplacePatternSeesTheWholeValuePastANulByte() throws {
        let batch = try SpanBatch.decode(Array(span(attributes: #"{"key":"q","value":{"stringValue":"a\u0000token=secret"}}"#).utf8), encoding: .json)
        let (expr, err) = compile(#"replace_pattern(attributes["q"], "token=[a-z]*", "token=***")"#, UInt32(SPANHOST_EXPR_STATEMENT))
        let statement = try XCTUnwrap(expr, err)
        defer { sh_expr_free(statement) }
        var message = [CChar](repeating: 0, count: 256)
        message.withUnsafeMutableBufferPointer { buffer in
            var status = spanhost_status(struct_size: UInt32(MemoryLayout<spanhost_status>.size), retry_after_ms: 0,
                                         message: buffer.baseAddress, message_cap: buffer.count)
            var ran = false
            batch.forEachSpan { rs, ss, span in
                var target = spanhost_expr_target(struct_size: UInt32(MemoryLayout<spanhost_expr_target>.size), batch: batch.pointer,
                                                  resource: rs.pointee.resource, scope: ss.pointee.scope, span: span, event: nil, cache: nil)
                ran = sh_expr_run(statement, &target, &status) >= 0
            }
            XCTAssertTrue(ran)
        }
        let value = firstValue(batch).as.string_value
        let text = Array(UnsafeRawBufferPointer(start: value.ptr, count: value.len))
        XCTAssertEqual(text, Array("a\u{0}token=***".utf8))
    }

    func testExpressionsNestedPastTheLimitAreRefusedAtCompile() {
        let parens = String(repeating: "(", count: 100_000) + "true" + String(repeating: ")", count: 100_000)
        XCTAssertNil(compile(parens).0)
        XCTAssertTrue(compile(parens).1.contains("nested too deeply"), compile(parens).1)
        let nots = String(repeating: "not ", count: 100_000) + "true"
        XCTAssertTrue(compile(nots).1.contains("nested too deeply"), compile(nots).1)
        let chain = String(repeating: "name == \"a\" or ", count: 5_000) + "true"
        XCTAssertNil(compile(chain).0)
        XCTAssertTrue(compile(chain).1.contains("expression too long"), compile(chain).1)
        // What people write still compiles.
        let (ok, err) = compile(String(repeating: "(", count: 20) + "name == \"a\"" + String(repeating: ")", count: 20)
                                + String(repeating: " and kind == 2", count: 200))
        XCTAssertNotNil(ok, err)
        sh_expr_free(ok)
    }

    func testIntegerLiteralsOutOfRangeAreRefused() {
        for text in [#"attributes["n"] == 9223372036854775808"#, #"attributes["n"] == -9223372036854775809"#,
                     #"attributes["n"] == 99999999999999999999999"#, #"attributes["n"] == 1e999"#] {
            let (expr, err) = compile(text)
            XCTAssertNil(expr, text)
            XCTAssertTrue(err.contains("out of range"), "\(text): \(err)")
        }
        let (max, err) = compile(#"attributes["n"] == 9223372036854775807 or attributes["n"] == -9223372036854775808"#)
        XCTAssertNotNil(max, err)
        sh_expr_free(max)
    }

    /// String literals go into batches: an expression that is not UTF-8 is refused, and a
    /// pattern that replaces part of a multi-byte character leaves U+FFFD, not a broken byte.
    func testExpressionsKeepEveryStringInABatchUTF8() throws {
        var err = [CChar](repeating: 0, count: 256)
        let text: [UInt8] = Array(#"set(attributes["k"], "x"#.utf8) + [0xf0, 0xf0] + Array(#"")"#.utf8)
        let expr = text.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) {
                sh_expr_compile($0.baseAddress, $0.count, UInt32(SPANHOST_EXPR_STATEMENT), UInt32(SPANHOST_CONTEXT_SPAN), &err, err.count)
            }
        }
        XCTAssertNil(expr)
        XCTAssertEqual(err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, "column 24: not valid UTF-8")

        let batch = try SpanBatch.decode(Array(span(attributes: #"{"key":"q","value":{"stringValue":"caf\u00e9"}}"#).utf8), encoding: .json)
        let (compiled, compileErr) = compile(#"replace_pattern(attributes["q"], ".$", "!")"#, UInt32(SPANHOST_EXPR_STATEMENT))
        let statement = try XCTUnwrap(compiled, compileErr)
        defer { sh_expr_free(statement) }
        batch.forEachSpan { rs, ss, span in
            var target = spanhost_expr_target(struct_size: UInt32(MemoryLayout<spanhost_expr_target>.size), batch: batch.pointer,
                                              resource: rs.pointee.resource, scope: ss.pointee.scope, span: span, event: nil, cache: nil)
            _ = sh_expr_run(statement, &target, nil)
        }
        XCTAssertNil(validate(batch))
        let value = firstValue(batch).as.string_value
        let result = String(decoding: UnsafeRawBufferPointer(start: value.ptr, count: value.len), as: UTF8.self)
        // Byte-wise regex (C locale) replaces the last byte of é; a UTF-8 locale the whole é.
        XCTAssertTrue(["caf\u{FFFD}!", "caf!"].contains(result), result)
    }
}

private extension Array where Element == UInt8 {
    func replacing(_ old: [UInt8], with new: [UInt8]) -> [UInt8] {
        guard let start = (0...(count - old.count)).first(where: { Array(self[$0..<$0 + old.count]) == old }) else { return self }
        return Array(self[..<start]) + new + Array(self[(start + old.count)...])
    }
}
