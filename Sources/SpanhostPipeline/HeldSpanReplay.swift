import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostQueues

/// Feeds the spans processors held when an earlier process died (their hold journals) back to
/// the same processors, on a thread of its own, while new data flows. Each record leaves the
/// old journal once the processor has taken it again (and so written it to its new journal);
/// the old journal's directory goes when it is empty. A record refused for now (a full queue)
/// is tried again every second; one that does not decode is logged and left on disk.
public enum HeldSpanReplay {
    struct Work: Sendable {
        var pipeline: String
        var processor: ComponentID
        /// A journal's directory: the journal is opened on the replay thread, which alone uses it.
        var journal: String
    }

    /// Starts replaying what the current generation's journals left behind; does nothing (and
    /// starts no thread) when there is nothing. Only the first call in a process finds any.
    public static func start(_ current: CurrentGeneration, logger: Logger) {
        var work: [Work] = []
        for pipeline in current.value.pipelines {
            for (processor, journal) in zip(pipeline.processors, pipeline.journals) {
                for leftover in journal?.leftovers() ?? [] {
                    work.append(Work(pipeline: pipeline.id, processor: processor.id, journal: leftover.directory))
                }
            }
        }
        guard !work.isEmpty else { return }
        let items = work
        let thread = Thread {
            for item in items {
                guard replay(item, current, logger: logger) else { return }
            }
        }
        thread.name = "held span replay"
        thread.start()
    }

    /// Replays one journal; false when the server is shutting down.
    private static func replay(_ item: Work, _ current: CurrentGeneration, logger: Logger) -> Bool {
        var logger = logger
        logger[metadataKey: "journal"] = "\(item.journal)"
        let journal = LeftoverJournal(directory: item.journal)
        let count: Int
        do { count = try journal.open() } catch {
            logger.error("cannot read a hold journal left by an earlier process; it stays on disk", metadata: ["error": "\(error)"])
            return true
        }
        var spans = 0, undecodable = 0
        for i in 0..<count {
            while true {
                let batch: SpanBatch
                do { batch = try journal.batch(i) } catch {
                    logger.error("cannot read back a held batch; it stays on disk", metadata: ["error": "\(error)"])
                    undecodable += 1
                    break
                }
                let size = batch.spanCount
                switch current.replay(batch, pipeline: item.pipeline, processor: item.processor) {
                case .failure(.closed):
                    journal.close()
                    return false
                case .failure(.noSuchProcessor):
                    logger.error("held spans of a processor the config no longer has in this pipeline stay on disk",
                                 metadata: ["pipeline": "\(item.pipeline)", "processor": "\(item.processor)"])
                    journal.close()
                    return true
                case .success(.refused):
                    Thread.sleep(forTimeInterval: 1)
                    continue
                case .success:
                    journal.done(i)
                    spans += size
                }
                break
            }
        }
        logger.notice("spans held when the previous process stopped were fed to their processor again",
                      metadata: ["pipeline": "\(item.pipeline)", "processor": "\(item.processor)", "spans": "\(spans)"])
        if undecodable == 0 { journal.remove() } else { journal.close() }
        return true
    }
}
