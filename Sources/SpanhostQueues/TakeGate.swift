import Synchronization

/// One taker's side of a queue: until when it takes batches, and how many it has in hand.
///
/// The queue reads and raises these under its own lock as it hands a batch out; they are
/// atomics, so no code of the taker runs there and the taker may call the queue while holding
/// locks of its own. The count rises in the same step as the batch leaves the queue, so a
/// shutdown that sees the queue empty and nothing in hand knows every batch is accounted for.
public final class TakeGate: Sendable {
    private let origin = ContinuousClock.now
    /// Nanoseconds after `origin` at which takes stop; `Int64.max` while open without end.
    private let closesAt = Atomic<Int64>(.max)
    private let handedOut = Atomic<Int>(0)

    public init() {}

    /// Takes stop at `instant` (at once when it has passed). Wake the queue afterwards, so a
    /// take already waiting sees it.
    public func close(at instant: ContinuousClock.Instant) {
        closesAt.store(nanoseconds(instant), ordering: .sequentiallyConsistent)
    }

    public func isOpen(at now: ContinuousClock.Instant = .now) -> Bool {
        nanoseconds(now) < closesAt.load(ordering: .sequentiallyConsistent)
    }

    /// Batches handed out through this gate and not yet given back with `returned`.
    public var inHand: Int { handedOut.load(ordering: .sequentiallyConsistent) }

    /// Called by a queue, under its lock, as a batch leaves it for this taker.
    func handOut() { handedOut.add(1, ordering: .sequentiallyConsistent) }

    /// The taker is done with `count` batches (delivered, given up on or released).
    public func returned(_ count: Int) { handedOut.subtract(count, ordering: .sequentiallyConsistent) }

    private func nanoseconds(_ instant: ContinuousClock.Instant) -> Int64 {
        guard instant > origin else { return 0 }
        let (seconds, attoseconds) = (instant - origin).components
        return seconds >= Int64.max / 1_000_000_000 - 1 ? .max - 1 : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
