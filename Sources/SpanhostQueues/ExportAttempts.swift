import Foundation

/// The poison-batch ledger of a disk queue (`attempts.log` beside its segments). A line is
/// appended when a batch is taken for export (`B seq plugin`) and when it comes back (`E seq`).
/// A batch taken and never returned was being exported when the process died: at the next
/// start it is counted as one crash attempt (`C seq count plugin`, the compacted form). The
/// queue dead-letters a batch whose count reaches its limit instead of exporting it again, so a
/// plugin that crashes on one batch cannot crash-loop the host.
///
/// Lines are not fsynced: a process crash keeps what was written (the page cache survives it);
/// only a power loss can forget an attempt, which costs at most one more try.
final class ExportAttempts {
    struct Crashes: Equatable {
        var count: Int
        /// The plugin that was exporting the batch the last time.
        var plugin: String
    }

    private let path: String
    private var fd: Int32 = -1
    /// Counts of queued batches and batches out for export now: what a compaction keeps.
    private var crashes: [UInt64: Crashes] = [:]
    private var out: [UInt64: String] = [:]
    private var lines = 0
    private static let compactAfterLines = 100_000

    init(directory: String) {
        path = "\(directory)/attempts.log"
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reads what earlier runs left: crash counts by record sequence number.
    func recover() -> [UInt64: Crashes] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var crashes: [UInt64: Crashes] = [:]
        var open: [UInt64: String] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count >= 2, let seq = UInt64(fields[1]) else { continue }
            switch fields[0] {
            case "B": open[seq] = fields.count > 2 ? String(fields[2]) : ""
            case "E": open[seq] = nil
            case "C":
                if fields.count >= 3, let n = Int(fields[2]) {
                    crashes[seq] = Crashes(count: n, plugin: fields.count > 3 ? String(fields[3]) : "")
                }
            default: continue
            }
        }
        for (seq, plugin) in open {
            crashes[seq, default: Crashes(count: 0, plugin: plugin)].count += 1
            crashes[seq]?.plugin = plugin
        }
        return crashes
    }

    /// Starts a fresh ledger holding only the counts of batches still queued.
    func restart(keeping crashes: [UInt64: Crashes]) {
        self.crashes = crashes
        rewrite()
    }

    func taken(_ seq: UInt64, by plugin: String) {
        out[seq] = plugin
        append("B \(seq) \(plugin)\n")
    }

    /// The batch came back: exported, given up on, or put back in the queue.
    func returned(_ seq: UInt64, acknowledged: Bool) {
        out[seq] = nil
        if acknowledged { crashes[seq] = nil }
        append("E \(seq)\n")
        if lines > Self.compactAfterLines { rewrite() }
    }

    private func rewrite() {
        if fd >= 0 { close(fd) }
        let text = crashes.sorted { $0.key < $1.key }.map { "C \($0.key) \($0.value.count) \($0.value.plugin)\n" }.joined()
            + out.sorted { $0.key < $1.key }.map { "B \($0.key) \($0.value)\n" }.joined()
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
