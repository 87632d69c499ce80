import Foundation
import Synchronization

/// Counts of one receiver, shown at /status.
public final class ReceiverCounters: Sendable {
    private struct Counts {
        var accepted: Int64 = 0
        var dropped: Int64 = 0
        var refused: Int64 = 0
        var rejected: Int64 = 0
        /// Requests without an accepted token (answered 401).
        var unauthenticated: Int64 = 0
        /// Kafka: times the partitions were paused because the pipelines refused.
        var paused: Int64 = 0
        /// Kafka: partitions assigned to this member now (nil for other receivers).
        var assigned: Int64?
        /// Kafka: messages held by backpressure and given up unstored because their partition
        /// went to another member (which reads them).
        var handedOver: Int64 = 0
        /// Kafka: this member's id in the group, the rebalances it took part in, and when the
        /// last one was.
        var group: Group?
    }
    private let counts = Mutex(Counts())

    public struct Group: Sendable, Encodable {
        public var memberID: String
        public var rebalances: Int
        public var rebalanceProtocol: String
        public var lastRebalance: String
    }

    public init() {}

    public func add(acceptedSpans: Int = 0, droppedSpans: Int = 0, refusedRequests: Int = 0, rejectedRequests: Int = 0,
                    unauthenticatedRequests: Int = 0, pauses: Int = 0, handedOver: Int = 0) {
        counts.withLock { counts in
            counts.accepted += Int64(acceptedSpans)
            counts.dropped += Int64(droppedSpans)
            counts.refused += Int64(refusedRequests)
            counts.rejected += Int64(rejectedRequests)
            counts.paused += Int64(pauses)
            counts.unauthenticated += Int64(unauthenticatedRequests)
            counts.handedOver += Int64(handedOver)
        }
    }

    /// Kafka: the group gave (positive) or took (negative) partitions.
    public func changeAssignment(by delta: Int) {
        counts.withLock { $0.assigned = max(0, ($0.assigned ?? 0) + Int64(delta)) }
    }

    /// Kafka: after each rebalance.
    public func setGroup(memberID: String, rebalances: Int, protocol: String) {
        let group = Group(memberID: memberID, rebalances: rebalances, rebalanceProtocol: `protocol`,
                          lastRebalance: ISO8601DateFormatter().string(from: Date()))
        counts.withLock { $0.group = group }
    }

    public var groupSnapshot: Group? { counts.withLock { $0.group } }

    public var snapshot: [String: Int64] {
        counts.withLock { counts in
            var values = ["accepted_spans": counts.accepted, "dropped_spans": counts.dropped, "refused_requests": counts.refused,
                          "rejected_requests": counts.rejected]
            if counts.unauthenticated > 0 { values["unauthenticated_requests"] = counts.unauthenticated }
            if counts.paused > 0 { values["partition_pauses"] = counts.paused }
            if counts.handedOver > 0 { values["handed_over_messages"] = counts.handedOver }
            if let assigned = counts.assigned { values["assigned_partitions"] = assigned }
            return values
        }
    }
}
