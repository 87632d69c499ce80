// The HTTP client of Swift exporter plugins (otlphttp, zipkin): blocking HTTP/1.1 to one
// origin, with TLS as the Collector's configtls client settings describe it (private CA,
// client certificate, versions, server name). It runs on an
// event loop of its own; `post` waits on the exporter's thread, never on the loop. Idle
// connections are kept and reused; a reused one the server has closed meanwhile is retried
// once on a new connection.
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SpanhostPluginKit

/// `tls:` of a client, in the Collector's keys.
public struct TLSClientSettings {
    var caFile: String?
    var caPEM: String?
    var certFile: String?
    var certPEM: String?
    var keyFile: String?
    var keyPEM: String?
    var includeSystemCACertsPool = false
    var insecureSkipVerify = false
    var insecure = false
    var minVersion = "1.2"
    var maxVersion: String?
    var serverNameOverride: String?

    public init() {}

    /// The `tls` keys of a plugin's config, nil when there are none.
    public init?(config: PluginConfig) throws {
        guard !(try config.keys("tls")).isEmpty else { return nil }
        caFile = try config.string("tls.ca_file")
        caPEM = try config.string("tls.ca_pem")
        certFile = try config.string("tls.cert_file")
        certPEM = try config.string("tls.cert_pem")
        keyFile = try config.string("tls.key_file")
        keyPEM = try config.string("tls.key_pem")
        includeSystemCACertsPool = try config.bool("tls.include_system_ca_certs_pool") ?? false
        insecureSkipVerify = try config.bool("tls.insecure_skip_verify") ?? false
        insecure = try config.bool("tls.insecure") ?? false
        minVersion = try config.string("tls.min_version") ?? "1.2"
        maxVersion = try config.string("tls.max_version")
        serverNameOverride = try config.string("tls.server_name_override")
    }

    /// The schema entries of these keys, for a plugin's registration.
    public static let schema: [ConfigKey] = [
        ConfigKey("tls", .map, "TLS of an https endpoint, in the Collector's keys"),
        ConfigKey("tls.ca_file", .string, "PEM file of the CA the server's certificate must chain to"),
        ConfigKey("tls.ca_pem", .string, "that CA as PEM text"),
        ConfigKey("tls.cert_file", .string, "PEM file of a client certificate (mutual TLS)"),
        ConfigKey("tls.cert_pem", .string, "that certificate as PEM text"),
        ConfigKey("tls.key_file", .string, "PEM file of the client certificate's key"),
        ConfigKey("tls.key_pem", .string, "that key as PEM text"),
        ConfigKey("tls.include_system_ca_certs_pool", .bool, default: "false", "trust the system's CAs besides ca_file"),
        ConfigKey("tls.insecure", .bool, default: "false", "allow tls settings with a plain http endpoint"),
        ConfigKey("tls.insecure_skip_verify", .bool, default: "false", "do not check the server's certificate"),
        ConfigKey("tls.min_version", .string, default: "1.2", "1.0, 1.1, 1.2 or 1.3"),
        ConfigKey("tls.max_version", .string, "1.0, 1.1, 1.2 or 1.3"),
        ConfigKey("tls.server_name_override", .string, "the server name sent and checked"),
    ]

    static let versions: [String: TLSVersion] = ["1.0": .tlsv1, "1.1": .tlsv11, "1.2": .tlsv12, "1.3": .tlsv13]

