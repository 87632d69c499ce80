import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Blocking HTTP for plugins: one request at a time, waited for on the calling thread (the
/// host's exporter or notifier thread, never the Swift concurrency pool), with one connection
/// kept alive to the destination.
public final class HTTPSender: Sendable {
    /// What came back: a response with its body, or the error that stopped the request.
    public enum Outcome: Sendable {
        case response(HTTPURLResponse, Data)
        case failed(String)
    }

    private let session: URLSession
    public let timeout: TimeInterval

    public init(timeout: TimeInterval) {
        self.timeout = timeout
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.httpMaximumConnectionsPerHost = 1
        session = URLSession(configuration: configuration)
    }

    /// POSTs `body` to `url` and waits for the answer.
    public func post(_ url: URL, body: [UInt8], headers: [(String, String)]) -> Outcome {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = Data(body)
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex(Outcome.failed("no response"))
        session.dataTask(with: request) { data, response, error in
            let answer: Outcome
            if let response = response as? HTTPURLResponse {
                answer = .response(response, data ?? Data())
            } else {
                answer = .failed(error.map { $0.localizedDescription } ?? "no response")
            }
            outcome.withLock { $0 = answer }
            done.signal()
        }.resume()
        done.wait()
        return outcome.withLock { $0 }
    }

    /// Retry-After in seconds, when the answer carries one.
    public static func retryAfter(_ response: HTTPURLResponse) -> Duration? {
        response.value(forHTTPHeaderField: "Retry-After").flatMap(Int64.init).map { Duration.seconds($0) }
    }

    /// Cancels what is in flight; call from the plugin's shutdown.
    public func close() { session.invalidateAndCancel() }
}
