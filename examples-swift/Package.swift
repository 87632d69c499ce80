// swift-tools-version:6.0
// Swift plugins: an exporter, a processor, a processor that holds spans, and functions for
// expressions. Build: swift build -c release, then copy .build/release/libexample_swift_exporter.so
// (and the others) into a plugin directory, named after the plugin: example_swift_exporter.so.
import PackageDescription

let package = Package(
    name: "ExamplePlugins",
    products: [
        // Plugins are dynamic libraries; build them with the toolchain spanhostd was built with.
        .library(name: "example_swift_exporter", type: .dynamic, targets: ["ExampleSwiftExporter"]),
        .library(name: "example_swift_processor", type: .dynamic, targets: ["ExampleSwiftProcessor"]),
        .library(name: "example_swift_buffer", type: .dynamic, targets: ["ExampleSwiftBuffer"]),
        .library(name: "example_swift_functions", type: .dynamic, targets: ["ExampleSwiftFunctions"]),
    ],
    dependencies: [
        // Inside this repository; from elsewhere, point `path` at a checkout of PluginKit/.
        .package(path: "../PluginKit"),
    ],
    targets: [
        .target(name: "ExampleSwiftExporter", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit")]),
        .target(name: "ExampleSwiftProcessor", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit")]),
        .target(name: "ExampleSwiftBuffer", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit")]),
        .target(name: "ExampleSwiftFunctions", dependencies: [.product(name: "SpanhostPluginKit", package: "PluginKit")]),
    ]
)
