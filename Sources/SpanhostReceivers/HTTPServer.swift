import Logging
import Synchronization
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A request with its whole body, as handed to a route.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// The sender's IP address, when the connection has one (not on Unix sockets).
    public var remoteAddress: String? = nil

    /// What the request tells processors about its sender (a batch's client_metadata):
    /// `client.address`, and with `headers` every header as `metadata.<lowercased name>`, the
    /// values of a repeated header joined with ";" (as the Collector's from_context reads them).
    public func clientMetadata(headers: Bool) -> [(key: String, value: String)] {
        var pairs: [(key: String, value: String)] = remoteAddress.map { [("client.address", $0)] } ?? []
        guard headers else { return pairs }
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in self.headers {
            let key = "metadata." + name.lowercased()
            if values[key] == nil { order.append(key) }
            values[key, default: []].append(value)
        }
        pairs += order.map { ($0, values[$0]!.joined(separator: ";")) }
        return pairs
    }
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

/// Bytes of request bodies being received or handled by every HTTP server of the process: the
/// memory limiter counts them with the batches, so many large unfinished bodies cannot pile up.
public enum RequestBodies {
    private static let bytes = Atomic<Int>(0)
    public static var inFlightBytes: Int { bytes.load(ordering: .relaxed) }
    static func add(_ n: Int) { bytes.wrappingAdd(n, ordering: .relaxed) }
    static func remove(_ n: Int) { bytes.wrappingSubtract(n, ordering: .relaxed) }
}

/// How long a client may take, and how many may be connected at once: what keeps trickling or
/// piled-up connections from holding a listener (and the process's descriptors).
public struct ConnectionLimits: Sendable, Equatable {
    /// From a request's first byte until its head is complete.
    public var readHeaderTimeout: Duration
    /// From a request's first byte until its body is complete (a minimum rate, in effect).
    public var readTimeout: Duration
    /// Connections open at once; past it new ones are closed at once.
    public var maxConnections: Int

    public init(readHeaderTimeout: Duration = .seconds(10), readTimeout: Duration = .seconds(60), maxConnections: Int = 1000) {
        self.readHeaderTimeout = readHeaderTimeout
        self.readTimeout = readTimeout
        self.maxConnections = maxConnections
    }
}

/// What an HTTPServer serves: asked for its limits as each connection opens and each request
/// begins, and for each whole request's answer. The server knows nothing else of it.
public protocol HTTPService: Sendable {
    /// Bodies larger than this are answered 413 before the rest is read.
    var maxBodyBytes: Int { get }
    var connectionLimits: ConnectionLimits { get }
    /// TLS for new connections, or nil for plain HTTP.
    var tls: NIOSSLContext? { get }
    /// Why requests must be refused with 503 now (shutting down, over the memory limit), or nil;
    /// asked when a head is complete and again while its body arrives.
    func refusal() -> String?
    /// Asked when a request's head is complete: an answer that needs no body (401 for missing
    /// credentials), given before any of the body is read, or nil to read the body.
    func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse?
    /// How the server's own refusals (413, 503) are written for this request: OTLP wants a
    /// google.rpc.Status in the request's encoding.
    func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse
    /// The answer to a whole request; a future, so slow work can run elsewhere.
    func handle(_ request: HTTPRequest, on loop: any EventLoop) -> EventLoopFuture<HTTPResponse>
}

extension HTTPService {
    public var connectionLimits: ConnectionLimits { ConnectionLimits() }
    public var tls: NIOSSLContext? { nil }
    public func refusal() -> String? { nil }
    public func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse? { nil }
    public func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        .text(status, message)
    }
}

/// A service that is one function (the admin endpoints, metrics scrapes, the benchmark baseline).
public struct HandlerService: HTTPService {
    public let maxBodyBytes: Int
    public let tls: NIOSSLContext?
    public let handler: HTTPServer.Handler

    public init(maxBodyBytes: Int, tls: NIOSSLContext? = nil, handler: @escaping HTTPServer.Handler) {
        self.maxBodyBytes = maxBodyBytes
        self.tls = tls
        self.handler = handler
    }

    public func handle(_ request: HTTPRequest, on loop: any EventLoop) -> EventLoopFuture<HTTPResponse> { handler(request, loop) }
}

