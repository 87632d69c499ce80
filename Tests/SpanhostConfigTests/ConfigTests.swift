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
        XCTAssertEqual(error(base.replacingOccurrences(of: "${env:OUT}", with: "${OUT}")),
                       "exporters.file.path: unsupported substitution '${OUT}': use ${env:NAME} or ${env:NAME:-default}")
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
}
