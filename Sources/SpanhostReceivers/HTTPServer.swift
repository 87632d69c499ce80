import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request with its whole body, as handed to a route.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
}

public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func text(_ status: HTTPResponseStatus, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: Array((text + "\n").utf8))
    }
}

/// A small HTTP/1.1 server: aggregates each request body up to `maxBodyBytes` (answering 413
/// past it, before reading the rest) and passes whole requests to `handler` on the event loop.
/// The handler answers with a future, so slow work can run elsewhere.
public final class HTTPServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest, any EventLoop) -> EventLoopFuture<HTTPResponse>

    private let channel: any Channel
    public let localPort: Int

    private init(channel: any Channel) {
        self.channel = channel
        self.localPort = channel.localAddress?.port ?? 0
    }

    /// A server whose handler answers at once on the event loop.
    public static func start(host: String, port: Int, maxBodyBytes: @escaping @Sendable () -> Int,
                             group: any EventLoopGroup,
                             immediate: @escaping @Sendable (HTTPRequest) -> HTTPResponse) async throws -> HTTPServer {
        try await start(host: host, port: port, maxBodyBytes: maxBodyBytes, group: group) { request, loop in
            loop.makeSucceededFuture(immediate(request))
        }
    }

    /// Where a server listens.
    public enum Binding: Sendable {
        case tcp(host: String, port: Int)
        /// A listening socket made elsewhere (a supervisor's, inherited): the server takes it over.
        case socket(CInt)
        /// A Unix domain socket at this path (replacing a stale file).
        case unix(path: String)
    }

    public static func start(host: String, port: Int, maxBodyBytes: @escaping @Sendable () -> Int,
                             idleTimeout: TimeAmount = .seconds(60),
                             group: any EventLoopGroup, handler: @escaping Handler) async throws -> HTTPServer {
        try await start(.tcp(host: host, port: port), maxBodyBytes: maxBodyBytes, idleTimeout: idleTimeout, group: group, handler: handler)
    }

    public static func start(_ binding: Binding, maxBodyBytes: @escaping @Sendable () -> Int,
                             idleTimeout: TimeAmount = .seconds(60),
                             group: any EventLoopGroup, handler: @escaping Handler) async throws -> HTTPServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(maxBodyBytes: maxBodyBytes, handler: handler))
                }
            }
        let channel: any Channel
        switch binding {
        case .tcp(let host, let port): channel = try await bootstrap.bind(host: host, port: port).get()
        case .socket(let fd): channel = try await bootstrap.withBoundSocket(fd).get()
        case .unix(let path):
            channel = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(RequestHandler(maxBodyBytes: maxBodyBytes, handler: handler))
                    }
                }
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        }
        return HTTPServer(channel: channel)
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Collects one request at a time and answers it.
private final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let limit: @Sendable () -> Int
    private var maxBodyBytes = 0
    private let handler: HTTPServer.Handler
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false

    init(maxBodyBytes: @escaping @Sendable () -> Int, handler: @escaping HTTPServer.Handler) {
        self.limit = maxBodyBytes
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.tooLarge = false
            self.maxBodyBytes = limit()
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
                tooLarge = true
                respond(context: context, head: head, .text(.payloadTooLarge, "request body exceeds \(maxBodyBytes) bytes"), close: true)
                return
            }
            body = context.channel.allocator.buffer(capacity: 0)
        case .body(var chunk):
            guard !tooLarge, let head else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > maxBodyBytes {
                tooLarge = true
                body = nil
                respond(context: context, head: head, .text(.payloadTooLarge, "request body exceeds \(maxBodyBytes) bytes"), close: true)
                return
            }
            if body == nil || body!.readableBytes == 0 { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard !tooLarge, let head else { return }
            let request = HTTPRequest(method: head.method, path: String(head.uri.prefix { $0 != "?" }), headers: head.headers,
                                      body: body ?? context.channel.allocator.buffer(capacity: 0))
            self.head = nil
            self.body = nil
            // NIO's server pipeline handler holds back a pipelined next request until this
            // answer has been written, so answers stay in order.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handler(request, context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                let response = (try? result.get()) ?? .text(.internalServerError, "internal error")
                handler.respond(context: context, head: head, response, close: !head.isKeepAlive)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, _ response: HTTPResponse, close: Bool) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        if close { headers.replaceOrAdd(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if !response.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let done = context.writeAndFlushPromise()
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if close {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

private extension ChannelHandlerContext {
    func writeAndFlushPromise() -> EventLoopPromise<Void> { eventLoop.makePromise() }
}
