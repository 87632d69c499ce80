import NIOHTTP1
import SpanhostConfig
import SpanhostModel

/// Spans POSTed to a path, in a format told by the path and the Content-Type, answered 202 with
/// no body (Zipkin; the Jaeger collector's Thrift endpoint); errors are text.
public struct SpanPostWire: SpanWire {
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

    public init(protocolName: String, routes: [Route]) {
        self.protocolName = protocolName
        self.routes = routes
    }

    /// Zipkin v2 (JSON, protobuf) at POST /api/v2/spans, v1 JSON at POST /api/v1/spans.
    public static let zipkin = SpanPostWire(protocolName: "Zipkin", routes: [
        Route(path: "/api/v2/spans", formats: [("application/json", .zipkinJSON), ("application/x-protobuf", .zipkinProtobuf)], typeOptional: true),
        Route(path: "/api/v1/spans", formats: [("application/json", .zipkinV1JSON)], typeOptional: true),
    ])

    /// Jaeger Thrift batches at POST /api/traces, as the Jaeger collector takes them.
    public static let jaeger = SpanPostWire(protocolName: "Jaeger Thrift", routes: [
        Route(path: "/api/traces", formats: [("application/x-thrift", .jaegerThrift(.batch)),
                                             ("application/vnd.apache.thrift.binary", .jaegerThrift(.batch))], typeOptional: false),
    ])

    private var pathsText: String {
        routes.map { "POST \($0.path) (\($0.formats.map(\.mediaType).joined(separator: ", ")))" }.joined(separator: "; ")
    }

    public func accept(_ request: HTTPRequest) -> Result<WireRequest, WireRefusal> {
        guard let route = routes.first(where: { $0.path == request.path }) else {
            return .failure(WireRefusal(.text(.notFound, "unknown path \(request.path); \(protocolName) spans are accepted at \(pathsText)"),
                                        isRejection: false))
        }
        if let refusal = WireRefusal.unlessPOST(request) { return .failure(refusal) }
        let mediaType = request.headers.first(name: "content-type")?
            .split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        let format: SpanBatch.InputFormat
        if let found = route.formats.first(where: { $0.mediaType == mediaType }) {
            format = found.format
        } else if mediaType == nil, route.typeOptional, let first = route.formats.first {
            format = first.format
        } else {
            return .failure(WireRefusal(.text(.unsupportedMediaType, "unsupported content type '\(mediaType ?? "")' at \(route.path); "
                                              + "\(protocolName) spans there are \(route.formats.map(\.mediaType).joined(separator: " or "))"),
                                        isRejection: true))
        }
        let encoding = request.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        guard ["gzip", "identity", "none", ""].contains(encoding) else {
            return .failure(WireRefusal(.text(.unsupportedMediaType, "unsupported Content-Encoding '\(encoding)'; use gzip or none"),
                                        isRejection: true))
        }
        return .success(WireRequest(format: format, gzip: encoding == "gzip"))
    }

    public func taken(_ request: WireRequest, rejected: Int, message: String?) -> HTTPResponse { HTTPResponse(status: .accepted) }

    public func error(_ status: HTTPResponseStatus, _ message: String, for request: WireRequest) -> HTTPResponse { .text(status, message) }

    public func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse { .text(status, message) }
}
