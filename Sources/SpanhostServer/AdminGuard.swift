import Foundation
import NIOCore
import NIOHTTP1
import SpanhostConfig
import SpanhostReceivers
import Synchronization

/// Checks every admin request before it is routed, so a web page in a browser on the same
/// machine cannot drive the admin endpoint:
/// - a POST must say `Content-Type: application/json` (a cross-origin form or `text/plain`
///   POST cannot, without a CORS preflight the endpoint never grants);
/// - on a loopback address the `Host` header must name a loopback host (DNS rebinding);
/// - POSTs are limited to a few per second (429 past it);
/// - with `admin.auth`, every request but `GET /healthz` needs an accepted token (401).
public final class AdminGuard: Sendable {
    private let loopbackOnly: Bool
    private let authenticator: BearerTokenAuthenticator?
    private let bucket = Mutex((tokens: 10.0, at: ContinuousClock.now))
    private static let perSecond = 5.0
    private static let burst = 10.0

    /// `boundHost`: the host the admin endpoint listens on; nil for a Unix socket, where
    /// neither the Host nor a token is checked (the socket file's permissions decide who connects).
    public init(boundHost: String?, authenticator: BearerTokenAuthenticator? = nil) {
        loopbackOnly = boundHost.map(Endpoint.isLoopback) ?? false
        self.authenticator = boundHost == nil ? nil : authenticator
    }

    /// Nil when the request may go on; else the answer.
    public func refusal(_ request: HTTPRequest) -> HTTPResponse? {
        if loopbackOnly {
            guard let host = request.headers.first(name: "host"), Endpoint.isLoopback(Self.hostName(host)) else {
                return .text(.forbidden, "the Host header must name a loopback host (127.0.0.1, localhost or [::1])")
            }
        }
        if let authenticator, !(request.method == .GET && request.path == "/healthz"), !authenticator.accepts(request.headers) {
            var response = HTTPResponse.text(.unauthorized, "the admin endpoint needs Authorization: \(authenticator.challenge) <token> (admin.auth)")
            response.headers.add(name: "WWW-Authenticate", value: authenticator.challenge)
            return response
        }
        guard request.method == .POST else { return nil }
        let type = request.headers.first(name: "content-type")?.split(separator: ";").first?
            .trimmingCharacters(in: .whitespaces).lowercased()
        guard type == "application/json" else {
            return .text(.unsupportedMediaType, "admin POST requests must have Content-Type: application/json")
        }
        let allowed: Bool = bucket.withLock { state in
            let now = ContinuousClock.now
            let elapsed = now - state.at
            state.tokens = min(Self.burst, state.tokens + Self.perSecond * (Double(elapsed.components.seconds)
                + Double(elapsed.components.attoseconds) / 1e18))
            state.at = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
        if !allowed {
            var response = HTTPResponse.text(.tooManyRequests, "too many admin POST requests; at most \(Int(Self.perSecond)) a second")
            response.headers.add(name: "Retry-After", value: "1")
            return response
        }
        return nil
    }

    /// "localhost:13133" -> "localhost", "[::1]:13133" -> "::1".
    static func hostName(_ header: String) -> String {
        if header.hasPrefix("["), let end = header.firstIndex(of: "]") {
            return String(header[header.index(after: header.startIndex)..<end])
        }
        return String(header.split(separator: ":", maxSplits: 1).first ?? "")
    }
}

/// The admin endpoint's listeners as a config sets them: `admin.endpoint` (TCP, guarded, with
/// `admin.auth`) and, if set, `admin.unix_socket` (mode 0600). Both serve the same routes.
public struct AdminListeners: Sendable {
    public let endpoint: Endpoint
    public let tcp: HTTPServer
    public let unix: HTTPServer?
    /// The `health_check` extensions' own listeners, for those with an endpoint of their own.
    public let health: [HTTPServer]
    /// `admin.auth`'s authenticator: its token file is read again on every reload.
    public let authenticator: BearerTokenAuthenticator?

    public static func start(config: ServiceConfig, group: any EventLoopGroup,
                             route: @escaping HTTPServer.Handler) async throws -> AdminListeners {
        let authenticator = try config.authenticator(config.adminAuth, path: "admin").map {
            try BearerTokenAuthenticator($0, path: "extensions.\(config.adminAuth!)")
        }
        // The health_check extensions answer as /healthz does, without a token like /healthz.
        let onAdmin = config.healthChecks.filter { $0.onAdminEndpoint && $0.path != "/" }.map(\.path)
        @Sendable func asHealthz(_ request: HTTPRequest) -> HTTPRequest {
            var probe = request
            probe.path = "/healthz"
            return probe
        }
        func guarded(_ guardian: AdminGuard) -> HTTPServer.Handler {
            { request, loop in
                if request.method == .GET, onAdmin.contains(request.path) {
                    return route(asHealthz(request), loop)
                }
                if let refusal = guardian.refusal(request) { return loop.makeSucceededFuture(refusal) }
                return route(request, loop)
            }
        }
        let endpoint = config.adminEndpoint
        let tcp = try await HTTPServer.start(.tcp(host: endpoint.host, port: endpoint.port), maxBodyBytes: 1 << 16, group: group,
                                             handler: guarded(AdminGuard(boundHost: endpoint.host, authenticator: authenticator)))
        var healthServers: [HTTPServer] = []
        for health in config.healthChecks where !health.onAdminEndpoint {
            do {
                let tls = try health.tls.map { try ServerSecurity.context($0, path: "extensions.\(health.id).tls") }
                healthServers.append(try await HTTPServer.start(.tcp(host: health.endpoint.host, port: health.endpoint.port),
                                                                maxBodyBytes: 1 << 12, tls: tls, group: group) { request, loop in
                    guard request.method == .GET, request.path == health.path else {
                        return loop.makeSucceededFuture(.text(.notFound, "health_check answers GET \(health.path)"))
                    }
                    return route(asHealthz(request), loop)
                })
            } catch {
                for server in healthServers { await server.close() }
                await tcp.close()
                if error is ConfigError { throw error }
                throw ConfigError("extensions.\(health.id).endpoint", "cannot listen on \(health.endpoint): \(error)")
            }
        }
        var unix: HTTPServer?
        if let path = config.adminUnixSocket {
            do {
                unix = try await HTTPServer.start(.unix(path: path), maxBodyBytes: 1 << 16, group: group,
                                                  handler: guarded(AdminGuard(boundHost: nil)))
                guard chmod(path, 0o600) == 0 else {
                    throw ConfigError("admin.unix_socket", "cannot make \(path) private (chmod 0600): \(String(cString: strerror(errno)))")
                }
            } catch {
                await unix?.close()
                for server in healthServers { await server.close() }
                await tcp.close()
                if error is ConfigError { throw error }
                throw ConfigError("admin.unix_socket", "cannot listen on \(path): \(error)")
            }
        }
        return AdminListeners(endpoint: endpoint, tcp: tcp, unix: unix, health: healthServers, authenticator: authenticator)
    }

    public func close() async {
        await tcp.close()
        for server in health { await server.close() }
        if let unix {
            await unix.close()
            if let path = unixPath { unlink(path) }
        }
    }

    private var unixPath: String? { unix?.socketPath }
}
