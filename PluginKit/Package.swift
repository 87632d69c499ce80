// swift-tools-version:6.0
// The Swift plugin kit on its own: a plugin package that depends on this resolves nothing else
// (no SwiftNIO, Yams or Prometheus), and builds against the one public header.
import PackageDescription

let package = Package(
    name: "SpanhostPluginKit",
    products: [
        .library(name: "SpanhostPluginKit", targets: ["SpanhostPluginKit"]),
        // The header alone, as a module (the host's C core builds on it too).
        .library(name: "CSpanhostABI", targets: ["CSpanhostABI"]),
    ],
    targets: [
        // include/spanhost/spanhost.h of the repository, through a symbolic link.
        .target(name: "CSpanhostABI"),
        // Protocols over read-only views of the C structs, registration, blocking HTTP.
        .target(name: "SpanhostPluginKit", dependencies: ["CSpanhostABI"]),
    ],
    swiftLanguageModes: [.v5]
)
