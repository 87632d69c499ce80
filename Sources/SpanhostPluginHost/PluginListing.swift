import CSpanhost
import Foundation
import SpanhostModel

/// `spanhost plugins list`: what each file in the plugin directories registers. The server opens only the files its config names; listing opens every
/// file, so each is opened in a child process of its own (the executable run again with
/// `inspectArguments`), where its constructors and crashes stay.
public enum PluginListing {
    public struct Entry: Codable {
        public var file: String
        public var name, kind, version, abi, sha256, description: String?
        /// The declared config keys (ABI 1.2); nil when the plugin declared no schema.
        public var schema: [SchemaKey]?
        /// Functions added to expressions, as signatures: "geo_country(string) -> string  ...".
        public var functions: [String]?
        public var error: String?
    }

    public struct SchemaKey: Codable {
        public var path, type: String
        public var required: Bool
        public var defaultValue: String?
        public var doc: String
    }

    /// In the child: loads one file from a throw-away cache and describes it as one JSON line.
    public static func inspect(_ file: String) -> String {
        let scratch = "\(NSTemporaryDirectory())spanhost-inspect-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var entry = Entry(file: file)
        do {
            let library = try PluginCatalog.load(path: file, cacheDirectory: scratch)
            entry.name = library.name
            entry.kind = library.kind.rawValue
            entry.version = library.version
            entry.abi = "\(library.abiMajor).\(library.abiMinor)"
            entry.sha256 = library.sha256
            entry.description = library.description
            entry.schema = library.schema?.keys.map {
                SchemaKey(path: $0.path, type: $0.type.name, required: $0.required, defaultValue: $0.defaultValue, doc: $0.doc)
            }
            if !library.functions.isEmpty {
                entry.functions = library.functions.map { name in
                    var text = [CChar](repeating: 0, count: 512)
                    return sh_function_signature(name, &text, text.count) == 0 ? String(nulTerminated: text) : name
                }
            }
        } catch {
            entry.error = "\(error)"
        }
        return String(decoding: (try? JSONEncoder().encode(entry)) ?? Data(), as: UTF8.self)
    }

    /// In the parent: one line per file, first directory first.
    public static func list(directories: [String], inspectArguments: (String) -> [String]) -> String {
        let files = PluginCatalog.files(in: directories)
        if files.isEmpty { return "no plugin files in \(directories.joined(separator: ", "))\n" }
        var out = ""
        for (name, path) in files {
            let entry = inspectInChild(path, arguments: inspectArguments(path))
            var line = "\(name)\t"
            if let error = entry.error {
                line += "refused: \(error)"
            } else {
                line += "\(entry.kind ?? "?") \(entry.name ?? "?") \(entry.version ?? "?") abi \(entry.abi ?? "?") sha256 \(entry.sha256 ?? "?")"
            }
            out += line + "\n"
        }
        return out
    }

    /// One file, described by a child process.
    public static func inspectInChild(_ path: String, arguments: [String]) -> Entry {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = arguments
        child.environment = ProcessInfo.processInfo.environment.merging(["SPANHOST_LOG_LEVEL": "error"]) { _, new in new }
        let out = Pipe()
        child.standardOutput = out
        child.standardError = FileHandle.nullDevice
        do { try child.run() } catch { return Entry(file: path, error: "cannot start a child to inspect it: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        if child.terminationReason == .uncaughtSignal {
            return Entry(file: path, error: "opening it killed the inspecting process (signal \(child.terminationStatus))")
        }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        return (try? JSONDecoder().decode(Entry.self, from: Data(line.utf8)))
            ?? Entry(file: path, error: "the inspecting process exited \(child.terminationStatus) without an answer")
    }
}
