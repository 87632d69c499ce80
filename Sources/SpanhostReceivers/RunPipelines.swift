import NIOCore
import NIOPosix
import SpanhostModel

/// The pipelines as an event loop may use them: whether a batch from this receiver may run on
/// the loop now (every plugin on its way declares it never blocks), and running it there. The
/// generation can change in between: `consume` then answers nil and does nothing.
public struct InlineSink: Sendable {
    public let allowed: @Sendable () -> Bool
    public let consume: @Sendable (SpanBatch) -> ConsumeOutcome?

    public init(allowed: @escaping @Sendable () -> Bool, consume: @escaping @Sendable (SpanBatch) -> ConsumeOutcome?) {
        self.allowed = allowed
        self.consume = consume
    }
}

/// Bodies up to this size, uncompressed, may be decoded on the event loop that read them
/// (about a millisecond of decoding at most); larger or compressed ones always go to the pool.
public let inlineBodyLimit = 1 << 20

/// An answer decided before the pipelines ran (bad input, for one).
struct EarlyAnswer: Error {
    let response: HTTPResponse
    init(_ response: HTTPResponse) { self.response = response }
}

/// Decodes a request's body and runs the batch through the pipelines. A small uncompressed
/// body whose pipelines never block runs right here on the loop: no hand-off to the pool and
/// back. Everything else runs on the pool (see runOnPool).
func runPipelines(on loop: any EventLoop, pool: NIOThreadPool, timeout: Duration, inline: InlineSink?, small: Bool,
                  timedOut: @escaping @Sendable () -> HTTPResponse,
                  decode: @escaping @Sendable () -> Result<SpanBatch, EarlyAnswer>,
                  sink: @escaping BatchSink,
                  respond: @escaping @Sendable (ConsumeOutcome, _ spans: Int) -> HTTPResponse) -> EventLoopFuture<HTTPResponse> {
    if small, let inline, inline.allowed() {
        let batch: SpanBatch
        switch decode() {
        case .failure(let answer): return loop.makeSucceededFuture(answer.response)
        case .success(let decoded): batch = decoded
        }
        let spans = batch.spanCount
        if let outcome = inline.consume(batch) { return loop.makeSucceededFuture(respond(outcome, spans)) }
        return runOnPool(on: loop, pool: pool, timeout: timeout, timedOut: timedOut) { respond(sink(batch), spans) }
    }
    return runOnPool(on: loop, pool: pool, timeout: timeout, timedOut: timedOut) {
        switch decode() {
        case .failure(let answer): return answer.response
        case .success(let batch):
            let spans = batch.spanCount
            return respond(sink(batch), spans)
        }
    }
}

/// Runs a request's `work` (decoding the body, then the pipelines) on `pool`: neither a large
/// body nor plugin code that may block runs on an event loop, so one client cannot stall the
/// others on its loop. Answers exactly once: with what `work` returns, or with `timedOut()`
/// when it takes longer than `timeout` (a hung plugin must not hold clients). A late answer
/// after a timeout is dropped; the batch itself still completes in the pipeline.
func runOnPool(on loop: any EventLoop, pool: NIOThreadPool, timeout: Duration,
               timedOut: @escaping @Sendable () -> HTTPResponse,
               work: @escaping @Sendable () -> HTTPResponse) -> EventLoopFuture<HTTPResponse> {
    let promise = loop.makePromise(of: HTTPResponse.self)
    // Both callbacks below run on `loop`, so this flag needs no lock.
    let answered = NIOLoopBoundBox(false, eventLoop: loop)
    let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
        guard !answered.value else { return }
        answered.value = true
        promise.succeed(timedOut())
    }
    pool.runIfActive(eventLoop: loop, work).whenComplete { result in
        timer.cancel()
        guard !answered.value else { return }
        answered.value = true
        promise.succeed((try? result.get()) ?? .text(.serviceUnavailable, "spanhost is shutting down"))
    }
    return promise.futureResult
}
