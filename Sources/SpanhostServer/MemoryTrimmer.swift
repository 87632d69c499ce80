import CSpanhost
import Foundation
import SpanhostModel
import SpanhostSync

/// Gives memory back to the system after a burst. Batch arenas are many small blocks; once a
/// burst of held traces is decided and freed, the allocator keeps the pages unless asked. Every
/// few seconds this looks at the bytes batches hold, and when they fell far below their peak
/// since the last look that trimmed (or to nothing, with arena slabs still cached), it asks the
/// allocator to return free pages.
final class MemoryTrimmer: Sendable {
    private let stopped = Guarded(false)
    private let interval: Duration
    private let threshold: Int

    /// `threshold`: how far below the peak batch memory must fall before a trim.
    init(interval: Duration = .seconds(2), threshold: Int = 32 << 20) {
        self.interval = interval
        self.threshold = threshold
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "memory trimmer"
        thread.start()
    }

    func stop() {
        stopped.withLock(wake: .all) { $0 = true }
    }

    private func run() {
        var peak = SpanBatch.liveBytes
        while true {
            if stopped.wait(until: .now + interval, { $0 ? true : nil }) != nil { return }
            let live = SpanBatch.liveBytes
            peak = max(peak, live)
            // Also when no batch is alive and slabs are still cached: a trim in the middle of a
            // burst's release resets the peak, and the rest of the release may stay under the
            // threshold.
            if peak - live > threshold || (live == 0 && SpanBatch.arenaMappedBytes > 0) {
                sh_release_free_memory()
                peak = live
            }
        }
    }
}
