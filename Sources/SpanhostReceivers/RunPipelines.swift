import NIOCore
import NIOPosix
import SpanhostModel

/// Runs the pipelines for a decoded batch on `pool` (plugin code never runs on an event loop)
/// and answers exactly once: with `respond(outcome)`, or with `timedOut()` when the pipelines
/// take longer than `timeout` (a hung plugin must not hold clients). A late outcome after a
/// timeout is dropped; the batch itself still completes in the pipeline.
func runPipelines(_ batch: SpanBatch, sink: @escaping BatchSink, on loop: any EventLoop, pool: NIOThreadPool,
                  timeout: Duration, timedOut: @escaping @Sendable () -> HTTPResponse,
                  respond: @escaping @Sendable (ConsumeOutcome) -> HTTPResponse) -> EventLoopFuture<HTTPResponse> {
    let promise = loop.makePromise(of: HTTPResponse.self)
    // Both callbacks below run on `loop`, so this flag needs no lock.
    let answered = NIOLoopBoundBox(false, eventLoop: loop)
    let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
        guard !answered.value else { return }
        answered.value = true
        promise.succeed(timedOut())
    }
    pool.runIfActive(eventLoop: loop) { sink(batch) }.whenComplete { result in
        timer.cancel()
        guard !answered.value else { return }
        answered.value = true
        let outcome = (try? result.get()) ?? .refused(retryAfterSeconds: 1, message: "spanhost is shutting down")
        promise.succeed(respond(outcome))
    }
    return promise.futureResult
}