    /// The NIOSSL context these settings make; the files are read now.
    func context() throws -> NIOSSLContext {
        var c = TLSConfiguration.makeClientConfiguration()
        guard let min = Self.versions[minVersion] else { throw PluginErrorText("tls.min_version: '\(minVersion)' is not 1.0, 1.1, 1.2 or 1.3") }
        c.minimumTLSVersion = min
        if let maxVersion {
            guard let max = Self.versions[maxVersion] else { throw PluginErrorText("tls.max_version: '\(maxVersion)' is not 1.0, 1.1, 1.2 or 1.3") }
            c.maximumTLSVersion = max
        }
        var roots: [NIOSSLCertificate] = []
        if let caFile { roots += try read("tls.ca_file", caFile) { try NIOSSLCertificate.fromPEMFile($0) } }
        if let caPEM { roots += try parse("tls.ca_pem") { try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)) } }
        if !roots.isEmpty {
            // As in the Collector: a CA given replaces the system's unless asked to add to them.
            if includeSystemCACertsPool { c.additionalTrustRoots = [.certificates(roots)] } else { c.trustRoots = .certificates(roots) }
        }
        switch (certFile ?? certPEM, keyFile ?? keyPEM) {
        case (nil, nil): break
        case (_?, _?):
            let chain = try certFile.map { file in try read("tls.cert_file", file) { try NIOSSLCertificate.fromPEMFile($0) } }
                ?? parse("tls.cert_pem") { try NIOSSLCertificate.fromPEMBytes(Array((certPEM ?? "").utf8)) }
            let key = try keyFile.map { file in try read("tls.key_file", file) { try NIOSSLPrivateKey(file: $0, format: .pem) } }
                ?? parse("tls.key_pem") { try NIOSSLPrivateKey(bytes: Array((keyPEM ?? "").utf8), format: .pem) }
            c.certificateChain = chain.map { .certificate($0) }
            c.privateKey = .privateKey(key)
        default:
            throw PluginErrorText("tls: a client certificate needs both cert_file (or cert_pem) and key_file (or key_pem)")
        }
        if insecureSkipVerify { c.certificateVerification = .none }
        do {
            return try NIOSSLContext(configuration: c)
        } catch {
            throw PluginErrorText("tls: \(error)")
        }
    }

    private func read<T>(_ key: String, _ path: String, _ load: (String) throws -> T) throws -> T {
        guard FileManager.default.isReadableFile(atPath: path) else { throw PluginErrorText("\(key): cannot read '\(path)'") }
        return try parse("\(key) '\(path)'", { try load(path) })
    }

    private func parse<T>(_ what: String, _ load: () throws -> T) throws -> T {
        do { return try load() } catch { throw PluginErrorText("\(what): not PEM the TLS library can read (\(error))") }
    }
}

struct PluginErrorText: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

