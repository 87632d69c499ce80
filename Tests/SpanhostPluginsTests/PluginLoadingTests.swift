import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel
import SpanhostPlugins
import XCTest

/// Loads the real first-party plugins built by `make build` and drives them through the ABI.
final class PluginLoadingTests: XCTestCase {
    let pluginsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../build/plugins").standardized.path
    var cacheDir: String { NSTemporaryDirectory() + "spanhost-plugin-tests-\(getpid())" }

    func load(_ name: String) throws -> PluginLibrary {
        let path = "\(pluginsDir)/\(name).so"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("run `make build` first: \(path) is missing") }
        return try PluginCatalog.load(path: path, cacheDirectory: cacheDir)
    }

    func testAttributesProcessorChangesSpansThroughTheHostTable() throws {
        let library = try load("attributes")
        XCTAssertEqual(library.kind, .processor)
        let settings = try YAMLLoader.load("""
            actions:
              - {key: env, value: prod, action: insert}
              - {key: n, value: 42, action: upsert}
              - {key: keep, value: changed, action: insert}
              - {key: secret, action: delete}
              - {key: copy, from_attribute: keep, action: upsert}
            """, environment: [:])
        let instance = try PluginInstance(id: ComponentID(type: "attributes"), library: library, settings: settings)
        let body = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a","attributes":[{"key":"keep","value":{"stringValue":"v"}},{"key":"secret","value":{"stringValue":"s"}}]}]}]}]}"#
        let batch = try SpanBatch.decode(Array(body.utf8), encoding: .json)
        XCTAssertEqual(instance.process(batch), .ok)
        var attributes: [String: String] = [:]
        batch.forEachSpan { _, _, span in
            let list = span.pointee.attributes
            for i in 0..<list.count {
                let value = list.items[i].value
                attributes[list.items[i].key.string] = value.type == UInt32(SPANHOST_VALUE_INT) ? "\(value.as.int_value)" : value.as.string_value.string
            }
        }
        XCTAssertEqual(attributes, ["keep": "v", "env": "prod", "n": "42", "copy": "v"])
    }

    func testCreateValidatesConfigWithAMessage() throws {
        let library = try load("attributes")
        let settings = try YAMLLoader.load("actions: [{key: k, action: explode}]", environment: [:])
        XCTAssertThrowsError(try PluginInstance(id: ComponentID(type: "attributes"), library: library, settings: settings)) { error in
            XCTAssertEqual("\(error)", "attributes: create failed: actions.0.action: 'explode' is not insert, update, upsert, delete, hash, extract or convert")
        }
    }

    func testSameBytesLoadOnceAndCopiesAreContentAddressed() throws {
        let first = try load("null")
        let second = try load("null")
        XCTAssertTrue(first === second)
        XCTAssertEqual(first.loadedPath, "\(cacheDir)/\(first.sha256).so")
    }

    func testSwiftPluginLoadsLikeAnyOtherAndValidatesItsConfig() throws {
        let library = try load("otlphttp")
        XCTAssertEqual(library.kind, .exporter)
        XCTAssertFalse(library.isUnloadable, "Swift images must never be unloaded")
        let bad = try YAMLLoader.load("compression: zstd\nendpoint: http://127.0.0.1:1", environment: [:])
        XCTAssertThrowsError(try PluginInstance(id: ComponentID(type: "otlphttp"), library: library, settings: bad)) { error in
            XCTAssertEqual("\(error)", "otlphttp: create failed: compression: 'zstd' is not gzip or none")
        }
        let good = try YAMLLoader.load("endpoint: http://127.0.0.1:1\ntimeout: 1s", environment: [:])
        let instance = try PluginInstance(id: ComponentID(type: "otlphttp"), library: library, settings: good)
        let batch = try SpanBatch.decode(Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a"}]}]}]}"#.utf8), encoding: .json)
        guard case .retryable(_, let message) = instance.export(batch) else { return XCTFail("nothing listens on port 1: retryable") }
        XCTAssertTrue(message.contains("127.0.0.1:1"), message)
        instance.destroy()
    }
}
