import SpanhostConfig
import SpanhostModel
import Synchronization

/// The generation receivers hand batches to. Swapping it is atomic: a batch runs wholly in the
/// generation it entered, and the old generation knows when its last batch has left.
public final class CurrentGeneration: Sendable {
    private struct Slot {
        var generation: Generation
        var closed = false
    }
    private let slot: Mutex<Slot>

    public init(_ generation: Generation) { slot = Mutex(Slot(generation: generation)) }

    public var value: Generation { slot.withLock { $0.generation } }

    /// Runs `batch` through the pipelines of `receiver` on the caller's thread, which may block.
    public func consume(_ batch: SpanBatch, from receiver: ComponentID) -> ConsumeOutcome {
        consume(batch, from: receiver, placement: .pool)!
    }

    /// Bodies up to this size, uncompressed, may be decoded on the event loop that read them
    /// (about a millisecond of decoding at most); larger or compressed ones always go to the pool.
    public static let eventLoopBodyLimit = 1 << 20

    /// The placement policy, the only place that chooses between an event loop and the pool: a
    /// request's batch runs on the loop that read it when its body is small and uncompressed and
    /// every processor and exporter on its way (downstream pipelines included) declares it never
    /// blocks; anything else runs on the pool. The generation may change before the batch is
    /// handed over: `consume` then checks again (see there).
    public func placement(from receiver: ComponentID, bodyBytes: Int, compressed: Bool) -> BatchPlacement {
        guard !compressed, bodyBytes <= Self.eventLoopBodyLimit else { return .pool }
        return slot.withLock { $0.generation.neverBlocks(from: receiver) } ? .eventLoop : .pool
    }

    /// Runs `batch` through the pipelines of `receiver` on the caller's thread. With
    /// `.eventLoop`, the generation the batch enters must still never block; if it may (a
    /// reload came in between), nothing is done and the answer is nil: run it on the pool.
    public func consume(_ batch: SpanBatch, from receiver: ComponentID, placement: BatchPlacement) -> ConsumeOutcome? {
        enum Entry { case entered(Generation), closed, blocking }
        let entry: Entry = slot.withLock { slot in
            guard !slot.closed else { return .closed }
            if placement == .eventLoop && !slot.generation.neverBlocks(from: receiver) { return .blocking }
            slot.generation.enter()
            return .entered(slot.generation)
        }
        switch entry {
        case .closed: return .refused(retryAfterSeconds: 1, message: "spanhost is shutting down")
        case .blocking: return nil
        case .entered(let current):
            defer { current.leave() }
            return current.consume(batch, from: receiver)
        }
    }

    /// Why a held batch of an earlier process could not be fed again.
    public enum ReplayRefusal: Error {
        /// The config no longer has that processor in that pipeline.
        case noSuchProcessor
        case closed
    }

    /// Feeds `batch`, which processor `processor` of pipeline `pipeline` held when an earlier
    /// process died, to that processor in the current generation (and on down its pipeline).
    public func replay(_ batch: SpanBatch, pipeline: String, processor: ComponentID) -> Result<ConsumeOutcome, ReplayRefusal> {
        let entered: Result<(Generation, Pipeline, Int), ReplayRefusal> = slot.withLock { slot in
            guard !slot.closed else { return .failure(.closed) }
            let generation = slot.generation
            guard let line = generation.pipelines.first(where: { $0.id == pipeline }),
                  let index = line.processors.firstIndex(where: { $0.id == processor }) else { return .failure(.noSuchProcessor) }
            generation.enter()
            return .success((generation, line, index))
        }
        return entered.map { generation, line, index in
            defer { generation.leave() }
            let spans = batch.spanCount
            let outcome = line.run(batch, from: index)
            if case .refused = outcome {} else { line.processors[index].counters.add("replayed_spans", Int64(spans)) }
            return outcome
        }
    }

    /// Refuses every later batch and returns the generation to shut down. A batch either
    /// entered before (and the generation waits for it) or is refused: none slips between.
    public func close() -> Generation {
        slot.withLock { slot in
            slot.closed = true
            return slot.generation
        }
    }

    /// Makes `next` current and returns the one it replaced.
    public func swap(to next: Generation) -> Generation {
        slot.withLock { slot in
            let old = slot.generation
            next.activate()
            slot.generation = next
            return old
        }
    }
}
