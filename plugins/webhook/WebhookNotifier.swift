// webhook notifier: POSTs each event as JSON to an HTTP endpoint. Written against
// SpanhostPluginKit.
//
// Config:
//   endpoint: http://host:port/path     required
//   format: json | slack                json (default) posts the host's event JSON;
//                                       slack posts {"text": ...} for Slack-style incoming webhooks
//   headers: {name: value}              sent with every request (for example Authorization)
//   timeout: 10s                        per request
//
// Counter responses{status="..."}: answers by HTTP status (labels at /metrics).
// Answers: 2xx is delivered; 408, 429 and 5xx and network errors are retryable (Retry-After
// honoured; the host retries with backoff per the notifier's retry_on_failure); other statuses
// are permanent.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SpanhostPluginHTTP
import SpanhostPluginKit

final class WebhookNotifier: SpanNotifierPlugin {
    let url: URL
    let slack: Bool
    let headers: [(String, String)]
    let host: PluginHost
    let http: HTTPSender

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        guard let endpoint = try config.string("endpoint") else {
            throw PluginError("endpoint: required (for example http://127.0.0.1:8080/hooks/spanhost)")
        }
        guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https" else {
            throw PluginError("endpoint: '\(endpoint)' is not an http(s) URL")
        }
        self.url = url
        switch try config.string("format") ?? "json" {
        case "json": slack = false
        case "slack": slack = true
        case let other: throw PluginError("format: '\(other)' is not json or slack")
        }
        headers = try config.keys("headers").map { key in (key, try config.string("headers.\(key)") ?? "") }
        http = HTTPSender(timeout: try config.seconds("timeout") ?? 10)
    }

    func notify(_ notification: NotificationView) -> PluginResult {
        let body: Data
        if slack {
            body = (try? JSONSerialization.data(withJSONObject: ["text": Self.slackText(notification)])) ?? Data()
        } else {
            guard let json = host.json(notification) else { return .permanent("the host cannot encode notifications (ABI older than 1.1)") }
            body = Data(json)
        }
        switch http.post(url, body: Array(body), headers: [("Content-Type", "application/json")] + headers) {
        case .failed(let why):
            return .retryable("\(url): \(why)")
        case .response(let response, let data):
            host.count("responses{status=\"\(response.statusCode)\"}")
            switch response.statusCode {
            case 200..<300:
                return .ok
            case 408, 429, 500...599:
                return .retryable(after: HTTPSender.retryAfter(response), "\(url) answered \(response.statusCode)")
            default:
                return .permanent("\(url) answered \(response.statusCode): \(String(decoding: data.prefix(300), as: UTF8.self))")
            }
        }
    }

    func shutdown() { http.close() }

    /// One message for a chat channel: severity, summary, count, then the details. Text from
    /// span data is escaped, so a span cannot ping a channel (`<!channel>`) or plant a link.
    static func slackText(_ n: NotificationView) -> String {
        var lines = ["*[\(n.severityName.uppercased())] \(slackEscaped(n.kind))* \(slackEscaped(n.summary))"]
        if n.count > 1 { lines.append("\(n.count) occurrences") }
        if let trace = n.traceID { lines.append("trace `\(trace)`") }
        for (key, value) in n.attributes where key != "exception.stacktrace" {
            if case .string(let s) = value { lines.append("• \(slackEscaped(key)): \(slackEscaped(s))") }
            else if case .int(let i) = value { lines.append("• \(slackEscaped(key)): \(i)") }
            else if case .double(let d) = value { lines.append("• \(slackEscaped(key)): \(d)") }
        }
        return lines.joined(separator: "\n")
    }

    /// Slack's control characters as entities: `<...>` is a mention or a link, `&` starts an entity.
    static func slackEscaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            default: out.append(ch)
            }
        }
        return out
    }

}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.notifier(WebhookNotifier.self, name: "webhook", version: "1.0.0",
                            description: "POSTs events as JSON (or Slack text) to an HTTP endpoint", schema: [
                                ConfigKey("endpoint", .string, required: true, "http(s) URL the events are POSTed to"),
                                ConfigKey("format", .string, default: "json", "json (the host's event JSON) or slack ({\"text\": ...})"),
                                ConfigKey("headers", .map, "headers sent with every request"),
                                ConfigKey("headers.*", .string, "a header value"),
                                ConfigKey("timeout", .duration, default: "10s", "per request"),
                            ], host: host)
}
