import CSpanhost
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SpanhostConfig
import SpanhostModel

/// Where a receiver hands its batches; answers how they were taken. It runs plugin code, so
/// it is called on the pipeline thread pool, never on an event loop.
public typealias BatchSink = @Sendable (SpanBatch) -> ConsumeOutcome

/// Turns OTLP/HTTP requests into batches and batches' outcomes into OTLP answers.
public struct OTLPHTTPHandler: Sendable {
    public let settings: OTLPReceiverSettings
    public let counters: ReceiverCounters
    public let security: ServerSecurity
    let sink: BatchSink
    let inline: InlineSink?
    /// Why a request must be refused with 503 now (shutting down, over the memory limit), or nil.
    public let refusal: @Sendable () -> String?

    public init(settings: OTLPReceiverSettings, counters: ReceiverCounters, security: ServerSecurity = .none,
                refusal: @escaping @Sendable () -> String?, sink: @escaping BatchSink, inline: InlineSink? = nil) {
        self.settings = settings
        self.counters = counters
        self.security = security
        self.refusal = refusal
        self.sink = sink
        self.inline = inline
    }

    /// Checks the headers on the event loop; decodes and runs the pipelines (see runPipelines:
    /// on the loop when nothing on the way blocks, else on `pool`, answering 503 if that has not
    /// finished within `settings.requestTimeout`).
    public func handle(_ request: HTTPRequest, on loop: any EventLoop, pool: NIOThreadPool) -> EventLoopFuture<HTTPResponse> {
        let encoding: OTLPEncoding
        let gzip: Bool
        switch check(request) {
        case .failure(let answer): return loop.makeSucceededFuture(answer.response)
        case .success(let checked): (encoding, gzip) = checked
        }
        let body = request.body
        let metadata = request.clientMetadata(headers: settings.connections.includeMetadata)
        return runPipelines(on: loop, pool: pool, timeout: settings.requestTimeout, inline: inline,
                            small: !gzip && body.readableBytes <= inlineBodyLimit, timedOut: {
            counters.add(refusedRequests: 1)
            return refused(encoding, seconds: 1, "the pipeline did not finish within \(settings.requestTimeout)")
        }, decode: { decode(body, encoding: encoding, gzip: gzip).map { $0.withClientMetadata(metadata) } }, sink: sink,
           respond: { outcome, spans in respond(outcome, spans: spans, encoding: encoding) })
    }

    /// Checks method, path and headers, or says what to answer instead. Credentials were
    /// checked on the head, before the body was read (ReceiverHandler.answerBeforeBody).
    func check(_ request: HTTPRequest) -> Result<(OTLPEncoding, gzip: Bool), EarlyAnswer> {
        guard request.path == settings.tracesPath else {
            return .failure(EarlyAnswer(.text(.notFound, "unknown path \(request.path); OTLP traces are accepted at POST \(settings.tracesPath)")))
        }
        guard request.method == .POST else {
            var response = HTTPResponse.text(.methodNotAllowed, "\(request.method) is not allowed; use POST")
            response.headers.add(name: "Allow", value: "POST")
            return .failure(EarlyAnswer(response))
        }
        let contentType = request.headers.first(name: "content-type")?
            .split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        let encoding: OTLPEncoding
        switch contentType {
        case "application/x-protobuf", "application/protobuf": encoding = .protobuf
        case "application/json": encoding = .json
        default:
            counters.add(rejectedRequests: 1)
            return .failure(EarlyAnswer(.text(.unsupportedMediaType,
                                         "unsupported content type '\(contentType)'; use application/x-protobuf or application/json")))
        }
        let contentEncoding = request.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        let gzip: Bool
        switch contentEncoding {
        case "gzip", "x-gzip", "deflate": gzip = true
        case "identity", "none", "": gzip = false
        default:
            counters.add(rejectedRequests: 1)
            return .failure(EarlyAnswer(status(.unsupportedMediaType, encoding, code: 3,
                                          "unsupported Content-Encoding '\(contentEncoding)'; use gzip or none")))
        }
        if let reason = refusal() {
            counters.add(refusedRequests: 1)
            return .failure(EarlyAnswer(refused(encoding, seconds: 1, reason)))
        }
        return .success((encoding, gzip))
    }

