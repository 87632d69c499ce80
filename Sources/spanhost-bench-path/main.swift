// The data path without sockets, for instruction counts (Tests/bench/callgrind.sh): decodes one
// OTLP protobuf body `repeat` times and hands each batch to the pipelines of a config, as the
// OTLP receiver does, then shuts down (exporters drain). Everything but the HTTP server runs.
// usage: spanhost-bench-path CONFIG BODY REPEAT
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostPluginHost

let arguments = CommandLine.arguments
guard arguments.count == 4, let repeats = Int(arguments[3]) else {
    FileHandle.standardError.write("usage: spanhost-bench-path CONFIG BODY REPEAT\n".data(using: .utf8)!)
    exit(2)
}
do {
    let config = try ServiceConfig.parse(yaml: String(contentsOfFile: arguments[1], encoding: .utf8),
                                         environment: ProcessInfo.processInfo.environment)
    let body = try Data(contentsOf: URL(fileURLWithPath: arguments[2]))
    let cache = NSTemporaryDirectory() + "spanhost-bench-path-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: cache) }
    let catalog = PluginCatalog.load(config.pluginNames, from: config.pluginDirs, cacheDirectory: cache,
                                     logger: Logger(label: "spanhost-bench-path"))
    let current = CurrentGeneration(try Generation(config: config, catalog: catalog))
    current.value.activate()
    let receiver = ComponentID(type: "otlp")
    var accepted = 0
    try body.withUnsafeBytes { raw in
        for _ in 0..<repeats {
            let batch = try SpanBatch.decode(raw, encoding: .protobuf, gzip: false, limit: 20 << 20)
            let spans = batch.spanCount
            if case .accepted(let rejected, _) = current.consume(batch, from: receiver) { accepted += spans - rejected }
        }
    }
    let report = current.close().shutdown(timeout: .seconds(60))
    print("accepted \(accepted) spans; \(report.summary)")
} catch {
    FileHandle.standardError.write("spanhost-bench-path: \(error)\n".data(using: .utf8)!)
    exit(1)
}
