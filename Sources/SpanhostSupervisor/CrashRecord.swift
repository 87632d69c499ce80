import Foundation
import SpanhostServer

/// What a worker's crash handler wrote when a signal killed it: the signal and, when a plugin
/// call was running, which plugin, component and hook, and the queue record being exported.
public struct CrashRecord: Sendable, Equatable, Codable {
    public var time: String
    public var signal: Int32
    public var plugin: String?
    public var version: String?
    public var file: String?
    public var sha256: String?
    public var component: String?
    public var hook: String?
    /// The persistent queue's record number of the batch being exported.
    public var record: Int64?

    /// The last complete record in `text` (lines `key=value`, ended by `end`), if any.
    public static func parse(_ text: String, time: Date = Date()) -> CrashRecord? {
        // What follows the last `end` is a record cut off (the handler did not finish), or nothing.
        let blocks = text.components(separatedBy: "end\n").dropLast().filter { $0.contains("signal=") }
        guard let block = blocks.last else { return nil }
        var fields: [String: String] = [:]
        for line in block.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let signal = fields["signal"].flatMap(Int32.init) else { return nil }
        func field(_ key: String) -> String? { fields[key].flatMap { $0.isEmpty ? nil : $0 } }
        return CrashRecord(time: ISO8601DateFormatter().string(from: time), signal: signal, plugin: field("plugin"),
                           version: field("version"), file: field("file"), sha256: field("sha256"),
                           component: field("component"), hook: field("hook"), record: field("record").flatMap(Int64.init))
    }

    /// For the log: who crashed, how.
    public var summary: String {
        let sig = "signal \(signal) (\(Self.signalName(signal)))"
        guard let plugin else { return "\(sig) outside any plugin call" }
        var text = "plugin \(plugin) \(version ?? "") (\(file ?? "?"), sha256 \(sha256 ?? "?")) in \(hook ?? "?") of \(component ?? "?"): \(sig)"
        if let record { text += ", exporting queue record \(record)" }
        return text
    }

    public static func signalName(_ signal: Int32) -> String { ConfigCheck.signalName(signal) }
}
