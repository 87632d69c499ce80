import ArgumentParser
import CSpanhost
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import Synchronization

/// `spanhost plugin-test`: one plugin, the real host table, the real decoder, every hook in the
/// order the host calls them, and what came out. No daemon, no network.
struct PluginTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin-test",
        abstract: "Runs one plugin on test input: create, start, the hook, flush, destroy.",
        discussion: """
            A processor's output (the batch after process, then anything it emitted) is printed as \
            one OTLP JSON line per batch on stdout; an exporter's or notifier's result is printed. \
            Counters, logs and raised events go to stderr. Exits 0 when every hook returned OK and \
            the output equals --expect.
            """)

    @Argument(help: "The plugin's .so file.")
    var plugin: String

    @Option(name: .long, help: "A YAML file with the component's settings (default: none).")
    var config: String?

    @Option(name: .long, help: "OTLP spans: .json (OTLP JSON) or .pb (protobuf). Processors and exporters.")
    var input: String?

    @Option(name: .long, help: "Notifiers: an event in the JSON host->encode_notification writes.")
    var notification: String?

    @Option(name: .long, help: "Processors: the expected output, OTLP JSON lines (compared as JSON).")
    var expect: String?

    @Option(name: .long, help: "Calls one function the plugin adds to expressions and prints the result: --call 'f(\"x\", 3)'.")
    var call: String?

    @Option(name: .long, help: "Seconds a hook may run before the test fails as hung (default: 30).")
    var timeout: Double = 30

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        // A crash inside a hook prints which plugin file and hook it was before the process dies.
        sh_crash_records_install(STDERR_FILENO)
        let library: PluginLibrary
        do { library = try PluginCatalog.loadInPlace(path: plugin) } catch {
            throw failure("\(error)")
        }
        if let call {
            var out = [CChar](repeating: 0, count: 1024)
            guard sh_expr_call(call, call.utf8.count, &out, out.count) == 0 else { throw failure(String(nulTerminated: out)) }
            return print(String(nulTerminated: out))
        }
        guard library.kind != .functions else {
            throw failure("\(library.name) only adds functions to expressions: call one with --call 'name(args)'")
        }
        let settings = try config.map { path -> ConfigValue in
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return try YAMLLoader.load(text, environment: ProcessInfo.processInfo.environment)
        } ?? .emptyMap
        let instance: PluginInstance
        do {
            instance = try PluginInstance(id: ComponentID(type: library.name), library: library, settings: settings)
        } catch {
            throw failure("\(error)")
        }
        let emitted = Mutex<[String]>([])
        instance.emitHandler = { batch in
            emitted.withLock { $0.append(Self.json(batch)) }
            return .accepted(rejectedSpans: 0, message: nil)
        }
        instance.raiseHandler = { event in
            if let copy = NotificationEvent(copying: event) { FileHandle.standardError.write(Data("event: \(copy.json)\n".utf8)) }
        }
        var problems: [String] = []
        func check(_ hook: String, _ result: CallResult) {
            switch result {
            case .ok, .consumed: break
            case .retryable(_, let message): problems.append("\(hook) returned RETRYABLE: \(message)")
            case .permanent(let message): problems.append("\(hook) returned PERMANENT: \(message)")
            case .unavailable(let message): problems.append("\(hook) was not called: \(message)")
            }
        }
        var output: [String] = []
        switch library.kind {
        case .functions:
            break  // refused above
        case .processor:
            let batch = try readInput()
            let result = try bounded("process") { instance.process(batch) }
            check("process", result)
            if result == .ok {
                batch.removeDroppedSpans()
                if batch.spanCount > 0 { output.append(Self.json(batch)) }
            }
        case .exporter:
            let batch = try readInput()
            let result = try bounded("export_batch") { instance.export(batch) }
            check("export_batch", result)
            print("export_batch: \(Self.describe(result))")
        case .notifier:
            let event = try readNotification()
            let result = try bounded("notify") { instance.notify(event.pointer) }
            check("notify", result)
            print("notify: \(Self.describe(result))")
        }
        check("flush", instance.flush())
        instance.destroy()
        output += emitted.withLock { $0 }
        for line in output { print(line) }
        for (name, value) in instance.counters.snapshot.sorted(by: { $0.key < $1.key }) {
            FileHandle.standardError.write(Data("counter \(name) = \(value)\n".utf8))
        }
        if let expect {
            let wanted = try Self.jsonLines(String(contentsOfFile: expect, encoding: .utf8))
            let got = try Self.jsonLines(output.joined(separator: "\n"))
            if wanted != got {
                problems.append("the output differs from \(expect) (- expected, + got):\n" + Self.difference(wanted, got).joined(separator: "\n"))
            }
        }
        if !problems.isEmpty { throw failure(problems.joined(separator: "; ")) }
    }

    /// Runs a hook on a thread of its own and waits at most --timeout for it: a hung plugin
    /// fails the test instead of hanging it.
    private func bounded(_ hook: String, _ body: @escaping @Sendable () -> CallResult) throws -> CallResult {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<CallResult?>(nil)
        let thread = Thread {
            let outcome = body()
            result.withLock { $0 = outcome }
            done.signal()
        }
        thread.start()
        guard done.wait(timeout: .now() + max(0.001, timeout)) == .success, let outcome = result.withLock({ $0 }) else {
            throw failure("\(hook) did not return within \(timeout) s (--timeout): the plugin is hung")
        }
        return outcome
    }

    private func failure(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("plugin-test: \(message)\n".utf8))
        return ExitCode(1)
    }

    private func readInput() throws -> SpanBatch {
        guard let input else { throw ValidationError("--input is required for processors and exporters") }
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: input)))
        do {
            return try SpanBatch.decode(bytes, encoding: input.hasSuffix(".pb") ? .protobuf : .json)
        } catch {
            throw ValidationError("\(input): \(error)")
        }
    }

    /// The event JSON host->encode_notification writes (what the log and webhook notifiers send).
    private struct EventJSON: Decodable {
        enum Scalar: Decodable {
            case bool(Bool), int(Int64), double(Double), string(String)
            init(from decoder: any Decoder) throws {
                let value = try decoder.singleValueContainer()
                if let b = try? value.decode(Bool.self) { self = .bool(b) }
                else if let i = try? value.decode(Int64.self) { self = .int(i) }
                else if let d = try? value.decode(Double.self) { self = .double(d) }
                else { self = .string(try value.decode(String.self)) }
            }
        }
        var kind, severity, source, key, summary, trace_id: String?
        var count: UInt64?
        var attributes: [String: Scalar]?
    }

    private func readNotification() throws -> NotificationEvent {
        guard let notification else { throw ValidationError("--notification is required for notifiers") }
        let event: EventJSON
        do { event = try JSONDecoder().decode(EventJSON.self, from: Data(contentsOf: URL(fileURLWithPath: notification))) } catch {
            throw ValidationError("\(notification): not an event in the notification JSON: \(error)")
        }
        let severities = ["info": 0, "warning": 1, "error": 2, "critical": 3]
        let attributes: [(String, NotificationEvent.Value)] = (event.attributes ?? [:]).sorted { $0.key < $1.key }.map { key, value in
            switch value {
            case .bool(let b): return (key, .int(b ? 1 : 0))
            case .int(let i): return (key, .int(i))
            case .double(let d): return (key, .double(d))
            case .string(let s): return (key, .string(s))
            }
        }
        let hex = Array((event.trace_id ?? "").utf8)
        let traceID: [UInt8]? = hex.count == 32
            ? stride(from: 0, to: 32, by: 2).compactMap { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16) } : nil
        guard let built = NotificationEvent(
            kind: event.kind ?? "test", severity: UInt32(severities[event.severity ?? "error"] ?? 2),
            source: event.source ?? "plugin-test", key: event.key ?? "", summary: event.summary ?? "",
            attributes: attributes, traceID: traceID, count: event.count ?? 1)
        else { throw ValidationError("out of memory") }
        return built
    }

    static func json(_ batch: SpanBatch) -> String {
        String(decoding: batch.encode(.json) ?? [], as: UTF8.self)
    }

    static func describe(_ result: CallResult) -> String {
        switch result {
        case .ok: return "OK"
        case .consumed: return "CONSUMED"
        case .retryable(_, let message): return "RETRYABLE: \(message)"
        case .permanent(let message): return "PERMANENT: \(message)"
        case .unavailable(let message): return "not called: \(message)"
        }
    }

    /// What differs between expected and actual output, as `- path: value` / `+ path: value`
    /// lines (at most 40), paths like `batch 1: resourceSpans.0.scopeSpans.0.spans.2.name`.
    static func difference(_ wanted: [NSObject], _ got: [NSObject]) -> [String] {
        func flatten(_ value: Any, _ path: String, into out: inout [(String, String)]) {
            if let map = value as? [String: Any] {
                for key in map.keys.sorted() { flatten(map[key]!, path.isEmpty ? key : "\(path).\(key)", into: &out) }
            } else if let list = value as? [Any] {
                for (index, item) in list.enumerated() { flatten(item, "\(path).\(index)", into: &out) }
            } else {
                let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
                out.append((path, data.map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"))
            }
        }
        var lines: [String] = []
        if wanted.count != got.count { lines += ["- \(wanted.count) batches", "+ \(got.count) batches"] }
        for index in 0..<max(wanted.count, got.count) {
            var expected: [(String, String)] = [], actual: [(String, String)] = []
            if index < wanted.count { flatten(wanted[index], "", into: &expected) }
            if index < got.count { flatten(got[index], "", into: &actual) }
            let want = Dictionary(expected, uniquingKeysWith: { a, _ in a }), have = Dictionary(actual, uniquingKeysWith: { a, _ in a })
            for path in Set(want.keys).union(have.keys).sorted() where want[path] != have[path] {
                if let value = want[path] { lines.append("- batch \(index + 1): \(path): \(value)") }
                if let value = have[path] { lines.append("+ batch \(index + 1): \(path): \(value)") }
            }
        }
        return lines.count > 40 ? Array(lines.prefix(40)) + ["... \(lines.count - 40) more lines"] : lines
    }

    /// Non-empty lines parsed as JSON, for comparing output with what is expected.
    static func jsonLines(_ text: String) throws -> [NSObject] {
        try text.split(whereSeparator: \.isNewline).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map {
            guard let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? NSObject else {
                throw ValidationError("not JSON: \($0.prefix(80))")
            }
            return object
        }
    }
}
