import NIOCore
import NIOPosix

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
