import Foundation
import Logging
@testable import SpanhostPipeline
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostTestSupport
import XCTest

/// Generations built from YAML with the real first-party plugins `make build` makes, each
/// test's files under its own `tmp` (which `TMP` in the YAML names).
protocol GenerationFixture: XCTestCase {
    var tmp: String { get }
}

extension GenerationFixture {
    func generation(_ yaml: String, previous: Generation? = nil) throws -> Generation {
        _ = try BuiltPlugins.path("file")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let config = try ServiceConfig.parse(yaml: yaml.replacingOccurrences(of: "TMP", with: tmp), environment: [:])
        let catalog = PluginCatalog.load(config.pluginNames, from: [BuiltPlugins.directory], cacheDirectory: BuiltPlugins.cacheDirectory,
                                         logger: Logger(label: "test"))
        let generation = try Generation(config: config, catalog: catalog, previous: previous)
        generation.activate()
        return generation
    }

    func spans(_ n: Int) throws -> SpanBatch { try sampleSpans(n) }
}
