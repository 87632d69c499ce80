// A minimal processor: sets `deployment.environment` on every span and drops spans whose name
// is in `drop_names`. Config: `environment` (string, required), `drop_names` (list of strings).
import SpanhostPluginKit

final class ExampleSwiftProcessor: SpanProcessorPlugin {
    let host: PluginHost
    let environment: String
    let dropNames: Set<String>

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        guard let environment = try config.string("environment") else { throw PluginError("environment: required") }
        self.environment = environment
        dropNames = Set(try config.strings("drop_names") ?? [])
    }

    func process(_ batch: MutableBatchView) -> PluginResult {
        batch.forEachSpan { span in
            if dropNames.contains(span.view.name) {
                span.drop()
                host.count("dropped_spans")
            } else {
                span.setAttribute("deployment.environment", environment)
            }
        }
        return .ok
    }
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.processor(ExampleSwiftProcessor.self, name: "example_swift_processor", version: "0.1.0",
                             description: "tags spans with an environment and drops spans by name", schema: [
                                 ConfigKey("environment", .string, required: true, "value of deployment.environment on every span"),
                                 ConfigKey("drop_names", .stringList, "span names to drop"),
                             ], host: host)
}
