import Foundation
import NIOHTTP1
import Synchronization

/// Checks every admin request before it is routed, so a web page in a browser on the same
/// machine cannot drive the admin endpoint:
/// - a POST must say `Content-Type: application/json` (a cross-origin form or `text/plain`
///   POST cannot, without a CORS preflight the endpoint never grants);
/// - on a loopback address the `Host` header must name a loopback host (DNS rebinding);
/// - POSTs are limited to a few per second (429 past it).
public final class AdminGuard: Sendable {
    private let loopbackOnly: Bool
    private let bucket = Mutex((tokens: 10.0, at: ContinuousClock.now))
    private static let perSecond = 5.0
    private static let burst = 10.0

    /// `boundHost`: the host the admin endpoint listens on.
    public init(boundHost: String) {
        loopbackOnly = Self.isLoopback(boundHost)
    }

    /// Nil when the request may go on; else the answer.
    public func refusal(_ request: HTTPRequest) -> HTTPResponse? {
        if loopbackOnly {
            guard let host = request.headers.first(name: "host"), Self.isLoopback(Self.hostName(host)) else {
                return .text(.forbidden, "the Host header must name a loopback host (127.0.0.1, localhost or [::1])")
            }
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

    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }
}
