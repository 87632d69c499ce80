import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SpanhostConfig
import SpanhostModel
import Synchronization

// The path of one request, file by file; each is crossed once, in this order, and answers flow
// back the same way as return values:
//
//   HTTPServer.swift            bytes -> HTTPRequest: connection limits, 413 before the body is
//                               read, 401 on the head (answerBeforeBody), 503 over the memory limit
//   ReceiverRegistry (Server)   the endpoint's HandlerSlot: the receiver serving it now
//   HTTPSpanReceiver.swift      the wire accepts the request (OTLPWire.swift, SpanPostWire.swift),
//                               asks the consumer where to run it, decodes it there
//   GenerationConsumer (Server) -> CurrentGeneration.swift: the placement policy, and the
//                               generation the batch enters (kept until the batch leaves)
//   Pipeline.swift              the processors in order; a processor's emit re-enters
//                               Pipeline.run(from:) on the emitting thread (documented there)
//   ExporterRunner.swift        the exporter's queue; its workers call the plugin
//
// Sources (Kafka, the Jaeger agent's UDP ports) take the same consumer and always run on a
// thread of their own (placement `.pool`).

/// Where receivers hand batches: the current generation's pipelines. It decides where a batch
/// runs, and runs it.
public protocol BatchConsumer: Sendable {
    /// Where a request's batch from `receiver` runs (see CurrentGeneration.placement).
    func placement(from receiver: ComponentID, bodyBytes: Int, compressed: Bool) -> BatchPlacement
    /// Runs the batch on the caller's thread. With `.eventLoop`, nil when that no longer holds
    /// (a reload came in between): nothing was done, run it on the pool.
    func consume(_ batch: SpanBatch, from receiver: ComponentID, placement: BatchPlacement) -> ConsumeOutcome?
}

/// Whether receivers may take data now: not once shutdown began, nor while batches and request
/// bodies together hold more than the memory limit.
public struct Admission: Sendable {
    public let accepting: AcceptingFlag
    public let memoryLimit: Int?

    public init(accepting: AcceptingFlag, memoryLimit: Int?) {
        self.accepting = accepting
        self.memoryLimit = memoryLimit
    }

    /// Why data must be refused now, or nil.
    public func refusal() -> String? {
        guard accepting.value else { return "spanhost is shutting down" }
        if let limit = memoryLimit, SpanBatch.liveBytes + RequestBodies.inFlightBytes > limit {
            return "memory limit reached: \(SpanBatch.liveBytes >> 20) MiB of spans held and \(RequestBodies.inFlightBytes >> 20) MiB "
                + "of requests arriving, limit \(limit >> 20) MiB"
        }
        return nil
    }
}

/// One wire format of spans over HTTP: which requests it takes and how its answers are written.
/// The receiver does the rest, the same for all of them.
public protocol SpanWire: Sendable {
    /// What the request holds, or the answer for a request this wire does not take (a path,
    /// method, media type or encoding it does not know).
    func accept(_ request: HTTPRequest) -> Result<WireRequest, WireRefusal>
    /// The answer for spans taken, `rejected` of them dropped on purpose.
    func taken(_ request: WireRequest, rejected: Int, message: String?) -> HTTPResponse
    /// An error answer (400, 413, 503) for a request this wire took.
    func error(_ status: HTTPResponseStatus, _ message: String, for request: WireRequest) -> HTTPResponse
    /// The server's own refusals, given before the body is read (413, 503, 401).
    func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse
}

/// A request a wire took: how to decode its body.
public struct WireRequest: Sendable, Equatable {
    public var format: SpanBatch.InputFormat
    public var gzip: Bool

    public init(format: SpanBatch.InputFormat, gzip: Bool) {
        self.format = format
        self.gzip = gzip
    }
}

/// A request a wire did not take, and what to answer.
public struct WireRefusal: Error {
    public var response: HTTPResponse
    /// Bad input (an unknown media type or encoding), counted as a rejected request; a wrong
    /// path or method is not.
    public var isRejection: Bool

