// swift-tools-version:6.0
// The Swift plugin kit on its own: a plugin package that depends on this resolves nothing else
// (no SwiftNIO, Yams or Prometheus), and builds against the one public header.
import PackageDescription

let package = Package(
    name: "SpanhostPluginKit",
    products: [
        .library(name: "SpanhostPluginKit", targets: ["SpanhostPluginKit"]),
        // Blocking HTTP (URLSession): its own product, so only plugins that send HTTP link
        // FoundationNetworking and what it brings (curl, ICU, TLS).
        .library(name: "SpanhostPluginHTTP", targets: ["SpanhostPluginHTTP"]),
        // The header alone, as a module (the host's C core builds on it too).
        .library(name: "CSpanhostABI", targets: ["CSpanhostABI"]),
    ],
    targets: [
        // A copy of the repository's include/spanhost/spanhost.h, so the kit can be copied or
        // published on its own; `make header-check` fails when the two differ.
        .target(name: "CSpanhostABI"),
        // Protocols over views of the C structs, registration, the host's services.
        .target(name: "SpanhostPluginKit", dependencies: ["CSpanhostABI"]),
        .target(name: "SpanhostPluginHTTP"),
    ],
    swiftLanguageModes: [.v6]
)
