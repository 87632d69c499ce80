// zipkin exporter: sends batches as Zipkin v2 JSON to a Zipkin server (or any Zipkin
// receiver), mapped as the Collector's zipkin exporter maps them. The host writes the JSON
// (encode_batch, SPANHOST_ENCODING_ZIPKIN_JSON); this plugin only sends it.
//
// Config (the Collector's keys):
//   endpoint: http://host:9411/api/v2/spans   full URL (required)
//   format: json                              proto is not supported yet
//   default_service_name: <missing service name>   for spans whose resource has no service name
//   headers: {name: value}, timeout: 5s, compression: none | gzip (default none), tls: as otlphttp
//   A bearertokenauth extension named by `auth.authenticator` arrives as an Authorization header.
//
// Answers: 2xx is OK; 429, 502, 503, 504 and network errors are retryable (Retry-After
// honoured); any other status is permanent.
import Foundation
import PluginHTTP
import SpanhostPluginKit

final class ZipkinExporter: SpanExporterPlugin {
    let url: URL
    let headers: [(String, String)]
    let gzip: Bool
    /// The JSON the host writes for a resource without a service name, and what replaces it.
    let noServiceName: [UInt8] = Array(#""serviceName":"OTLPResourceNoServiceName""#.utf8)
    let defaultServiceName: [UInt8]
    let host: PluginHost
    let http: HTTPClient

    init(config: PluginConfig, host: PluginHost) throws {
        self.host = host
        guard let endpoint = try config.string("endpoint") else {
            throw PluginError("endpoint: required (for example http://127.0.0.1:9411/api/v2/spans)")
        }
        guard let url = URL(string: endpoint) else { throw PluginError("endpoint: '\(endpoint)' is not a URL") }
        self.url = url
        switch try config.string("format") ?? "json" {
        case "json": break
        case "proto": throw PluginError("format: proto is not supported yet; use json")
        case let other: throw PluginError("format: '\(other)' is not json or proto")
        }
        let name = try config.string("default_service_name") ?? "<missing service name>"
        let quoted = try JSONSerialization.data(withJSONObject: [name], options: [.withoutEscapingSlashes])
        defaultServiceName = Array(#""serviceName":"#.utf8) + Array(quoted.dropFirst().dropLast())
        headers = try config.keys("headers").map { key in (key, try config.string("headers.\(key)") ?? "") }
        switch try config.string("compression") ?? "none" {
        case "gzip": gzip = true
        case "none", "": gzip = false
        case let other: throw PluginError("compression: '\(other)' is not gzip or none")
        }
        http = try HTTPClient(url: url, tls: try TLSClientSettings(config: config), timeout: try config.seconds("timeout") ?? 5)
    }

    func export(_ batch: BatchView) -> PluginResult {
        guard var body = host.encode(batch, as: .zipkinJSON) else {
            return .permanent("cannot write the batch as Zipkin JSON (a span with an all-zero trace or span id?)")
        }
        body = Self.replacing(noServiceName, with: defaultServiceName, in: body)
        var headers = [("Content-Type", "application/json")]
        if gzip, let compressed = host.gzip(body) {
            body = compressed
            headers.append(("Content-Encoding", "gzip"))
        }
        return http.post(body: body, headers: headers + self.headers).exportResult(url: url, host: host)
    }

    func shutdown() { http.close() }

    static func replacing(_ old: [UInt8], with new: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        guard old != new, bytes.count >= old.count else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == old[0], i + old.count <= bytes.count, bytes[i..<(i + old.count)].elementsEqual(old) {
                out += new
                i += old.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.exporter(ZipkinExporter.self, name: "zipkin", version: "1.0.0",
                            description: "sends spans as Zipkin v2 JSON", schema: [
                                ConfigKey("endpoint", .string, required: true, "full URL, e.g. http://127.0.0.1:9411/api/v2/spans"),
                                ConfigKey("format", .string, default: "json", "json (proto is not supported yet)"),
                                ConfigKey("default_service_name", .string, default: "<missing service name>",
                                          "service name of spans whose resource has none"),
                                ConfigKey("headers", .map, "headers sent with every request"),
                                ConfigKey("headers.*", .string, "a header value"),
                                ConfigKey("compression", .string, default: "none", "gzip or none"),
                                ConfigKey("timeout", .duration, default: "5s", "per request"),
                            ] + TLSClientSettings.schema, host: host)
}