    public init(_ response: HTTPResponse, isRejection: Bool) {
        self.response = response
        self.isRejection = isRejection
    }

    /// 405 with `Allow: POST` for any other method; nil for a POST.
    public static func unlessPOST(_ request: HTTPRequest) -> WireRefusal? {
        guard request.method != .POST else { return nil }
        var response = HTTPResponse.text(.methodNotAllowed, "\(request.method) is not allowed; use POST")
        response.headers.add(name: "Allow", value: "POST")
        return WireRefusal(response, isRejection: false)
    }
}

/// False from shutdown on: receivers refuse data (HTTP answers 503).
public final class AcceptingFlag: Sendable {
    private let flag = Atomic(true)
    public init() {}
    public var value: Bool {
        get { flag.load(ordering: .sequentiallyConsistent) }
        set { flag.store(newValue, ordering: .sequentiallyConsistent) }
    }
}

/// A receiver that takes spans over HTTP in one wire format (OTLP, Zipkin, Jaeger Thrift):
/// checks credentials on the head, refuses when spanhost cannot take data, decodes the body
/// where the consumer says, and answers with what the pipelines made of it, in the wire's form.
public struct HTTPSpanReceiver: HTTPService {
    public let id: ComponentID
    public let wire: any SpanWire
    public let endpoint: Endpoint
    public let maxBodyBytes: Int
    public let requestTimeout: Duration
    public let connections: HTTPConnectionSettings
    public let counters: ReceiverCounters
    public let security: ServerSecurity
    let admission: Admission
    let consumer: any BatchConsumer
    let pool: NIOThreadPool

    public init(id: ComponentID, wire: any SpanWire, endpoint: Endpoint, maxBodyBytes: Int, requestTimeout: Duration,
                connections: HTTPConnectionSettings, counters: ReceiverCounters, security: ServerSecurity, admission: Admission,
                consumer: any BatchConsumer, pool: NIOThreadPool) {
        self.id = id
        self.wire = wire
        self.endpoint = endpoint
        self.maxBodyBytes = maxBodyBytes
        self.requestTimeout = requestTimeout
        self.connections = connections
        self.counters = counters
        self.security = security
        self.admission = admission
        self.consumer = consumer
        self.pool = pool
    }

    public var connectionLimits: ConnectionLimits { ConnectionLimits(connections) }
    public var tls: NIOSSLContext? { security.tls }
    public func refusal() -> String? { admission.refusal() }

    /// Credentials are checked on the head: a client without a token is answered 401 and
    /// disconnected before its body is read, so it holds no memory other clients need.
    public func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse? {
        guard let refusal = security.refusal(head.headers) else { return nil }
        counters.add(unauthenticatedRequests: 1)
        var response = wire.errorResponse(head, .unauthorized, refusal.message)
        response.headers.replaceOrAdd(name: "WWW-Authenticate", value: refusal.challenge)
        return response
    }

