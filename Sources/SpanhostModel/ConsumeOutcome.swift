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

/// Where a request's batch runs: on the event loop that read the request (no hand-off, for
/// small requests through plugins that never block), or on the pipeline thread pool. The
/// generation decides (`CurrentGeneration.placement`); receivers only follow it.
public enum BatchPlacement: Sendable, Equatable {
    case eventLoop
    case pool
}
