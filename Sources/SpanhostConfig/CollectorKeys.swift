/// Keys the OpenTelemetry Collector's components take that spanhost does not implement. A
/// config copied from the Collector that sets one is refused saying so, and why, rather than
/// as a typo. Keys are `<section>.<type>.<key path>`, with `*` for a list index.
public enum CollectorKeys {
    private static let tracesOnly = "spanhost carries traces only"
    private static let httpClientTuning = "connection tuning of the Go HTTP client; spanhost keeps one pool per exporter"
    static let exponentialHistograms = "exponential histograms are not supported by spanhost: use explicit buckets"

    static let notSupported: [String: String] = {
        var keys: [String: String] = [
            "receivers.otlp.protocols.http.cors": "browser clients (CORS) are not served",
            "receivers.otlp.protocols.http.logs_url_path": tracesOnly,
            "receivers.otlp.protocols.http.metrics_url_path": tracesOnly,
            "receivers.otlp.protocols.http.compression_algorithms": "gzip and identity are taken",
            "receivers.zipkin.parse_string_tags": "tags stay strings, as with the Collector's default",
            "receivers.zipkin.cors": "browser clients (CORS) are not served",
            "receivers.jaeger.remote_sampling": "sampling strategies are not served",
            "receivers.jaeger.protocols.thrift_http.cors": "browser clients (CORS) are not served",
            "receivers.kafka.auth": "set librdkafka's security.protocol and sasl.* under properties",
            "receivers.kafka.client_id": "set librdkafka's client.id under properties",
            "receivers.kafka.metadata": "set librdkafka's metadata.* under properties",
            "receivers.kafka.autocommit": "an offset is committed once the pipelines took its message",
            "receivers.kafka.message_marking": "an offset is committed once the pipelines took its message",
            "receivers.kafka.header_extraction": "message headers do not reach the pipelines",
            "receivers.kafka.resolve_canonical_bootstrap_servers_only": "set librdkafka's client.dns.lookup under properties",
            "exporters.kafka.auth": "set librdkafka's security.protocol and sasl.* under properties",
            "exporters.kafka.client_id": "set librdkafka's client.id under properties",
            "exporters.kafka.metadata": "set librdkafka's metadata.* under properties",
            "exporters.kafka.producer": "set librdkafka's producer properties under properties (message.max.bytes, compression.codec)",
            "processors.redaction.url_sanitizer": "URL path segments are not classified yet; mask them with blocked_values",
            "processors.redaction.db_sanitizer": "queries are not parsed yet; mask literals with blocked_values",
            "processors.redaction.allowed_values_ignore_case": "not implemented yet",
            "extensions.health_check.response_body": "the answer is the status JSON",
            "extensions.health_check.cors": "browser clients (CORS) are not served",
            "extensions.health_check.auth": "use admin.auth for the admin endpoint",
        ]
        for exporter in ["otlphttp", "zipkin"] {
            for key in ["proxy_url", "read_buffer_size", "write_buffer_size", "max_idle_conns", "max_idle_conns_per_host",
                        "max_conns_per_host", "idle_conn_timeout", "disable_keep_alives", "http2_read_idle_timeout",
                        "http2_ping_timeout", "cookies", "tls.reload_interval", "tls.cipher_suites", "tls.curve_preferences"] {
                keys["exporters.\(exporter).\(key)"] = httpClientTuning
            }
        }
        return keys
    }()

    /// Why the key at `path` (`exporters.otlphttp/tempo.proxy_url`, `processors.attributes.actions.2.from_context`)
    /// is refused, when it is a Collector key spanhost does not implement; nil otherwise.
    public static func note(for path: String) -> String? {
        var parts = path.split(separator: ".").map(String.init)
        guard parts.count >= 3 else { return nil }
        // The plugin of `type/name` (otlp_http is otlphttp).
        parts[1] = (try? ComponentID(parsing: parts[1], path: "").pluginName) ?? parts[1]
        let pattern = parts.enumerated().map { $0.offset >= 2 && Int($0.element) != nil ? "*" : $0.element }.joined(separator: ".")
        guard let why = notSupported[pattern] else { return nil }
        return "Collector key `\(parts.last!)` is not supported by spanhost: \(why)"
    }
}
