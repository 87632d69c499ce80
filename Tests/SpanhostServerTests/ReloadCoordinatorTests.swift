import Foundation
import Logging
import NIOPosix
@testable import SpanhostServer
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostPluginHost
import SpanhostTestSupport
import Synchronization
import XCTest

/// A reload is one transaction: it swaps in a generation built beside the running one, or
/// changes nothing. Real plugins, real listeners on 127.0.0.1, batches handed to the current
/// generation as a receiver hands them.
final class ReloadCoordinatorTests: XCTestCase {
    let tmp = NSTemporaryDirectory() + "spanhost-reload-tests-\(getpid())"
    let logger = Logger(label: "test")
    let otlp = ComponentID(type: "otlp")
    var group: MultiThreadedEventLoopGroup!
    var pool: NIOThreadPool!

    override func setUpWithError() throws {
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
    }

    override func tearDownWithError() throws {
        try group.syncShutdownGracefully()
        try pool.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: tmp)
    }

    /// The config a reload reads: the test changes it between reloads, as an operator edits the
    /// file, and can hold a reload in the middle of reading it.
    final class ConfigFile: Sendable {
        let yaml: Mutex<String>
        let tmp: String
        /// While `held`, a load waits (on the reload's own thread); `reading` says one is waiting.
        let hold = Mutex((held: false, reading: false))
        init(_ yaml: String, tmp: String) {
            self.yaml = Mutex(yaml)
            self.tmp = tmp
        }
        func load() throws -> ServiceConfig {
            while hold.withLock({ hold in hold.reading = hold.held; return hold.held }) { Thread.sleep(forTimeInterval: 0.005) }
            return try ServiceConfig.parse(yaml: yaml.withLock { $0 }.replacingOccurrences(of: "TMP", with: tmp), environment: [:])
        }
    }

    /// One file exporter (`file/<name>`) behind an OTLP receiver, and any further receivers.
    func config(exporter name: String, exporterSettings: String = "", moreReceivers: String = "") -> String {
        """
        receivers:
          otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
        \(moreReceivers)
        exporters:
          file/\(name): {path: TMP/\(name).jsonl\(exporterSettings)}
        service:
          pipelines:
            traces: {receivers: [otlp\(moreReceivers.isEmpty ? "" : ", zipkin")], exporters: [file/\(name)]}
        """
    }

    func start(_ file: ConfigFile) async throws -> (ReloadCoordinator, CurrentGeneration) {
        _ = try BuiltPlugins.path("file")
        let config = try file.load()
        let catalog = PluginCatalog.load(config.pluginNames, from: [BuiltPlugins.directory], cacheDirectory: BuiltPlugins.cacheDirectory,
                                         logger: logger)
        let current = CurrentGeneration(try Generation(config: config, catalog: catalog))
        let receivers = ReceiverRegistry(group: group, pool: pool, current: current, inherited: [:], logger: logger)
        let coordinator = ReloadCoordinator(config: config, loadConfig: { try file.load() },
                                            pluginDirs: { _ in [BuiltPlugins.directory] }, cacheDir: BuiltPlugins.cacheDirectory,
                                            preflightArguments: nil, quarantineFile: nil, current: current, receivers: receivers,
                                            logger: logger)
        try await coordinator.start()
        return (coordinator, current)
    }

    func consume(_ n: Int, into current: CurrentGeneration) throws {
        XCTAssertEqual(current.consume(try sampleSpans(n), from: otlp, placement: .pool), .accepted(rejectedSpans: 0, message: nil))
    }

    /// After a failed reload: the first generation (exporter `file/a`) still runs, takes spans
    /// and is the one shut down; what was built for the reload was discarded, not retired.
    func assertNothingChanged(_ coordinator: ReloadCoordinator, _ current: CurrentGeneration, first: Generation,
                              file: StaticString = #filePath, line: UInt = #line) async throws {
        XCTAssertTrue(current.value === first, "the running generation stays", file: file, line: line)
        XCTAssertEqual(coordinator.currentConfig.exporters.map(\.id.description), ["file/a"], file: file, line: line)
        try consume(1, into: current)
        let report = await coordinator.shutdown()
        XCTAssertEqual(report.exporters["file/a"]?.delivered, 1, file: file, line: line)
        XCTAssertNil(report.exporters["file/b"], "nothing of the failed config ran", file: file, line: line)
    }

    func testAReloadThatBuildsIsSwappedInAndTheRetiredExportersSpansAreInTheFinalReport() async throws {
        let file = ConfigFile(config(exporter: "a"), tmp: tmp)
        let (coordinator, current) = try await start(file)
        let first = current.value
        try consume(3, into: current)

        file.yaml.withLock { $0 = config(exporter: "b") }
        let entry = await coordinator.reload(trigger: "test")
        XCTAssertTrue(entry.ok, entry.message)
        XCTAssertFalse(current.value === first, "a new generation is current")
        XCTAssertEqual(current.value.exporters.map(\.id.description), ["file/b"])
        XCTAssertEqual(coordinator.currentConfig.exporters.map(\.id.description), ["file/b"])
        try consume(2, into: current)

        let report = await coordinator.shutdown()
        XCTAssertEqual(report.exporters["file/a"]?.delivered, 3, "the retired exporter drained, and its figures are kept")
        XCTAssertEqual(report.exporters["file/b"]?.delivered, 2)
        XCTAssertEqual(report.lostSpans, 0)
        XCTAssertEqual(coordinator.log.summary.succeeded, 1)
    }

    func testAReloadThatFailsToBuildLeavesTheRunningGenerationAsItWas() async throws {
        let file = ConfigFile(config(exporter: "a"), tmp: tmp)
        let (coordinator, current) = try await start(file)
        let first = current.value

        file.yaml.withLock { $0 = config(exporter: "b", exporterSettings: ", colour: red") }
        let entry = await coordinator.reload(trigger: "test")
        XCTAssertFalse(entry.ok)
        XCTAssertTrue(entry.message.contains("colour"), entry.message)
        XCTAssertEqual(coordinator.log.summary.failed, 1)
        try await assertNothingChanged(coordinator, current, first: first)
    }

    func testAReloadWhoseNewEndpointCannotBeBoundDiscardsWhatItBuilt() async throws {
        let file = ConfigFile(config(exporter: "a"), tmp: tmp)
        let (coordinator, current) = try await start(file)
        let first = current.value
        // Another process's port: the new zipkin receiver cannot listen there.
        let taken = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(taken.localAddress?.port)

        file.yaml.withLock {
            $0 = config(exporter: "b", moreReceivers: "  zipkin: {endpoint: \"127.0.0.1:\(port)\"}")
        }
        let entry = await coordinator.reload(trigger: "test")
        try await taken.close()
        XCTAssertFalse(entry.ok, entry.message)
        try await assertNothingChanged(coordinator, current, first: first)
    }

    func testAShutdownDuringAReloadWaitsForItAndThenShutsTheNewGenerationDown() async throws {
        let file = ConfigFile(config(exporter: "a"), tmp: tmp)
        let (coordinator, current) = try await start(file)
        try consume(2, into: current)
        file.yaml.withLock { $0 = config(exporter: "b") }
        file.hold.withLock { $0.held = true }
        let reload = Task { await coordinator.reload(trigger: "test") }
        let waiting = ContinuousClock.now + .seconds(10)
        while !file.hold.withLock({ $0.reading }) && ContinuousClock.now < waiting { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertTrue(file.hold.withLock { $0.reading }, "the reload is reading its config")
        let shutdown = Task { await coordinator.shutdown() }
        try await Task.sleep(for: .milliseconds(50))  // the shutdown is at the turnstile by now
        file.hold.withLock { $0.held = false }

        let entry = await reload.value
        let report = await shutdown.value
        XCTAssertTrue(entry.ok, entry.message)
        XCTAssertEqual(report.exporters["file/a"]?.delivered, 2, "retired by the reload, and counted")
        XCTAssertNotNil(report.exporters["file/b"], "the generation the reload swapped in is the one shut down")
    }

    func testReloadsAndTheShutdownTakeTurns() async {
        final class Inside: Sendable { let count = Mutex((now: 0, most: 0, entered: 0)) }
        let turn = Turnstile(), inside = Inside()
        await withTaskGroup(of: Void.self) { tasks in
            for _ in 0..<6 {
                tasks.addTask {
                    await turn.enter()
                    inside.count.withLock { $0.now += 1; $0.most = max($0.most, $0.now); $0.entered += 1 }
                    try? await Task.sleep(for: .milliseconds(5))
                    inside.count.withLock { $0.now -= 1 }
                    await turn.leave()
                }
            }
        }
        let seen = inside.count.withLock { $0 }
        XCTAssertEqual(seen.entered, 6)
        XCTAssertEqual(seen.most, 1, "never two at once")
    }
}
