import NIOCore
import NIOHTTP1
import NIOPosix
import SpanhostConfig
import SpanhostModel

/// A receiver whose clients POST spans to a path, in a format told by the path and the
/// Content-Type, and are answered 202 with no body (Zipkin; the Jaeger collector's Thrift
/// endpoint). Answers 400 with a message for bad input and 503 with Retry-After when spanhost
/// cannot take the spans now.
public struct SpanPostHandler: ReceiverHandler {
    /// The bodies one path takes.
    public struct Route: Sendable {
        public var path: String
        /// Formats by media type (lowercase, without parameters); the first also serves requests
        /// that send no Content-Type when `typeOptional`.
        public var formats: [(mediaType: String, format: SpanBatch.InputFormat)]
        public var typeOptional: Bool

        public init(path: String, formats: [(mediaType: String, format: SpanBatch.InputFormat)], typeOptional: Bool) {
            self.path = path
            self.formats = formats
            self.typeOptional = typeOptional
        }
    }

    /// Named in answers: "Zipkin", "Jaeger Thrift".
    public let protocolName: String
    public let routes: [Route]
    public let endpoint: Endpoint
    public let maxRequestBodySize: Int
    public let requestTimeout: Duration
    public let connections: HTTPConnectionSettings
    public let counters: ReceiverCounters
    public let security: ServerSecurity
    let sink: BatchSink
    let inline: InlineSink?
    public let refusal: @Sendable () -> String?

    public init(protocolName: String, routes: [Route], endpoint: Endpoint, maxRequestBodySize: Int, requestTimeout: Duration,
                connections: HTTPConnectionSettings, counters: ReceiverCounters, security: ServerSecurity = .none,
                refusal: @escaping @Sendable () -> String?, sink: @escaping BatchSink, inline: InlineSink? = nil) {
        self.protocolName = protocolName
        self.routes = routes
        self.endpoint = endpoint
        self.maxRequestBodySize = maxRequestBodySize
        self.requestTimeout = requestTimeout
        self.connections = connections
        self.counters = counters
        self.security = security
        self.refusal = refusal
        self.sink = sink
        self.inline = inline
    }

    /// Zipkin v2 (JSON, protobuf) at POST /api/v2/spans, v1 JSON at POST /api/v1/spans.
    public static func zipkin(_ settings: ZipkinReceiverSettings, counters: ReceiverCounters, security: ServerSecurity = .none,
                              refusal: @escaping @Sendable () -> String?, sink: @escaping BatchSink, inline: InlineSink? = nil) -> Self {
        SpanPostHandler(protocolName: "Zipkin", routes: [Route(path: "/api/v2/spans", formats: [("application/json", .zipkinJSON), ("application/x-protobuf", .zipkinProtobuf)],
                                                                 typeOptional: true),
                                                           Route(path: "/api/v1/spans", formats: [("application/json", .zipkinV1JSON)], typeOptional: true)],
                        endpoint: settings.endpoint, maxRequestBodySize: settings.maxRequestBodySize, requestTimeout: settings.requestTimeout,
                        connections: settings.connections, counters: counters, security: security, refusal: refusal, sink: sink, inline: inline)
    }

    /// Jaeger Thrift batches at POST /api/traces, as the Jaeger collector takes them.
    public static func jaeger(_ settings: JaegerReceiverSettings.ThriftHTTPSettings, counters: ReceiverCounters, security: ServerSecurity = .none,
                              refusal: @escaping @Sendable () -> String?, sink: @escaping BatchSink, inline: InlineSink? = nil) -> Self {
        SpanPostHandler(protocolName: "Jaeger Thrift",
                        routes: [Route(path: "/api/traces", formats: [("application/x-thrift", .jaegerThrift(.batch)),
                                                                      ("application/vnd.apache.thrift.binary", .jaegerThrift(.batch))],
                                       typeOptional: false)],
                        endpoint: settings.endpoint, maxRequestBodySize: settings.maxRequestBodySize, requestTimeout: settings.requestTimeout,
                        connections: settings.connections, counters: counters, security: security, refusal: refusal, sink: sink, inline: inline)
    }

    public var connectionLimits: ConnectionLimits { ConnectionLimits(connections) }

    private var pathsText: String {
        routes.map { "POST \($0.path) (\($0.formats.map(\.mediaType).joined(separator: ", ")))" }.joined(separator: "; ")
    }

    /// Credentials were checked on the head (ReceiverHandler.answerBeforeBody).
    public func handle(_ request: HTTPRequest, on loop: any EventLoop, pool: NIOThreadPool) -> EventLoopFuture<HTTPResponse> {
        guard let route = routes.first(where: { $0.path == request.path }) else {
            return loop.makeSucceededFuture(.text(.notFound, "unknown path \(request.path); \(protocolName) spans are accepted at \(pathsText)"))
        }
        guard request.method == .POST else {
            var response = HTTPResponse.text(.methodNotAllowed, "\(request.method) is not allowed; use POST")
            response.headers.add(name: "Allow", value: "POST")
            return loop.makeSucceededFuture(response)
        }
        let mediaType = request.headers.first(name: "content-type")?
            .split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        let format: SpanBatch.InputFormat
        if let found = route.formats.first(where: { $0.mediaType == mediaType }) {
            format = found.format
        } else if mediaType == nil, route.typeOptional, let first = route.formats.first {
            format = first.format
        } else {
            counters.add(rejectedRequests: 1)
            return loop.makeSucceededFuture(.text(.unsupportedMediaType, "unsupported content type '\(mediaType ?? "")' at \(route.path); "
                                                  + "\(protocolName) spans there are \(route.formats.map(\.mediaType).joined(separator: " or "))"))
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
        let limit = maxRequestBodySize
        let caps = SpanBatch.Caps(connections)
        let gzip = encoding == "gzip"
        let metadata = request.clientMetadata(headers: connections.includeMetadata)
        return runPipelines(on: loop, pool: pool, timeout: requestTimeout, inline: inline,
                            small: !gzip && body.readableBytes <= inlineBodyLimit, timedOut: {
            counters.add(refusedRequests: 1)
            return Self.refused("the pipeline did not finish in time")
        }, decode: {
            do throws(DecodeError) {
                return .success(try body.withUnsafeReadableBytes { raw throws(DecodeError) in
                    try SpanBatch.decode(raw, format: format, gzip: gzip, limit: limit, caps: caps)
                }.withClientMetadata(metadata))
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
