import SpanhostConfig
import SpanhostModel

/// A receiver that takes data by itself instead of answering requests on an HTTP listener: a
/// Kafka consumer, the Jaeger agent's UDP sockets. Made when a config is prepared (connections
/// set up, sockets bound, nothing taken yet), started when the config is committed, stopped
/// when a reload replaces or removes it. Blocking.
public protocol SourceReceiver: AnyObject, Sendable {
    var id: ComponentID { get }
    /// What it was made from: a reload keeps the running one while this is unchanged.
    var source: SourceSettings { get }
    var counters: ReceiverCounters { get }
    func start()
    /// Stops taking data; what was taken finishes. Safe to call on one never started.
    func stop()
}

/// Where a source hands its batches: the consumer, always on the source's own thread.
public struct SourceSink: Sendable {
    public let id: ComponentID
    public let consumer: any BatchConsumer

    public init(id: ComponentID, consumer: any BatchConsumer) {
        self.id = id
        self.consumer = consumer
    }

    func callAsFunction(_ batch: SpanBatch) -> ConsumeOutcome {
        consumer.consume(batch, from: id, placement: .pool) ?? .refused(retryAfterSeconds: 1, message: "spanhost is shutting down")
    }
}
