import Foundation

/// Counts of one receiver, shown at /status.
public final class ReceiverCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var accepted: Int64 = 0
    private var dropped: Int64 = 0
    private var refused: Int64 = 0
    private var rejected: Int64 = 0
    /// Requests without an accepted token (answered 401).
    private var unauthenticated: Int64 = 0
    /// Kafka: times the partitions were paused because the pipelines refused.
    private var paused: Int64 = 0
    /// Kafka: partitions assigned to this member now (nil for other receivers).
    private var assigned: Int64?
    /// Kafka: messages held by backpressure and given up unstored because their partition
    /// went to another member (which reads them).
    private var handedOver: Int64 = 0
    /// Kafka: this member's id in the group, the rebalances it took part in, and when the last one was.
    private var group: Group?

    public struct Group: Sendable, Encodable {
        public var memberID: String
        public var rebalances: Int
        public var rebalanceProtocol: String
        public var lastRebalance: String
    }

    public init() {}

    public func add(acceptedSpans: Int = 0, droppedSpans: Int = 0, refusedRequests: Int = 0, rejectedRequests: Int = 0,
                    unauthenticatedRequests: Int = 0, pauses: Int = 0, handedOver: Int = 0) {
        lock.withLock {
            accepted += Int64(acceptedSpans)
            dropped += Int64(droppedSpans)
            refused += Int64(refusedRequests)
            rejected += Int64(rejectedRequests)
            paused += Int64(pauses)
            unauthenticated += Int64(unauthenticatedRequests)
            self.handedOver += Int64(handedOver)
        }
    }

    /// Kafka: the group gave (positive) or took (negative) partitions.
    public func changeAssignment(by delta: Int) {
        lock.withLock { assigned = max(0, (assigned ?? 0) + Int64(delta)) }
    }

    /// Kafka: after each rebalance.
    public func setGroup(memberID: String, rebalances: Int, protocol: String) {
        let now = ISO8601DateFormatter().string(from: Date())
        lock.withLock { group = Group(memberID: memberID, rebalances: rebalances, rebalanceProtocol: `protocol`, lastRebalance: now) }
    }

    public var groupSnapshot: Group? { lock.withLock { group } }

    public var snapshot: [String: Int64] {
        lock.withLock {
            var values = ["accepted_spans": accepted, "dropped_spans": dropped, "refused_requests": refused, "rejected_requests": rejected]
            if unauthenticated > 0 { values["unauthenticated_requests"] = unauthenticated }
            if paused > 0 { values["partition_pauses"] = paused }
            if handedOver > 0 { values["handed_over_messages"] = handedOver }
            if let assigned { values["assigned_partitions"] = assigned }
            return values
        }
    }
}
