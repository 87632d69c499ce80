/// What the pipelines made of a batch a receiver handed them; decides the receiver's answer.
public enum ConsumeOutcome: Sendable, Equatable {
    /// Taken. `rejectedSpans` were dropped on purpose (filtered) and are reported as partial
    /// success, which clients must not retry.
    case accepted(rejectedSpans: Int, message: String?)
    /// Not taken for now (queues full, shutting down): the client should retry later.
    case refused(retryAfterSeconds: Int, message: String)
    /// Not taken and never will be (every processor or exporter refused it permanently).
    case rejected(message: String)
}