/// A small HTTP/1.1 server: aggregates each request body up to the service's `maxBodyBytes`
/// (answering 413 past it, before reading the rest) and passes whole requests to the service on
/// the event loop that read them.
public final class HTTPServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest, any EventLoop) -> EventLoopFuture<HTTPResponse>

    private let channel: any Channel
    public let localPort: Int
    /// For a Unix socket binding, its path.
    public let socketPath: String?

    private init(channel: any Channel, socketPath: String? = nil) {
        self.channel = channel
        self.localPort = channel.localAddress?.port ?? 0
        self.socketPath = socketPath
    }

    /// A server whose handler answers at once on the event loop.
    public static func start(host: String, port: Int, maxBodyBytes: Int, group: any EventLoopGroup,
                             immediate: @escaping @Sendable (HTTPRequest) -> HTTPResponse) async throws -> HTTPServer {
        try await start(.tcp(host: host, port: port), maxBodyBytes: maxBodyBytes, group: group) { request, loop in
            loop.makeSucceededFuture(immediate(request))
        }
    }

    /// A server whose service is one function.
    public static func start(_ binding: Binding, maxBodyBytes: Int, tls: NIOSSLContext? = nil, group: any EventLoopGroup,
                             handler: @escaping Handler) async throws -> HTTPServer {
        try await start(binding, service: HandlerService(maxBodyBytes: maxBodyBytes, tls: tls, handler: handler), group: group)
    }

    /// Where a server listens.
    public enum Binding: Sendable {
        case tcp(host: String, port: Int)
        /// A listening socket made elsewhere (a supervisor's, inherited): the server takes it over.
        case socket(CInt)
        /// A Unix domain socket at this path (replacing a stale file).
        case unix(path: String)
    }

    public static func start(_ binding: Binding, service: some HTTPService, idleTimeout: TimeAmount = .seconds(60),
                             group: any EventLoopGroup) async throws -> HTTPServer {
        let open = ConnectionCount()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let limits = service.connectionLimits
                let tls = service.tls
                guard open.enter(max: limits.maxConnections) else {
                    return channel.close()  // over the cap: closed before anything is read
                }
                channel.closeFuture.whenComplete { _ in open.leave() }
                return channel.eventLoop.makeCompletedFuture {
                    let clock = RequestClock(limits: limits)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    // The clocks see raw bytes, so a TLS handshake that trickles counts against them too.
                    try channel.pipeline.syncOperations.addHandler(RequestDeadlines(clock: clock))
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(service: service, clock: clock))
                }
            }
        let channel: any Channel
        var socketPath: String?
        switch binding {
        case .tcp(let host, let port): channel = try await bootstrap.bind(host: host, port: port).get()
        case .socket(let fd): channel = try await bootstrap.withBoundSocket(fd).get()
        case .unix(let path):
            channel = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let clock = RequestClock(limits: service.connectionLimits)
                        try channel.pipeline.syncOperations.addHandler(RequestDeadlines(clock: clock))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(RequestHandler(service: service, clock: clock))
                    }
                }
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            socketPath = path
        }
        return HTTPServer(channel: channel, socketPath: socketPath)
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Collects one request at a time and answers it. While a body arrives, `refusal` is asked
/// whether to go on (the memory limiter): if not, the request is answered 503 and the
/// connection closed, so the rest of the body is never held.
private final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: any HTTPService
    /// The service's limit when this request's head came (a reload may change it).
    private var maxBodyBytes = 0
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private let clock: RequestClock
    /// Bytes of the body being received, counted in `RequestBodies`.
    private var counted = 0

    init(service: any HTTPService, clock: RequestClock) {
        self.service = service
        self.clock = clock
    }

    /// Answers now and closes: the rest of this request's body is never read.
    private func answerEarly(context: ChannelHandlerContext, head: HTTPRequestHead, _ response: HTTPResponse) {
        tooLarge = true
        body = nil
        uncount()
        respond(context: context, head: head, response, close: true)
    }

    private func uncount() {
        RequestBodies.remove(counted)
        counted = 0
    }

    func channelInactive(context: ChannelHandlerContext) {
        uncount()
        context.fireChannelInactive()
    }

    /// Answers 503 and closes: the memory limit is reached (or the server is stopping).
    private func refuse(context: ChannelHandlerContext, head: HTTPRequestHead, _ reason: String) {
        tooLarge = true
        body = nil
        uncount()
        var response = service.errorResponse(head, .serviceUnavailable, reason)
        response.headers.replaceOrAdd(name: "Retry-After", value: "1")
        respond(context: context, head: head, response, close: true)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            clock.headComplete()
            self.head = head
            self.tooLarge = false
            self.maxBodyBytes = service.maxBodyBytes
            if head.version == .http1_1 && !head.headers.contains(name: "host") {
                answerEarly(context: context, head: head, .text(.badRequest, "an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)"))
                return
            }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
                answerEarly(context: context, head: head, service.errorResponse(head, .payloadTooLarge, "request body exceeds \(maxBodyBytes) bytes"))
                return
            }
            if let answer = service.answerBeforeBody(head) {
                answerEarly(context: context, head: head, answer)
                return
            }
            if let reason = service.refusal() {
                refuse(context: context, head: head, reason)
                return
            }
            body = context.channel.allocator.buffer(capacity: 0)
        case .body(var chunk):
            guard !tooLarge, let head else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > maxBodyBytes {
                answerEarly(context: context, head: head, service.errorResponse(head, .payloadTooLarge, "request body exceeds \(maxBodyBytes) bytes"))
                return
            }
            counted += chunk.readableBytes
            RequestBodies.add(chunk.readableBytes)
            if let reason = service.refusal() {
                refuse(context: context, head: head, reason)
                return
            }
            if body == nil || body!.readableBytes == 0 { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            clock.requestComplete()
            guard !tooLarge, let head else { return }
            let request = HTTPRequest(method: head.method, path: String(head.uri.prefix { $0 != "?" }), headers: head.headers,
                                      body: body ?? context.channel.allocator.buffer(capacity: 0),
                                      remoteAddress: context.channel.remoteAddress?.ipAddress)
            self.head = nil
            self.body = nil
            // The body stays counted until it has been handled (decoded, run through the pipelines).
            let handled = counted
            counted = 0
            // NIO's server pipeline handler holds back a pipelined next request until this
            // answer has been written, so answers stay in order.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            service.handle(request, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                RequestBodies.remove(handled)
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

/// Connections open on one listener.
private final class ConnectionCount: Sendable {
    private let count = Atomic<Int>(0)

    func enter(max: Int) -> Bool {
        if count.wrappingAdd(1, ordering: .relaxed).newValue > max {
            leave()
            return false
        }
        return true
    }

    func leave() { count.wrappingSubtract(1, ordering: .relaxed) }
}

/// The deadlines of the request being read on one connection; used only on its event loop.
/// The first byte of a request starts both clocks; its head stops the header clock, its end
/// stops the other. A clock that runs out closes the connection.
final class RequestClock {
    let limits: ConnectionLimits
    private var header: Scheduled<Void>?
    private var whole: Scheduled<Void>?
    private var reading = false

    init(limits: ConnectionLimits) { self.limits = limits }

    func bytesArrived(_ context: ChannelHandlerContext) {
        guard !reading else { return }
        reading = true
        let channel = context.channel
        header = context.eventLoop.scheduleTask(in: TimeAmount(limits.readHeaderTimeout)) { channel.close(promise: nil) }
        whole = context.eventLoop.scheduleTask(in: TimeAmount(limits.readTimeout)) { channel.close(promise: nil) }
    }

    func headComplete() {
        header?.cancel()
        header = nil
    }

    func requestComplete() {
        headComplete()
        whole?.cancel()
        whole = nil
        reading = false
    }
}

/// Sees raw bytes before the HTTP decoder, to start a request's clocks at its first byte.
private final class RequestDeadlines: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let clock: RequestClock

    init(clock: RequestClock) { self.clock = clock }

    /// A connection is a request about to start: one that sends nothing is closed when the
    /// header timeout runs out, not held until the idle timeout.
    func channelActive(context: ChannelHandlerContext) {
        clock.bytesArrived(context)
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { clock.bytesArrived(context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        clock.bytesArrived(context)
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clock.requestComplete()
        context.fireChannelInactive()
    }
}
