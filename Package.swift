// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Spanhost",
    products: [
        .executable(name: "spanhostd", targets: ["spanhostd"]),
        .executable(name: "spanhost", targets: ["spanhost"]),
        .executable(name: "spanhost-baseline", targets: ["spanhost-baseline"]),
        .executable(name: "spanhost-bench-path", targets: ["spanhost-bench-path"]),
        // First-party plugins written with the Swift plugin kit (dynamic libraries).
        .library(name: "spanhost-otlphttp", type: .dynamic, targets: ["OTLPHTTPExporter"]),
        .library(name: "spanhost-zipkin", type: .dynamic, targets: ["ZipkinExporter"]),
        .library(name: "spanhost-webhook", type: .dynamic, targets: ["WebhookNotifier"]),
    ],
    dependencies: [
        // The header module and the Swift plugin kit, a package of their own (PluginKit/).
        .package(path: "PluginKit"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
    ],
    targets: [
        // The host's C core: batch arenas and OTLP codecs.
        .target(
            name: "CSpanhost",
            dependencies: [.product(name: "CSpanhostABI", package: "PluginKit")],
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("crypto"), .linkedLibrary("dl"), .linkedLibrary("ffi")]
        ),
        // librdkafka (Debian librdkafka-dev), for the kafka receiver.
        .systemLibrary(name: "CRdKafka", path: "Sources/CRdKafka"),
        // Span batches as arena-backed C structs, Swift views and codec entry points.
        .target(name: "SpanhostModel", dependencies: ["CSpanhost"]),
        // Shared state with waiting (a lock and a condition over one value).
        .target(name: "SpanhostSync"),
        // YAML config: parsing, ${env:...} substitution, validation into typed values.
        .target(name: "SpanhostConfig", dependencies: [.product(name: "Yams", package: "Yams")]),
        // The plugin host: discovery, content-addressed copies, dlopen, ABI checks, the host table, instances.
        .target(
            name: "SpanhostPluginHost",
            dependencies: ["SpanhostSync", "CSpanhost", "SpanhostModel", "SpanhostConfig",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // Alert rules (error_span, error_rate, latency) and deduplication of notifications.
        .target(name: "SpanhostAlerts", dependencies: ["CSpanhost", "SpanhostModel", "SpanhostConfig", "SpanhostSync"]),
        // Exporter sending queues: in memory, or in checksummed segment files on disk.
        .target(name: "SpanhostQueues", dependencies: ["CSpanhost", "SpanhostModel", "SpanhostConfig", "SpanhostSync",
                                                 .product(name: "DequeModule", package: "swift-collections"),
                                                 .product(name: "Logging", package: "swift-log")]),
        // Connectors (as the config calls them): the service graph, span metrics, trace completeness.
        .target(name: "SpanhostConnectors", dependencies: ["CSpanhost", "SpanhostModel", "SpanhostConfig",
                                                  .product(name: "DequeModule", package: "swift-collections")]),
        // Pipelines: processor chains, exporter and notifier runners with retry, generations.
        .target(
            name: "SpanhostPipeline",
            dependencies: ["CSpanhost", "SpanhostModel", "SpanhostPluginHost", "SpanhostConfig", "SpanhostAlerts", "SpanhostQueues", "SpanhostConnectors", "SpanhostSync",
                           .product(name: "DequeModule", package: "swift-collections"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // Receivers: the HTTP server, OTLP/HTTP, Zipkin and Jaeger wires (TLS with swift-nio-ssl), Kafka, the Jaeger agent.
        .target(
            name: "SpanhostReceivers",
            dependencies: ["CSpanhost", "CRdKafka", "SpanhostModel", "SpanhostConfig",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // A running server: the admin endpoint and page, the receiver registry, reloads, shutdown.
        .target(
            name: "SpanhostServer",
            dependencies: ["SpanhostConfig", "SpanhostPluginHost", "SpanhostPipeline", "SpanhostQueues", "SpanhostReceivers", "SpanhostConnectors", "SpanhostSync",
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The supervisor: owns sockets and the admin endpoint, restarts a crashed worker, quarantines.
        .target(
            name: "SpanhostSupervisor",
            dependencies: ["CSpanhost", "SpanhostModel", "SpanhostConfig", "SpanhostPluginHost", "SpanhostReceivers", "SpanhostServer", "SpanhostSync",
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "spanhostd",
            dependencies: ["SpanhostServer", "SpanhostSupervisor", "SpanhostPluginHost", "CSpanhost",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The operator's and plugin author's tool: validate, plugins list/describe, plugin-test.
        .executableTarget(
            name: "spanhost",
            dependencies: ["CSpanhost", "SpanhostPluginHost", "SpanhostModel", "SpanhostConfig",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The HTTP client of the Swift exporters: SwiftNIO with swift-nio-ssl (private CAs, mTLS),
        // linked into each plugin.
        .target(name: "PluginHTTP", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit"),
                                                   .product(name: "NIOCore", package: "swift-nio"),
                                                   .product(name: "NIOPosix", package: "swift-nio"),
                                                   .product(name: "NIOHTTP1", package: "swift-nio"),
                                                   .product(name: "NIOSSL", package: "swift-nio-ssl")],
                path: "plugins/http"),
        .target(name: "OTLPHTTPExporter", dependencies: ["PluginHTTP", .product(name: "SpanhostPluginKit", package: "PluginKit")],
                path: "plugins/otlphttp"),
        .target(name: "ZipkinExporter", dependencies: ["PluginHTTP", .product(name: "SpanhostPluginKit", package: "PluginKit")],
                path: "plugins/zipkin"),
        .target(name: "WebhookNotifier", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit"),
                                                        .product(name: "SpanhostPluginHTTP", package: "PluginKit")], path: "plugins/webhook"),
        // Benchmark ceiling: the receiver's HTTP server without decoding.
        .executableTarget(
            name: "spanhost-baseline",
            dependencies: ["SpanhostReceivers", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio")]
        ),
        // Benchmark of the data path without sockets, for instruction counts under callgrind.
        .executableTarget(
            name: "spanhost-bench-path",
            dependencies: ["SpanhostPipeline", "SpanhostPluginHost", "SpanhostModel", "SpanhostConfig",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // What tests share: where the built plugins are.
        .target(name: "SpanhostTestSupport", dependencies: ["SpanhostModel"], path: "Tests/SpanhostTestSupport"),
        .testTarget(name: "SpanhostModelTests", dependencies: ["SpanhostModel", "CSpanhost"]),
        .testTarget(name: "SpanhostConfigTests", dependencies: ["SpanhostConfig"]),
        .testTarget(name: "SpanhostQueuesTests", dependencies: ["SpanhostQueues", "SpanhostModel", "CSpanhost"]),
        .testTarget(name: "SpanhostAlertsTests", dependencies: ["SpanhostAlerts", "SpanhostModel", "SpanhostConfig", "CSpanhost"]),
        .testTarget(name: "SpanhostPipelineTests", dependencies: ["SpanhostTestSupport", "SpanhostPipeline", "SpanhostConfig", "SpanhostModel", "SpanhostPluginHost", "SpanhostQueues",
                                                                 .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SpanhostSyncTests", dependencies: ["SpanhostSync"]),
        .testTarget(name: "SpanhostConnectorsTests", dependencies: ["SpanhostConnectors", "SpanhostConfig", "SpanhostModel"]),
        .testTarget(name: "SpanhostReceiversTests", dependencies: ["SpanhostReceivers", "SpanhostConfig", "SpanhostModel", "CSpanhost",
                                                                  .product(name: "NIOCore", package: "swift-nio"),
                                                                  .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "SpanhostPluginHostTests", dependencies: ["SpanhostTestSupport", "SpanhostPluginHost", "SpanhostConfig", "SpanhostModel"]),
        .testTarget(name: "SpanhostSupervisorTests", dependencies: ["SpanhostSupervisor"]),
        .testTarget(name: "SpanhostServerTests", dependencies: ["SpanhostTestSupport", "SpanhostServer", "SpanhostPipeline", "SpanhostConfig",
                                                               "SpanhostModel", "SpanhostPluginHost",
                                                               .product(name: "Logging", package: "swift-log"),
                                                               .product(name: "NIOPosix", package: "swift-nio")]),
    ],
    swiftLanguageModes: [.v6]
)
