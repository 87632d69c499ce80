import SpanhostConfig
import XCTest

final class ConfigTests: XCTestCase {
    let base = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: ${env:HOST:-127.0.0.1}:${env:PORT}
        processors:
          attributes/mask:
            actions:
              - key: password
                action: delete
        exporters:
          file:
            path: "${env:OUT}"
            note: "costs $$5"
            count: ${env:COUNT}
        service:
          shutdown_timeout: 1m30s
          pipelines:
            traces:
              receivers: [otlp]
              processors: [attributes/mask]
              exporters: [file]
        """

    func testParsesCollectorShapeWithEnvironmentSubstitution() throws {
        let config = try ServiceConfig.parse(yaml: base, environment: ["PORT": "4999", "OUT": "/tmp/x", "COUNT": "7"])
        let receiver = try XCTUnwrap(config.component(.receiver, ComponentID(type: "otlp")))
        XCTAssertEqual(receiver.settings.lookup("protocols.http.endpoint"), .string("127.0.0.1:4999"))
        let file = try XCTUnwrap(config.component(.exporter, ComponentID(type: "file")))
        XCTAssertEqual(file.settings["path"], .string("/tmp/x"))
        XCTAssertEqual(file.settings["note"], .string("costs $5"))
        XCTAssertEqual(file.settings["count"], .int(7))
        XCTAssertEqual(config.pipelines[0].processors, [ComponentID(type: "attributes", name: "mask")])
        XCTAssertEqual(config.processors[0].settings.lookup("actions.0.key"), .string("password"))
        XCTAssertEqual(config.shutdownTimeout, .seconds(90))
        XCTAssertEqual(config.adminEndpoint, ServiceConfig.defaultAdminEndpoint)
    }

    func testKafkaGroupSettingsMapToLibrdkafkaAndRefuseDoubles() throws {
        func settings(_ yaml: String) throws -> KafkaReceiverSettings {
            try KafkaReceiverSettings(settings: try YAMLLoader.load(yaml, environment: [:]), path: "receivers.kafka")
        }
        let defaults = try settings("brokers: [b:9092]")
        XCTAssertEqual(defaults.groupProperties.map { "\($0.key)=\($0.value)" },
                       ["session.timeout.ms=10000", "heartbeat.interval.ms=3000", "partition.assignment.strategy=range",
                        "max.poll.interval.ms=300000"])
        let tuned = try settings("{brokers: [b:9092], session_timeout: 6s, heartbeat_interval: 500ms, group_rebalance_strategy: cooperative-sticky}")
        XCTAssertEqual(tuned.sessionTimeout, .seconds(6))
        XCTAssertEqual(tuned.rebalanceStrategy, "cooperative-sticky")
        func error(_ yaml: String) -> String {
            do { _ = try settings(yaml); return "parsed" } catch { return "\(error)" }
        }
        XCTAssertEqual(error("{brokers: [b], session_timeout: 6s, properties: {session.timeout.ms: '7000'}}"),
                       "receivers.kafka.session_timeout: set either session_timeout or properties.session.timeout.ms, not both")
        XCTAssertEqual(error("{brokers: [b], group_rebalance_strategy: sticky}"),
                       "receivers.kafka.group_rebalance_strategy: 'sticky' is not range, roundrobin or cooperative-sticky")
        XCTAssertEqual(error("{brokers: [b], session_timeout: 2s}"),
                       "receivers.kafka.heartbeat_interval: must be shorter than session_timeout (2.0 seconds)")
    }

    func testAuthenticatorsMustBeDefinedAndEnabled() throws {
        let secured = base.replacingOccurrences(of: "endpoint: ${env:HOST:-127.0.0.1}:${env:PORT}",
                                                with: "{endpoint: \"127.0.0.1:1\", auth: {authenticator: bearertokenauth/ci}}")
        let env = ["OUT": "/tmp/x", "COUNT": "1"]
        // Receivers are checked with the rest of the config.
        XCTAssertThrowsError(try ServiceConfig.parse(yaml: secured, environment: env)) {
            XCTAssertEqual("\($0)", "receivers.otlp.protocols.http.auth.authenticator: 'bearertokenauth/ci' is not an enabled extension: "
                           + "define it under extensions and list it in service.extensions")
        }
        let enabled = try ServiceConfig.parse(
            yaml: "extensions:\n  bearertokenauth/ci: {tokens: [a, b], scheme: Token}\n"
                + secured.replacingOccurrences(of: "service:\n", with: "service:\n  extensions: [bearertokenauth/ci]\n"),
            environment: env)
        XCTAssertEqual(enabled.authenticators[ComponentID(type: "bearertokenauth", name: "ci")],
                       BearerTokenAuthSettings(source: .tokens(["a", "b"]), scheme: "Token"))
        XCTAssertNoThrow(try ReceiverSettings.used(in: enabled))
    }

    func testCollectorCompatibleSubstitutionAndMemoryLimiterProcessor() throws {
        XCTAssertEqual(try YAMLLoader.expand("${HOST}:${PORT:-4318}", path: "x", environment: ["HOST": "h"]), "h:4318")
        XCTAssertThrowsError(try YAMLLoader.expand("${file:/etc/x}", path: "x", environment: [:])) {
            XCTAssertEqual("\($0)", "x: unsupported substitution '${file:/etc/x}': use ${NAME}, ${env:NAME} or ${env:NAME:-default}")
        }
        let limited = base.replacingOccurrences(of: "processors:\n", with: "processors:\n  memory_limiter: {check_interval: 1s, limit_mib: 500, spike_limit_mib: 100}\n")
            .replacingOccurrences(of: "processors: [attributes/mask]", with: "processors: [memory_limiter, attributes/mask]")
        let config = try ServiceConfig.parse(yaml: limited, environment: ["PORT": "1", "OUT": "/tmp/x", "COUNT": "1"])
        XCTAssertEqual(config.memoryLimitBytes, 400 << 20)
        XCTAssertEqual(config.pipelines[0].processors, [ComponentID(type: "attributes", name: "mask")])
        XCTAssertNil(config.component(.processor, ComponentID(type: "memory_limiter")))
        let both = limited.replacingOccurrences(of: "  shutdown_timeout: 1m30s\n", with: "  shutdown_timeout: 1m30s\n  memory_limiter: {limit_mib: 64}\n")
        XCTAssertThrowsError(try ServiceConfig.parse(yaml: both, environment: ["PORT": "1", "OUT": "/tmp/x", "COUNT": "1"])) {
            XCTAssertEqual("\($0)", "processors.memory_limiter: set one memory limit: one memory_limiter processor, or service.memory_limiter")
        }
    }

    func testConnectorsAreListedUnderExportersAndTheirSettingsChecked() throws {
        let yaml = """
            receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:1"}}}}
            connectors:
              servicegraph: {store: {ttl: 5s}, latency_histogram_buckets: [10ms, 1s]}
              spanmetrics/red: {dimensions_cache_size: 50}
            service:
              pipelines:
                traces: {receivers: [otlp], exporters: [servicegraph, spanmetrics/red]}
            """
        let config = try ServiceConfig.parse(yaml: yaml, environment: [:])
        XCTAssertEqual(config.pipelines[0].connectors, [ComponentID(type: "servicegraph"), ComponentID(type: "spanmetrics", name: "red")])
        XCTAssertEqual(config.pipelines[0].exporters, [])
        guard case .serviceGraph(let graph) = config.connectors[0].kind else { return XCTFail("\(config.connectors)") }
        XCTAssertEqual(graph.ttl, .seconds(5))
        XCTAssertEqual(graph.buckets, [.milliseconds(10), .seconds(1)])
        for (bad, message) in [
            ("{store: {ttl: 5s, size: 1}}", "connectors.servicegraph.store.size: unknown key; valid keys: ttl, max_items"),
            ("{latency_histogram_buckets: [1s, 10ms]}", "connectors.servicegraph.latency_histogram_buckets: must be in increasing order"),
            ("{exponential_histogram_max_size: 10}",
             "connectors.servicegraph.exponential_histogram_max_size: exponential histograms are not supported by spanhost: use explicit buckets"),
        ] {
            let text = yaml.replacingOccurrences(of: "{store: {ttl: 5s}, latency_histogram_buckets: [10ms, 1s]}", with: bad)
            XCTAssertThrowsError(try ServiceConfig.parse(yaml: text, environment: [:])) { XCTAssertEqual("\($0)", message) }
        }
        for (bad, message) in [
            ("{exclude_dimensions: [http.method]}",
             "connectors.spanmetrics/red.exclude_dimensions.0: 'http.method' is not a default dimension; expected one of service.name, span.name, span.kind, status.code"),
            ("{dimensions: [{name: span.kind}]}",
             "connectors.spanmetrics/red.dimensions: 'span.kind' is listed twice (the default dimensions are service.name, span.name, span.kind, status.code)"),
            ("{histogram: {unit: h}}", "connectors.spanmetrics/red.histogram.unit: 'h' is not a unit; expected ms or s"),
            ("{aggregation_temporality: DELTA}",
             "connectors.spanmetrics/red.aggregation_temporality: 'DELTA' is not a temporality; expected AGGREGATION_TEMPORALITY_CUMULATIVE or AGGREGATION_TEMPORALITY_DELTA"),
            ("{events: {enabled: true}}", "connectors.spanmetrics/red.events.dimensions: required when events are enabled"),
        ] {
            let text = yaml.replacingOccurrences(of: "{dimensions_cache_size: 50}", with: bad)
            XCTAssertThrowsError(try ServiceConfig.parse(yaml: text, environment: [:])) { XCTAssertEqual("\($0)", message) }
        }
        let unknown = yaml.replacingOccurrences(of: "spanmetrics/red:", with: "count/red:").replacingOccurrences(of: "spanmetrics/red]", with: "count/red]")
        XCTAssertThrowsError(try ServiceConfig.parse(yaml: unknown, environment: [:])) {
            XCTAssertEqual("\($0)", "connectors.count/red: unknown connector 'count'; expected one of servicegraph, spanmetrics, forward, routing")
        }
    }

    func testConfigFilesMergeMapsKeyByKeyAndReplaceListsAndScalars() throws {
        let base = try YAMLLoader.load("a: {x: 1, y: [1, 2]}\nb: keep", environment: [:])
        let overlay = try YAMLLoader.load("a: {y: [3], z: new}\nc: added", environment: [:])
        XCTAssertEqual(base.merged(with: overlay),
                       try YAMLLoader.load("a: {x: 1, y: [3], z: new}\nb: keep\nc: added", environment: [:]))
    }

    func testEmbeddedDefaultIsValid() throws {
        let config = try ServiceConfig.parse(yaml: ServiceConfig.embeddedDefault, environment: [:])
        XCTAssertEqual(config.pipelines.map(\.exporters), [[ComponentID(type: "debug")]])
    }

    func testErrorsNameTheKey() {
        func error(_ yaml: String) -> String {
            do {
                _ = try ServiceConfig.parse(yaml: yaml, environment: [:])
                return "parsed"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(error(base.replacingOccurrences(of: "exporters: [file]", with: "exporters: [kafka]")),
                       "service.pipelines.traces.exporters.0: 'kafka' is not defined under exporters")
        XCTAssertEqual(error(base.replacingOccurrences(of: "receivers: [otlp]", with: "receivers: []")),
                       "service.pipelines.traces.receivers: a pipeline needs at least one receiver")
        XCTAssertEqual(error(base.replacingOccurrences(of: "shutdown_timeout: 1m30s", with: "shutdown_timeout: 3 weeks")),
                       "service.shutdown_timeout: '3 weeks' has unknown unit ' weeks'; use ms, s, m or h")
        XCTAssertEqual(error(base.replacingOccurrences(of: "${env:OUT}", with: "${file:OUT}")),
                       "exporters.file.path: unsupported substitution '${file:OUT}': use ${NAME}, ${env:NAME} or ${env:NAME:-default}")
        XCTAssertEqual(error(base.replacingOccurrences(of: "attributes/mask:", with: "attributes/:")),
                       "processors.attributes/: 'attributes/' has an empty name after '/'")
        XCTAssertTrue(error(base + "\nextra: 1").hasPrefix("extra: unknown section"))
    }

    func testLookupMatchesDottedKeysWhole() throws {
        let value = try YAMLLoader.load("properties:\n  sasl.mechanism: PLAIN\n  sasl: {x: 1}\nlist: [a, {b: c}]", environment: [:])
        XCTAssertEqual(value.lookup("properties.sasl.mechanism"), .string("PLAIN"))
        XCTAssertEqual(value.lookup("properties.sasl.x"), .int(1))
        XCTAssertEqual(value.lookup("list.1.b"), .string("c"))
        XCTAssertNil(value.lookup("list.2"))
        XCTAssertNil(value.lookup("properties.nope"))
    }

    func testDurations() throws {
        XCTAssertEqual(try parseDuration(.string("200ms"), path: "p"), .milliseconds(200))
        XCTAssertEqual(try parseDuration(.string("1h2m3s"), path: "p"), .seconds(3723))
        XCTAssertEqual(try parseDuration(.int(5), path: "p"), .seconds(5))
        XCTAssertThrowsError(try parseDuration(.string("fast"), path: "p"))
    }

    /// The Collector's batch processor becomes batching in the queues of its pipelines' exporters.
    func testTheBatchProcessorBecomesBatchingInTheExportersQueues() throws {
        let config = try ServiceConfig.parse(yaml: """
            receivers: {otlp: {}}
            processors:
              batch: {send_batch_size: 100, send_batch_max_size: 500, timeout: 2s}
              attributes: {actions: [{key: a, action: delete}]}
            exporters:
              file: {path: /tmp/x}
              debug: {sending_queue: {batch: {min_size: 7}}}
              otlphttp: {endpoint: "http://127.0.0.1:1", sending_queue: {enabled: false}}
              kafka: {}
            service:
              pipelines:
                traces: {receivers: [otlp], processors: [attributes, batch], exporters: [file, debug, otlphttp]}
                traces/other: {receivers: [otlp], exporters: [kafka]}
            """, environment: [:])
        XCTAssertEqual(config.pipelines[0].processors, [ComponentID(type: "attributes")])
        XCTAssertNil(config.component(.processor, ComponentID(type: "batch")))
        func batching(_ type: String) throws -> QueueBatchSettings? {
            let exporter = try XCTUnwrap(config.component(.exporter, ComponentID(type: type)))
            return try SendingQueueSettings(settings: exporter.settings["sending_queue"], path: type).batch
        }
        XCTAssertEqual(try batching("file")?.minSize, 100)
        XCTAssertEqual(try batching("file")?.maxSize, 500)
        XCTAssertEqual(try batching("file")?.flushTimeout, .seconds(2))
        XCTAssertEqual(try batching("debug")?.minSize, 7, "the exporter's own setting wins")
        XCTAssertNil(try batching("otlphttp"), "no queue, no batching")
        XCTAssertNil(try batching("kafka"), "not in a pipeline with batch")
        let partitioned = try ServiceConfig.parse(yaml: """
            receivers: {otlp: {}}
            processors: {batch: {metadata_keys: [X-Tenant], metadata_cardinality_limit: 20}}
            exporters: {file: {path: /tmp/x}}
            service: {pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [file]}}}
            """, environment: [:])
        let file = try XCTUnwrap(partitioned.component(.exporter, ComponentID(type: "file")))
        let settings = try SendingQueueSettings(settings: file.settings["sending_queue"], path: "file").batch
        XCTAssertEqual(settings?.metadataKeys, ["x-tenant"], "header names, compared lowercased")
        XCTAssertEqual(settings?.metadataCardinalityLimit, 20)
    }
}
