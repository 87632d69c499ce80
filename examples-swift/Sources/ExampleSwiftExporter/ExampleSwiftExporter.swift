// A minimal exporter: counts spans and error spans, and logs one line per batch.
// Config: `label` (string, default "spans").
import SpanhostPluginKit

final class ExampleSwiftExporter: SpanExporterPlugin {
    let host: PluginHost
    let label: String

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        label = try config.string("label") ?? "spans"
    }

    func export(_ batch: BatchView) -> PluginResult {
        var errors: Int64 = 0
        batch.forEachSpan { span, _, _ in
            if span.statusCode == UInt32(SPANHOST_STATUS_ERROR) { errors += 1 }
        }
        host.count("spans", Int64(batch.spanCount))
        if errors > 0 { host.count("error_spans", errors) }
        host.log(.info, "\(label): \(batch.spanCount) spans, \(errors) with errors")
        return .ok
    }
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.exporter(ExampleSwiftExporter.self, name: "example_swift_exporter", version: "0.1.0",
                            description: "counts spans and error spans", schema: [
                                ConfigKey("label", .string, default: "spans", "text that starts each log line"),
                            ], host: host)
}
