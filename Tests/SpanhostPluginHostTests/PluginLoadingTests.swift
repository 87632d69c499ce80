import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostTestSupport
import XCTest

/// Loads the real first-party plugins built by `make build` and drives them through the ABI.
final class PluginLoadingTests: XCTestCase {
    var cacheDir: String { BuiltPlugins.cacheDirectory }

    func load(_ name: String) throws -> PluginLibrary {
        try PluginCatalog.load(path: try BuiltPlugins.path(name), cacheDirectory: cacheDir)
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

    func testADeclaredSchemaRefusesUnknownKeysWrongTypesAndMissingRequiredKeysBeforeCreate() throws {
        let file = try load("file")
        XCTAssertEqual(file.abiMinor, Int(SPANHOST_ABI_MINOR))
        let keys = try XCTUnwrap(file.schema).keys
        XCTAssertEqual(keys.first { $0.path == "path" }?.required, true)
        XCTAssertEqual(keys.first { $0.path == "rotation.max_megabytes" }?.type, .double)
        func refusal(_ library: PluginLibrary, _ yaml: String) -> String? {
            let settings = try! YAMLLoader.load(yaml, environment: [:])
            do {
                let instance = try PluginInstance(id: ComponentID(type: library.name), library: library, settings: settings, start: false)
                instance.destroy()
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(refusal(file, "path: /tmp/x\nformt: json"), "file.formt: unknown key; valid keys here: format, path, rotation")
        XCTAssertEqual(refusal(file, "path: /tmp/x\nrotation: {max_megabytes: 1, max_backup: 2}"),
                       "file.rotation.max_backup: unknown key; valid keys here: rotation.max_backups, rotation.max_megabytes")
        XCTAssertEqual(refusal(file, "path: /tmp/x\nrotation: {max_megabytes: lots}"), "file.rotation.max_megabytes: must be a number, not 'lots'")
        XCTAssertEqual(refusal(file, "format: json"), "file.path: required: a string")
        // Host keys (retry, queue...) are the host's, not the plugin's.
        XCTAssertNil(refusal(file, "path: \(NSTemporaryDirectory())schema-ok.jsonl\nretry_on_failure: {enabled: false}"))

        let sampler = try load("tail_sampling")
        XCTAssertEqual(refusal(sampler, "decision_wait: soon"), "tail_sampling.decision_wait: must be a duration like 500ms, 5s or 1m30s, not 'soon'")
        XCTAssertNil(refusal(sampler, "decision_wait: 1m30s\nnum_traces: 10\npolicies: [{name: a, type: always_sample}]"))
        // List items by "*", free-form lists left to the plugin, maps with any key.
        let attributes = try load("attributes")
        XCTAssertEqual(refusal(attributes, "actions: [{key: a, action: delete, vaule: x}]"),
                       "attributes.actions.0.vaule: unknown key; valid keys here: actions.*.action, actions.*.converted_type, "
                       + "actions.*.default_value, actions.*.from_attribute, actions.*.from_context, actions.*.hmac_key, actions.*.key, "
                       + "actions.*.pattern, actions.*.value")
        XCTAssertEqual(refusal(attributes, "actions: [{key: a}]"), "attributes.actions.0.action: required: a string")
        XCTAssertNil(refusal(attributes, "actions: [{key: a, action: insert, value: 3}]\ninclude: {services: one}"))
        let tail = try load("tail_sampling")
        XCTAssertNil(refusal(tail, "policies: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]"))
        XCTAssertEqual(refusal(try load("null"), "anything: 1"), "null.anything: unknown key; the plugin takes no settings here")
    }

    func testSchemaMatchingOfWildcardsAndImpliedParents() {
        let schema = ConfigSchema(keys: [
            .init(path: "headers", type: .map, required: false, defaultValue: nil, doc: ""),
            .init(path: "headers.*", type: .string, required: false, defaultValue: nil, doc: ""),
            .init(path: "retry.max_elapsed", type: .duration, required: false, defaultValue: nil, doc: ""),
            .init(path: "sizes", type: .stringList, required: false, defaultValue: nil, doc: ""),
            .init(path: "limit", type: .bytes, required: false, defaultValue: nil, doc: ""),
        ])
        func check(_ yaml: String) -> String? { schema.check(try! YAMLLoader.load(yaml, environment: [:])).map { "\($0)" } }
        XCTAssertNil(check("headers: {X-Token: abc, Y: 1}\nretry: {max_elapsed: 2m}\nsizes: [a, b]\nlimit: 64MiB"))
        XCTAssertNil(check("sizes: one\nlimit: 1048576"))
        XCTAssertEqual(check("headers: {X: [1]}"), "headers.X: must be a string, not a list")
        XCTAssertEqual(check("retry: 5"), "retry: must be a map of settings")
        XCTAssertEqual(check("retry: {max: 1}"), "retry.max: unknown key; valid keys here: retry.max_elapsed")
        XCTAssertEqual(check("limit: 64 parsecs"), "limit: must be a size like 1048576, 512KiB or 64MiB, not '64 parsecs'")
        XCTAssertEqual(check("sizes: [a, {b: c}]"), "sizes: must be a list of strings (or one string), not a list")
        XCTAssertEqual(try parseBytes(.string("1.5KiB"), path: "x"), 1536)
        XCTAssertEqual(try parseBytes(.string("10MB"), path: "x"), 10_000_000)
    }
}