    public func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        wire.errorResponse(head, status, message)
    }

    public func handle(_ request: HTTPRequest, on loop: any EventLoop) -> EventLoopFuture<HTTPResponse> {
        let taken: WireRequest
        switch wire.accept(request) {
        case .failure(let refusal):
            if refusal.isRejection { counters.add(rejectedRequests: 1) }
            return loop.makeSucceededFuture(refusal.response)
        case .success(let accepted): taken = accepted
        }
        if let reason = admission.refusal() { return loop.makeSucceededFuture(refused(taken, seconds: 1, reason)) }
        let body = request.body
        let metadata = request.clientMetadata(headers: connections.includeMetadata)
        let decode = { @Sendable in self.decode(body, taken).map { $0.withClientMetadata(metadata) } }
        if consumer.placement(from: id, bodyBytes: body.readableBytes, compressed: taken.gzip) == .eventLoop {
            let batch: SpanBatch
            switch decode() {
            case .failure(let answer): return loop.makeSucceededFuture(answer.response)
            case .success(let decoded): batch = decoded
            }
            // Counted before the pipelines run: processors drop spans from the batch in place.
            let spans = batch.spanCount
            if let outcome = consumer.consume(batch, from: id, placement: .eventLoop) {
                return loop.makeSucceededFuture(answer(outcome, spans: spans, taken))
            }
            return onPool(loop, taken) { answer(run(batch), spans: spans, taken) }
        }
        return onPool(loop, taken) {
            switch decode() {
            case .failure(let answer): return answer.response
            case .success(let batch):
                let spans = batch.spanCount
                return answer(run(batch), spans: spans, taken)
            }
        }
    }

    private func run(_ batch: SpanBatch) -> ConsumeOutcome {
        consumer.consume(batch, from: id, placement: .pool) ?? .refused(retryAfterSeconds: 1, message: "spanhost is shutting down")
    }

    private func onPool(_ loop: any EventLoop, _ taken: WireRequest,
                        _ work: @escaping @Sendable () -> HTTPResponse) -> EventLoopFuture<HTTPResponse> {
        runOnPool(on: loop, pool: pool, timeout: requestTimeout, timedOut: {
            refused(taken, seconds: 1, "the pipeline did not finish within \(requestTimeout)")
        }, work: work)
    }

    /// An answer decided before the pipelines ran (bad input).
    struct EarlyAnswer: Error {
        let response: HTTPResponse
    }

    /// Decodes the body, or says what to answer instead.
    private func decode(_ body: ByteBuffer, _ taken: WireRequest) -> Result<SpanBatch, EarlyAnswer> {
        do {
            return .success(try body.withUnsafeReadableBytes { raw throws(DecodeError) in
                try SpanBatch.decode(raw, format: taken.format, gzip: taken.gzip, limit: maxBodyBytes, caps: SpanBatch.Caps(connections))
            })
        } catch {
            counters.add(rejectedRequests: 1)
            return .failure(EarlyAnswer(response: wire.error(error.isTooLarge ? .payloadTooLarge : .badRequest, error.description, for: taken)))
        }
    }

    /// What the pipelines made of the batch, in the wire's form; counted.
    private func answer(_ outcome: ConsumeOutcome, spans: Int, _ taken: WireRequest) -> HTTPResponse {
        switch outcome {
        case .accepted(let rejected, let message):
            counters.add(acceptedSpans: spans - rejected, droppedSpans: rejected)
            return wire.taken(taken, rejected: rejected, message: message)
        case .refused(let seconds, let message):
            return refused(taken, seconds: seconds, message)
        case .rejected(let message):
            counters.add(rejectedRequests: 1)
            return wire.error(.badRequest, message, for: taken)
        }
    }

    /// 503 with Retry-After; counted.
    private func refused(_ taken: WireRequest, seconds: Int, _ message: String) -> HTTPResponse {
        counters.add(refusedRequests: 1)
        var response = wire.error(.serviceUnavailable, message, for: taken)
        response.headers.replaceOrAdd(name: "Retry-After", value: String(seconds))
        return response
    }
}

extension SpanBatch.Caps {
    init(_ settings: HTTPConnectionSettings) {
        self.init(maxSpans: settings.maxSpansPerRequest, maxAttributes: settings.maxAttributesPerSpan)
    }
}

extension ConnectionLimits {
    init(_ settings: HTTPConnectionSettings) {
        self.init(readHeaderTimeout: settings.readHeaderTimeout, readTimeout: settings.readTimeout,
                  maxConnections: settings.maxConnections ?? Self.defaultMaxConnections)
    }

    /// 1000, or half the descriptors this process may open if that is lower: the rest stay for
    /// the admin endpoint, queues, plugins and the other listeners.
    static let defaultMaxConnections: Int = {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < UInt64(Int.max) else { return 1000 }
        return max(16, min(1000, Int(limit.rlim_cur) / 2))
    }()
}
