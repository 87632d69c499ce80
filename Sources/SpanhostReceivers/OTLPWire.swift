import CSpanhost
import NIOHTTP1
import SpanhostConfig
import SpanhostModel

/// OTLP/HTTP: POST to the traces path, protobuf or JSON, gzip or not. Every answer is in the
/// request's encoding: an ExportTraceServiceResponse (with partial success) when taken, a
/// google.rpc.Status for every error, as the specification asks.
public struct OTLPWire: SpanWire {
    public let tracesPath: String

    public init(tracesPath: String) { self.tracesPath = tracesPath }

    public func accept(_ request: HTTPRequest) -> Result<WireRequest, WireRefusal> {
        guard request.path == tracesPath else {
            return .failure(WireRefusal(.text(.notFound, "unknown path \(request.path); OTLP traces are accepted at POST \(tracesPath)"),
                                        isRejection: false))
        }
        if let refusal = WireRefusal.unlessPOST(request) { return .failure(refusal) }
        let contentType = request.headers.first(name: "content-type")?
            .split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        let format: SpanBatch.InputFormat
        switch contentType {
        case "application/x-protobuf", "application/protobuf": format = .otlpProtobuf
        case "application/json": format = .otlpJSON
        default:
            return .failure(WireRefusal(.text(.unsupportedMediaType,
                                              "unsupported content type '\(contentType)'; use application/x-protobuf or application/json"),
                                        isRejection: true))
        }
        let contentEncoding = request.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        switch contentEncoding {
        case "gzip", "x-gzip", "deflate": return .success(WireRequest(format: format, gzip: true))
        case "identity", "none", "": return .success(WireRequest(format: format, gzip: false))
        default:
            return .failure(WireRefusal(Self.status(.unsupportedMediaType, json: format == .otlpJSON,
                                                    "unsupported Content-Encoding '\(contentEncoding)'; use gzip or none"),
                                        isRejection: true))
        }
    }

    public func taken(_ request: WireRequest, rejected: Int, message: String?) -> HTTPResponse {
        let encoding: OTLPEncoding = request.format == .otlpJSON ? .json : .protobuf
        var body = spanhost_buffer()
        guard sh_encode_export_response(encoding.cValue, Int64(rejected), message, &body) == 0 else {
            return .text(.internalServerError, "out of memory")
        }
        defer { sh_buffer_free(&body) }
        return HTTPResponse(status: .ok, headers: ["Content-Type": Self.contentType(json: encoding == .json)],
                            body: Array(UnsafeBufferPointer(start: body.data, count: body.len)))
    }

    public func error(_ status: HTTPResponseStatus, _ message: String, for request: WireRequest) -> HTTPResponse {
        Self.status(status, json: request.format == .otlpJSON, message)
    }

    public func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        Self.status(status, json: head.headers.first(name: "content-type")?.lowercased().hasPrefix("application/json") ?? false, message)
    }

    private static func contentType(json: Bool) -> String { json ? "application/json" : "application/x-protobuf" }

    /// An error answer with a google.rpc.Status body in the request's encoding; the gRPC code
    /// follows the HTTP status, as the specification maps them.
    private static func status(_ http: HTTPResponseStatus, json: Bool, _ message: String) -> HTTPResponse {
        let code: Int32 = switch http {
        case .unauthorized: 16       // UNAUTHENTICATED
        case .serviceUnavailable: 14 // UNAVAILABLE
        case .payloadTooLarge: 8     // RESOURCE_EXHAUSTED
        default: 3                   // INVALID_ARGUMENT
        }
        var body = spanhost_buffer()
        guard sh_encode_rpc_status((json ? OTLPEncoding.json : .protobuf).cValue, code, message, &body) == 0 else {
            return .text(http, message)
        }
        defer { sh_buffer_free(&body) }
        return HTTPResponse(status: http, headers: ["Content-Type": contentType(json: json)],
                            body: Array(UnsafeBufferPointer(start: body.data, count: body.len)))
    }
}
