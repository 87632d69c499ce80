import Foundation

/// Plugin images that crashed the process too often, kept in a JSON file the supervisor writes
/// and every plugin scan reads. A quarantined image (by sha256) is not loaded at all, so its
/// constructors never run again; a changed file has a new sha256 and loads. An operator clears
/// entries through the admin endpoint (`POST /-/quarantine/clear`).
public struct Quarantine: Sendable, Equatable, Codable {
    public struct Entry: Sendable, Equatable, Codable {
        public var sha256: String
        public var plugin: String
        public var version: String
        public var file: String
        public var reason: String
        public var since: String

        public init(sha256: String, plugin: String, version: String, file: String, reason: String, since: String) {
            self.sha256 = sha256
            self.plugin = plugin
            self.version = version
            self.file = file
            self.reason = reason
            self.since = since
        }
    }

    public var entries: [Entry] = []

    public init(entries: [Entry] = []) { self.entries = entries }

    public func entry(sha256: String) -> Entry? { entries.first { $0.sha256 == sha256 } }

    /// The file's entries; none when there is no file (or no path).
    public static func read(_ path: String?) -> Quarantine {
        guard let path, let data = FileManager.default.contents(atPath: path),
              let entries = try? JSONDecoder().decode([Entry].self, from: data) else { return Quarantine() }
        return Quarantine(entries: entries)
    }

    /// Replaces the file atomically.
    public func write(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(entries).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
