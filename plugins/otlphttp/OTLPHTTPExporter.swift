// otlphttp exporter: sends batches to any OTLP/HTTP backend (another spanhostd, a Collector,
// Jaeger, Tempo). Written against SpanhostPluginKit, loaded like any C plugin.
//
// Config:
//   endpoint: http://host:4318          base URL; /v1/traces is appended (required unless traces_endpoint)
//   traces_endpoint: URL                full URL, used as is
//   metrics_endpoint, logs_endpoint     accepted; in a metrics pipeline the host pushes the
//                                       connectors' metrics to metrics_endpoint
//   headers: {name: value}              sent with every request
//   compression: gzip | none            default gzip
//   encoding: proto | json              default proto
//   timeout: 30s                        per request
//   tls:                                https only, the Collector's client keys:
//     ca_file / ca_pem                  the CA the server's certificate must chain to (instead
//                                       of the system's, unless include_system_ca_certs_pool)
//     cert_file + key_file (or _pem)    a client certificate (mutual TLS)
//     insecure_skip_verify              no certificate check at all
//     min_version / max_version         "1.0" to "1.3"; default min 1.2
//     server_name_override              the name sent (SNI) and checked
//     insecure                          accepted; plain HTTP is chosen by an http:// endpoint
//   A bearertokenauth extension named by `auth.authenticator` arrives as an Authorization
//   header (the host resolves it).
//
// Counter responses{status="..."}: answers by HTTP status (labels at /metrics).
// Answers: 2xx is OK (partial success is counted as rejected_spans); 429, 502, 503, 504 and
// network errors are retryable (Retry-After honoured); any other status is permanent.
import Foundation
import PluginHTTP
import SpanhostPluginKit

final class OTLPHTTPExporter: SpanExporterPlugin {
    let url: URL
    let headers: [(String, String)]
    let gzip: Bool
    let json: Bool
    let host: PluginHost
    let http: HTTPClient

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        if let full = try config.string("traces_endpoint") {
            guard let url = URL(string: full), url.scheme == "http" || url.scheme == "https" else {
                throw PluginError("traces_endpoint: '\(full)' is not an http(s) URL")
            }
            self.url = url
        } else if let base = try config.string("endpoint") {
            let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
            guard let url = URL(string: trimmed + "/v1/traces"), url.scheme == "http" || url.scheme == "https" else {
                throw PluginError("endpoint: '\(base)' is not an http(s) URL")
            }
            self.url = url
        } else {
            throw PluginError("endpoint: required (for example http://127.0.0.1:4318)")
        }
        headers = try config.keys("headers").map { key in (key, try config.string("headers.\(key)") ?? "") }
        // Where this exporter's metrics and logs go: the host pushes metrics pipelines' metrics
        // there itself; logs never flow. Read so a Collector config that sets them is taken.
        _ = try config.string("metrics_endpoint")
        _ = try config.string("logs_endpoint")
        switch try config.string("compression") ?? "gzip" {
        case "gzip": gzip = true
        case "none", "": gzip = false
        case let other: throw PluginError("compression: '\(other)' is not gzip or none")
        }
        switch try config.string("encoding") ?? "proto" {
        case "proto": json = false
        case "json": json = true
        case let other: throw PluginError("encoding: '\(other)' is not proto or json")
        }
        http = try HTTPClient(url: url, tls: try TLSClientSettings(config: config), timeout: try config.seconds("timeout") ?? 30)
    }

    func export(_ batch: BatchView) -> PluginResult {
        guard var body = host.encode(batch, as: json ? .otlpJSON : .otlpProtobuf) else { return .permanent("encoding failed") }
        var headers = [("Content-Type", json ? "application/json" : "application/x-protobuf")]
        if gzip, let compressed = host.gzip(body) {
            body = compressed
            headers.append(("Content-Encoding", "gzip"))
        }
        let outcome = http.post(body: body, headers: headers + self.headers)
        if case .response(let response) = outcome, (200..<300).contains(response.status) {
            let data = Data(response.body)
            let rejected = json ? Self.rejectedSpansJSON(data) : Self.rejectedSpansProto(data)
            if rejected > 0 { host.count("rejected_spans", rejected) }
        }
        return outcome.exportResult(url: url, host: host)
    }

    func shutdown() { http.close() }

    /// partial_success.rejected_spans from an ExportTraceServiceResponse (protobuf).
    static func rejectedSpansProto(_ data: Data) -> Int64 {
        var bytes = [UInt8](data)[...]
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = bytes.popFirst() {
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
                if shift > 63 { return nil }
            }
            return nil
        }
        guard varint() == (1 << 3 | 2), let length = varint(), length <= bytes.count else { return 0 }
        bytes = bytes.prefix(Int(length))
        while let tag = varint() {
            if tag == (1 << 3 | 0) { return Int64(bitPattern: varint() ?? 0) }
            guard tag & 7 == 2, let skip = varint(), skip <= bytes.count else { return 0 }
            bytes = bytes.dropFirst(Int(skip))
        }
        return 0
    }

    static func rejectedSpansJSON(_ data: Data) -> Int64 {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let partial = object["partialSuccess"] as? [String: Any] else { return 0 }
        if let n = partial["rejectedSpans"] as? String { return Int64(n) ?? 0 }
        return (partial["rejectedSpans"] as? NSNumber)?.int64Value ?? 0
    }
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.exporter(OTLPHTTPExporter.self, name: "otlphttp", version: "1.0.0",
                            description: "sends spans to an OTLP/HTTP endpoint", schema: [
                                ConfigKey("endpoint", .string, "base URL; /v1/traces is appended (required unless traces_endpoint)"),
                                ConfigKey("traces_endpoint", .string, "full URL, used as is"),
                                ConfigKey("metrics_endpoint", .string, "where a metrics pipeline's connector metrics are pushed (by the host)"),
                                ConfigKey("logs_endpoint", .string, "accepted; no logs flow"),
                                ConfigKey("headers", .map, "headers sent with every request"),
                                ConfigKey("headers.*", .string, "a header value"),
                                ConfigKey("compression", .string, default: "gzip", "gzip or none"),
                                ConfigKey("encoding", .string, default: "proto", "proto or json"),
                                ConfigKey("timeout", .duration, default: "30s", "per request"),
                            ] + TLSClientSettings.schema, host: host)
}