public final class HTTPClient: @unchecked Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: [UInt8]

        /// Retry-After in seconds, when the answer carries one.
        public var retryAfter: Duration? {
            headers.first(name: "Retry-After").flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }.map { Duration.seconds($0) }
        }
    }

    public enum Outcome {
        case response(Response)
        case failed(String)

        /// An exporter's result for this outcome, counted as responses{status="..."}: 2xx is OK;
        /// 429, 502, 503, 504 and network errors are retryable (Retry-After honoured); any other
        /// status is permanent.
        public func exportResult(url: URL, host: PluginHost) -> PluginResult {
            switch self {
            case .failed(let why):
                return .retryable("\(url): \(why)")
            case .response(let response):
                host.count("responses{status=\"\(response.status)\"}")
                switch response.status {
                case 200..<300: return .ok
                case 429, 502, 503, 504: return .retryable(after: response.retryAfter, "\(url) answered \(response.status)")
                default: return .permanent("\(url) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
                }
            }
        }
    }

    /// The request target of `url`: its path (at least "/") and query.
    public let target: String

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let host: String
    private let port: Int
    private let tls: NIOSSLContext?
    private let serverName: String?
    private let timeout: TimeAmount
    private let idle = NIOLockedValueBox<[any Channel]>([])

    /// A client of the origin of `url` (http or https); the TLS files are read now.
    public init(url: URL, tls: TLSClientSettings?, timeout: TimeInterval) throws {
        guard let host = url.host, url.scheme == "http" || url.scheme == "https" else {
            throw PluginError("'\(url)' is not an http(s) URL with a host")
        }
        if tls != nil, url.scheme == "http", tls?.insecure != true {
            throw PluginError("tls: set, but \(url) is plain http; use an https:// endpoint (or tls.insecure: true to send in plain text)")
        }
        let components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        let path = components?.percentEncodedPath ?? ""
        target = (path.isEmpty ? "/" : path) + ((components?.percentEncodedQuery).map { "?\($0)" } ?? "")
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let secure = url.scheme == "https"
        port = url.port ?? (secure ? 443 : 80)
        do {
            self.tls = secure ? try (tls ?? TLSClientSettings()).context() : nil
        } catch {
            throw PluginError("\(error)")
        }
        // SNI and certificate name checks use the host name; an IP literal is checked against
        // the certificate's IP addresses instead.
        let literal = self.host.contains(":") || self.host.split(separator: ".").allSatisfy { Int($0) != nil }
        serverName = tls?.serverNameOverride ?? (literal ? nil : self.host)
        self.timeout = .milliseconds(Int64(timeout * 1000))
    }

    /// POSTs `body` to the URL's target and waits for the answer (at most the timeout).
    public func post(body: [UInt8], headers: [(String, String)]) -> Outcome {
        for attempt in 0..<2 {
            let reused = idle.withLockedValue { $0.popLast() }
            let channel: any Channel
            if let reused, reused.isActive {
                channel = reused
            } else {
                do { channel = try connect() } catch { return .failed("cannot connect to \(host):\(port): \(error)") }
            }
            switch exchange(on: channel, target: target, body: body, headers: headers) {
            case .success(let (response, keepAlive)):
                if keepAlive { idle.withLockedValue { $0.append(channel) } } else { channel.close(promise: nil) }
                return .response(response)
            case .failure(let error):
                channel.close(promise: nil)
                // A kept connection the server closed while idle: once more on a new one.
                if reused != nil, attempt == 0, !(error is NoAnswer) { continue }
                return .failed("\(error)")
            }
        }
        return .failed("no response")
    }

    /// Closes the connections; call from the plugin's shutdown.
    public func close() {
        for channel in idle.withLockedValue({ let all = $0; $0 = []; return all }) { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
    }

    private func connect() throws -> any Channel {
        let tls = self.tls, serverName = self.serverName
        return try ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseReader())
                }
            }
            .connect(host: host, port: port).wait()
    }

    private func exchange(on channel: any Channel, target: String, body: [UInt8], headers: [(String, String)])
        -> Result<(Response, Bool), any Error> {
        let promise = channel.eventLoop.makePromise(of: Response.self)
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target)
        head.headers.add(name: "Host", value: port == 80 || port == 443 ? host : "\(host):\(port)")
        head.headers.add(name: "User-Agent", value: "spanhost-otlphttp")
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        let request = head
        let timeout = self.timeout
        let sent = channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            do {
                try channel.pipeline.syncOperations.handler(type: ResponseReader.self).expect(promise)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                promise.fail(NoAnswer(milliseconds: timeout.nanoseconds / 1_000_000))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in deadline.cancel() }
            channel.write(HTTPClientRequestPart.head(request), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
            return channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        }
        sent.whenFailure { promise.fail($0) }
        do {
            let response = try promise.futureResult.wait()
            let close = response.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            return .success((response, !close))
        } catch {
            return .failure(error)
        }
    }
}

/// The timeout passed with no complete answer.
struct NoAnswer: Error, CustomStringConvertible {
    let milliseconds: Int64
    var description: String { "no answer within \(milliseconds) ms" }
}

/// The connection closed before the answer was complete.
struct ConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection closed before the answer was complete" }
}

/// Collects one response at a time into the promise of the request in flight.
private final class ResponseReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private var promise: EventLoopPromise<HTTPClient.Response>?
    private var response = HTTPClient.Response(status: 0, headers: [:], body: [])

    func expect(_ promise: EventLoopPromise<HTTPClient.Response>) {
        self.promise = promise
        response = HTTPClient.Response(status: 0, headers: [:], body: [])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = Int(head.status.code)
            response.headers = head.headers
        case .body(var buffer):
            response.body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            promise?.succeed(response)
            promise = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ConnectionClosed())
        promise = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }
}
