import Foundation
import SpanhostModel

/// The first-party plugins `make build` makes, for tests that load the real ones.
public enum BuiltPlugins {
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../build/plugins").standardized.path

    /// Where plugin images are copied to be loaded: one for the whole test process, since an
    /// image is loaded once per process, from one place.
    public static let cacheDirectory = NSTemporaryDirectory() + "spanhost-plugin-tests-\(getpid())"

    /// The path of plugin `name`; throws `BuildMissing` when it was not built.
    public static func path(_ name: String) throws -> String {
        let path = "\(directory)/\(name).so"
        guard FileManager.default.fileExists(atPath: path) else { throw BuildMissing(path: path) }
        return path
    }
}

/// A test that needs the plugins `make build` makes fails with this when they are missing,
/// rather than being skipped and passing without testing.
public struct BuildMissing: Error, CustomStringConvertible {
    public var path: String
    public var description: String { "\(path) is missing: run `make build` (make test does) first" }
}

/// A batch of `n` spans with distinct ids, each with a `user.email` attribute.
public func sampleSpans(_ n: Int) throws -> SpanBatch {
    let spans = (0..<n).map { i in
        #"{"traceId":"\#(String(format: "%032x", i + 1))","spanId":"\#(String(format: "%016x", i + 1))","name":"s","attributes":[{"key":"user.email","value":{"stringValue":"a@b"}}]}"#
    }
    let body = #"{"resourceSpans":[{"scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
    return try SpanBatch.decode(Array(body.utf8), encoding: .json)
}
