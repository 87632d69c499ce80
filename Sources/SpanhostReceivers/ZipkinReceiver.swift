import NIOCore
import NIOHTTP1
import NIOPosix
import SpanhostConfig
import SpanhostModel

/// Zipkin v2: `POST /api/v2/spans` with a JSON array (optionally gzip). Answers 202 when taken,
/// 400 with a message for bad input, 503 with Retry-After when spanhost cannot take it now.
public struct ZipkinHTTPHandler: ReceiverHandler {
    public let settings: ZipkinReceiverSettings
    public let counters: ReceiverCounters
    public let security: ServerSecurity
    let sink: BatchSink
    let inline: InlineSink?
    public let refusal: @Sendable () -> String?

    public init(settings: ZipkinReceiverSettings, counters: ReceiverCounters, security: ServerSecurity = .none,
                refusal: @escaping @Sendable () -> String?, sink: @escaping BatchSink, inline: InlineSink? = nil) {
        self.settings = settings
        self.counters = counters
        self.security = security
        self.refusal = refusal
        self.sink = sink
        self.inline = inline
    }

    public var endpoint: Endpoint { settings.endpoint }
    public var maxRequestBodySize: Int { settings.maxRequestBodySize }
    public var connectionLimits: ConnectionLimits { ConnectionLimits(settings.connections) }

    /// Credentials were checked on the head (ReceiverHandler.answerBeforeBody).
    public func handle(_ request: HTTPRequest, on loop: any EventLoop, pool: NIOThreadPool) -> EventLoopFuture<HTTPResponse> {
        guard request.path == "/api/v2/spans" else {
            return loop.makeSucceededFuture(.text(.notFound, "unknown path \(request.path); Zipkin v2 spans are accepted at POST /api/v2/spans"))
        }
        guard request.method == .POST else {
            var response = HTTPResponse.text(.methodNotAllowed, "\(request.method) is not allowed; use POST")
            response.headers.add(name: "Allow", value: "POST")
            return loop.makeSucceededFuture(response)
        }
        let contentType = request.headers.first(name: "content-type")?
            .split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? "application/json"
        guard contentType == "application/json" else {
            counters.add(rejectedRequests: 1)
            return loop.makeSucceededFuture(.text(.unsupportedMediaType, "unsupported content type '\(contentType)'; Zipkin v2 JSON is application/json"))
        }
        let encoding = request.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        guard ["gzip", "identity", "none", ""].contains(encoding) else {
            counters.add(rejectedRequests: 1)
            return loop.makeSucceededFuture(.text(.unsupportedMediaType, "unsupported Content-Encoding '\(encoding)'; use gzip or none"))
        }
        if let reason = refusal() {
            counters.add(refusedRequests: 1)
            return loop.makeSucceededFuture(Self.refused(reason))
        }
        let body = request.body
        let counters = self.counters
        let settings = self.settings
        let gzip = encoding == "gzip"
        return runPipelines(on: loop, pool: pool, timeout: settings.requestTimeout, inline: inline,
                            small: !gzip && body.readableBytes <= inlineBodyLimit, timedOut: {
            counters.add(refusedRequests: 1)
            return Self.refused("the pipeline did not finish in time")
        }, decode: {
            do throws(DecodeError) {
                return .success(try body.withUnsafeReadableBytes { raw throws(DecodeError) in
                    try SpanBatch.decode(raw, format: .zipkinJSON, gzip: gzip, limit: settings.maxRequestBodySize,
                                         caps: SpanBatch.Caps(settings.connections))
                })
            } catch {
                counters.add(rejectedRequests: 1)
                return .failure(EarlyAnswer(.text(error.isTooLarge ? .payloadTooLarge : .badRequest, error.description)))
            }
        }, sink: sink, respond: { outcome, spans in Self.answer(outcome, spans: spans, counters: counters) })
    }

    /// 202 when taken, 503 when refused, 400 when rejected; counted.
    static func answer(_ outcome: ConsumeOutcome, spans: Int, counters: ReceiverCounters) -> HTTPResponse {
        switch outcome {
        case .accepted(let rejected, _):
            counters.add(acceptedSpans: spans - rejected, droppedSpans: rejected)
            return HTTPResponse(status: .accepted)
        case .refused(_, let message):
            counters.add(refusedRequests: 1)
            return Self.refused(message)
        case .rejected(let message):
            counters.add(rejectedRequests: 1)
            return .text(.badRequest, message)
        }
    }

    static func refused(_ message: String) -> HTTPResponse {
        var response = HTTPResponse.text(.serviceUnavailable, message)
        response.headers.add(name: "Retry-After", value: "1")
        return response
    }
}

/// What the server needs of a receiver to serve it on an endpoint.
public protocol ReceiverHandler: Sendable {
    var endpoint: Endpoint { get }
    var maxRequestBodySize: Int { get }
    var connectionLimits: ConnectionLimits { get }
    var counters: ReceiverCounters { get }
    /// TLS for its connections and the authenticator its requests must pass.
    var security: ServerSecurity { get }
    /// Why requests must be refused with 503 now (shutting down, over the memory limit), or nil;
    /// asked again while a body arrives.
    var refusal: @Sendable () -> String? { get }
    /// Asked when a request's head is complete: an answer that needs no body, or nil.
    func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse?
    /// The server's own refusals (413, 503) written for this request.
    func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse
    func handle(_ request: HTTPRequest, on loop: any EventLoop, pool: NIOThreadPool) -> EventLoopFuture<HTTPResponse>
}

extension ReceiverHandler {
    /// Credentials are checked on the head: a client without a token is answered 401 and
    /// disconnected before its body is read, so it holds no memory other clients need.
    public func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse? {
        guard let refusal = security.refusal(head.headers) else { return nil }
        counters.add(unauthenticatedRequests: 1)
        var response = errorResponse(head, .unauthorized, refusal.message)
        response.headers.replaceOrAdd(name: "WWW-Authenticate", value: refusal.challenge)
        return response
    }

    public func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        .text(status, message)
    }
}

extension OTLPHTTPHandler: ReceiverHandler {
    public var endpoint: Endpoint { settings.endpoint }
    public var maxRequestBodySize: Int { settings.maxRequestBodySize }
    public var connectionLimits: ConnectionLimits { ConnectionLimits(settings.connections) }
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
