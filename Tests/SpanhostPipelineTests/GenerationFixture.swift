import Foundation
import Logging
@testable import SpanhostPipeline
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import XCTest

/// Generations built from YAML with the real first-party plugins `make build` makes, each
/// test's files under its own `tmp` (which `TMP` in the YAML names).
protocol GenerationFixture: XCTestCase {
    var tmp: String { get }
}

extension GenerationFixture {
    var pluginsDir: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../build/plugins").standardized.path
    }

    func generation(_ yaml: String, previous: Generation? = nil) throws -> Generation {
        guard FileManager.default.fileExists(atPath: "\(pluginsDir)/file.so") else { throw BuildMissing(path: "\(pluginsDir)/file.so") }
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let config = try ServiceConfig.parse(yaml: yaml.replacingOccurrences(of: "TMP", with: tmp), environment: [:])
        // The cache PluginLoadingTests uses: an image is loaded once per process, from one place.
        let cache = NSTemporaryDirectory() + "spanhost-plugin-tests-\(getpid())"
        let catalog = PluginCatalog.load(config.pluginNames, from: [pluginsDir], cacheDirectory: cache, logger: Logger(label: "test"))
        let generation = try Generation(config: config, catalog: catalog, previous: previous)
        generation.activate()
        return generation
    }

    /// A batch of `n` spans with distinct ids, each with a `user.email` attribute.
    func spans(_ n: Int) throws -> SpanBatch {
        let spans = (0..<n).map { i in
            #"{"traceId":"\#(String(format: "%032x", i + 1))","spanId":"\#(String(format: "%016x", i + 1))","name":"s","attributes":[{"key":"user.email","value":{"stringValue":"a@b"}}]}"#
        }
        let body = #"{"resourceSpans":[{"scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
        return try SpanBatch.decode(Array(body.utf8), encoding: .json)
    }
}

/// A test that needs the plugins `make build` makes fails with this when they are missing,
/// rather than being skipped and passing without testing.
struct BuildMissing: Error, CustomStringConvertible {
    var path: String
    var description: String { "\(path) is missing: run `make build` (make test does) first" }
}