    /// Decodes the body, or says what to answer instead. Runs on the pipeline pool.
    func decode(_ body: ByteBuffer, encoding: OTLPEncoding, gzip: Bool) -> Result<SpanBatch, EarlyAnswer> {
        do {
            return .success(try body.withUnsafeReadableBytes { raw throws(DecodeError) in
                try SpanBatch.decode(raw, encoding: encoding, gzip: gzip, limit: settings.maxRequestBodySize,
                                     caps: SpanBatch.Caps(settings.connections))
            })
        } catch {
            counters.add(rejectedRequests: 1)
            if error.isTooLarge { return .failure(EarlyAnswer(status(.payloadTooLarge, encoding, code: 8, error.description))) }
            return .failure(EarlyAnswer(status(.badRequest, encoding, code: 3, error.description)))
        }
    }

    func respond(_ outcome: ConsumeOutcome, spans: Int, encoding: OTLPEncoding) -> HTTPResponse {
        switch outcome {
        case .accepted(let rejected, let message):
            counters.add(acceptedSpans: spans - rejected, droppedSpans: rejected)
            var body = spanhost_buffer()
            guard sh_encode_export_response(encoding.cValue, Int64(rejected), message, &body) == 0 else {
                return .text(.internalServerError, "out of memory")
            }
            defer { sh_buffer_free(&body) }
            return HTTPResponse(status: .ok, headers: ["Content-Type": contentTypeHeader(encoding)],
                                body: Array(UnsafeBufferPointer(start: body.data, count: body.len)))
        case .refused(let seconds, let message):
            counters.add(refusedRequests: 1)
            return refused(encoding, seconds: seconds, message)
        case .rejected(let message):
            counters.add(rejectedRequests: 1)
            return status(.badRequest, encoding, code: 3, message)
        }
    }

    private func contentTypeHeader(_ encoding: OTLPEncoding) -> String {
        encoding == .json ? "application/json" : "application/x-protobuf"
    }

    private func refused(_ encoding: OTLPEncoding, seconds: Int, _ message: String) -> HTTPResponse {
        var response = status(.serviceUnavailable, encoding, code: 14, message)
        response.headers.add(name: "Retry-After", value: String(seconds))
        return response
    }

    /// The OTLP specification wants every error as a google.rpc.Status in the request's encoding,
    /// also those the server gives before decoding (413, 503, 401).
    public func errorResponse(_ head: HTTPRequestHead, _ http: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        let json = head.headers.first(name: "content-type")?.lowercased().hasPrefix("application/json") ?? false
        let code: Int32 = switch http {
        case .unauthorized: 16      // UNAUTHENTICATED
        case .serviceUnavailable: 14 // UNAVAILABLE
        case .payloadTooLarge: 8     // RESOURCE_EXHAUSTED
        default: 3                   // INVALID_ARGUMENT
        }
        return status(http, json ? .json : .protobuf, code: code, message)
    }

    /// An error answer with a google.rpc.Status body in the request's encoding.
    private func status(_ http: HTTPResponseStatus, _ encoding: OTLPEncoding, code: Int32, _ message: String) -> HTTPResponse {
        var body = spanhost_buffer()
        guard sh_encode_rpc_status(encoding.cValue, code, message, &body) == 0 else { return .text(http, message) }
        defer { sh_buffer_free(&body) }
        return HTTPResponse(status: http, headers: ["Content-Type": contentTypeHeader(encoding)],
                            body: Array(UnsafeBufferPointer(start: body.data, count: body.len)))
    }
}
