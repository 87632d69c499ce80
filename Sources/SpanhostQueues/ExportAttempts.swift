import CSpanhost
import Foundation

/// The poison-batch ledger of a disk queue (`attempts.log` beside its segments). A line is
/// appended when a batch is taken for export (`B seq digest plugin`) and when it comes back
/// (`E seq`), and `C digest 0` when content that crashed before was delivered. A batch taken
/// and never returned was being exported when the process died: if it died in this queue's
/// plugin (the supervisor's crash record says which component), at the next start its content
/// counts one crash (`C digest count plugin`, the compacted form). A kill -9, or a crash in
/// another component, counts nothing.
///
/// Crashes are counted by the batch's content (its digest), not by its place in the queue: a
/// client that sends a request again after the crash made its 200 go missing queues the same
/// bytes as a new record, and that record is the same poison. The queue dead-letters a batch
/// whose content reached its limit instead of exporting it again, so a plugin that crashes on
/// one batch cannot crash-loop the host, however often a client retries.
///
/// Lines are not fsynced: a process crash keeps what was written (the page cache survives it);
/// only a power loss can forget an attempt, which costs at most one more try.
final class ExportAttempts {
    struct Crashes: Equatable {
        var count: Int
        /// The plugin that was exporting the batch the last time.
        var plugin: String
    }

    /// A batch's content: CRC-32 and length of its encoded bytes.
    struct Digest: Hashable, Sendable, CustomStringConvertible {
        var crc: UInt32
        var length: Int

        init(_ bytes: UnsafeRawBufferPointer) {
            crc = bytes.count > 0 ? sh_crc32(0, bytes.baseAddress, bytes.count) : 0
            length = bytes.count
        }

        init?(_ text: Substring) {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let crc = UInt32(parts[0], radix: 16), let length = Int(parts[1]) else { return nil }
            self.crc = crc
            self.length = length
        }

        var description: String { String(crc, radix: 16) + ":\(length)" }
    }

    private let path: String
    private var fd: Int32 = -1
    /// Crash counts by content, and batches out for export now: what a compaction keeps.
    private var crashes: [Digest: Crashes] = [:]
    private var out: [UInt64: (digest: Digest, plugin: String)] = [:]
    private var lines = 0
    private static let compactAfterLines = 100_000
    /// Contents that crashed are few; past this many the oldest counts are forgotten.
    private static let maxCrashEntries = 10_000

    init(directory: String) {
        path = "\(directory)/attempts.log"
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reads what earlier runs left and starts a fresh ledger holding the crash counts.
    /// `countingCrash`: the process died in this queue's plugin, so each batch it had out
    /// counts one crash; otherwise (killed, or another component crashed) none does.
    func recover(countingCrash: Bool) {
        var crashes: [Digest: Crashes] = [:]
        var open: [UInt64: (Digest, String)] = [:]
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count >= 2 else { continue }
            switch fields[0] {
            case "B":
                if fields.count >= 3, let seq = UInt64(fields[1]), let digest = Digest(fields[2]) {
                    open[seq] = (digest, fields.count > 3 ? String(fields[3]) : "")
                }
            case "E":
                if let seq = UInt64(fields[1]) { open[seq] = nil }
            case "C":
                if fields.count >= 3, let digest = Digest(fields[1]), let n = Int(fields[2]) {
                    crashes[digest] = n > 0 ? Crashes(count: n, plugin: fields.count > 3 ? String(fields[3]) : "") : nil
                }
            default: continue
            }
        }
        for (digest, plugin) in open.values where countingCrash {
            crashes[digest, default: Crashes(count: 0, plugin: plugin)].count += 1
            crashes[digest]?.plugin = plugin
        }
        self.crashes = crashes
        rewrite()
    }

    /// How often the process died while a batch with this content was being exported.
    func crashes(of digest: Digest) -> Crashes? { crashes[digest] }

    func taken(_ seq: UInt64, digest: Digest, by plugin: String) {
        out[seq] = (digest, plugin)
        append("B \(seq) \(digest) \(plugin)\n")
    }

    /// The batch came back: exported, given up on, or put back in the queue. Content that was
    /// delivered or dead-lettered is poison no more.
    func returned(_ seq: UInt64, acknowledged: Bool) {
        let digest = out.removeValue(forKey: seq)?.digest
        append("E \(seq)\n")
        if acknowledged, let digest, crashes.removeValue(forKey: digest) != nil { append("C \(digest) 0\n") }
        if lines > Self.compactAfterLines { rewrite() }
    }

    private func rewrite() {
        if fd >= 0 { close(fd) }
        if crashes.count > Self.maxCrashEntries {
            crashes = Dictionary(uniqueKeysWithValues: crashes.sorted { $0.value.count > $1.value.count }.prefix(Self.maxCrashEntries).map { ($0.key, $0.value) })
        }
        let text = crashes.map { "C \($0.key) \($0.value.count) \($0.value.plugin)\n" }.sorted().joined()
            + out.sorted { $0.key < $1.key }.map { "B \($0.key) \($0.value.digest) \($0.value.plugin)\n" }.joined()
        try? text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
        _ = rename(path + ".new", path)
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        lines = crashes.count + out.count
    }

    private func append(_ line: String) {
        guard fd >= 0 else { return }
        lines += 1
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }
}
