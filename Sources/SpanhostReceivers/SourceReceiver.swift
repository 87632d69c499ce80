import SpanhostConfig

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
