import CSpanhost
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import SpanhostSync

/// `isolation: process`: an exporter whose plugin runs in a child process of its own
/// (`spanhostd --plugin-host`), so a crash in it restarts that child only. Batches cross a
/// socketpair in the OTLP protobuf encoding; results and the child's counters come back.
///
/// Frames are a 4-byte little-endian length and that many bytes. The parent sends a batch (or
/// an empty frame: stop); the child answers each with its result. The first frame from the
/// child says whether create and start succeeded.
public final class IsolatedPlugin: Sendable {
    private let library: PluginLibrary
    private let component: ComponentID
    private let settings: ConfigValue
    private let logger: Logger
    /// Crashes during one batch after which it is given up on (a poison batch).
    static let poisonAfterCrashes = 2
    /// The child process, and what it was doing when children died. One child answers one
    /// item at a time, so its lock is held for the whole exchange.
    private struct Link {
        var child: (pid: pid_t, fd: Int32)?
        /// The item (by address) the last children died on, and how many times.
        var crashesOf: (item: UInt, count: Int)?
        /// The last counter snapshot of the current child, to add only what is new.
        var lastCounters: [String: Int64] = [:]
    }
    private let link = Guarded(Link())
    let counters: Counters
    let gauges: Counters

    static let childFlag = "--plugin-host"
    static let pluginVariable = "SPANHOST_ISOLATED_PLUGIN"

    /// Starts the child and creates the instance there; throws its create error.
    init(library: PluginLibrary, component: ComponentID, settings: ConfigValue, counters: Counters, gauges: Counters, logger: Logger) throws {
        self.library = library
        self.component = component
        self.settings = settings
        self.counters = counters
        self.gauges = gauges
        self.logger = logger
        try link.withLock { (link: inout Link) throws in try spawn(&link) }
    }

    deinit { stop() }


    private func spawn(_ link: inout Link) throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw IsolationError.start("socketpair: \(String(cString: strerror(errno)))")
        }
        let job = Job(sourcePath: library.sourcePath, loadedPath: library.loadedPath, sha256: library.sha256,
                      component: component.description, settings: settings)
        let pid = ChildProcess.spawnSelf(arguments: ["spanhostd", Self.childFlag], environment: [Self.pluginVariable: job.encoded],
                                         descriptors: [fds[1]])
        close(fds[1])
        guard pid > 0 else {
            close(fds[0])
            throw IsolationError.start("cannot start the plugin process: \(String(cString: strerror(errno)))")
        }
        link.child = (pid, fds[0])
        link.lastCounters = [:]
        guard let ready = Frame.read(fds[0]) else { throw IsolationError.start(reap(&link, pid: pid, fd: fds[0])) }
        if !ready.isEmpty {
            _ = reap(&link, pid: pid, fd: fds[0])
            throw IsolationError.create(String(decoding: ready, as: UTF8.self))
        }
    }

    /// Exports in the child. A child that dies answers RETRYABLE and is started again; a batch
    /// that was being exported during `poisonAfterCrashes` deaths answers PERMANENT.
    func export(_ batch: SpanBatch, status: UnsafeMutablePointer<spanhost_status>) -> Int32 {
        guard let bytes = batch.encode(.protobuf) else { return fail(status, Int32(SPANHOST_RETRYABLE), "out of memory") }
        return exchange([Self.batchFrame] + bytes, item: UnsafeRawPointer(batch.pointer), status: status)
    }

    /// Notifies in the child, with the same crash handling as `export`.
    func notify(_ notification: UnsafePointer<spanhost_notification>, status: UnsafeMutablePointer<spanhost_status>) -> Int32 {
        guard let bytes = try? JSONEncoder().encode(WireNotification(notification)) else {
            return fail(status, Int32(SPANHOST_PERMANENT), "the event could not be encoded")
        }
        return exchange([Self.notificationFrame] + Array(bytes), item: UnsafeRawPointer(notification), status: status)
    }

    static let batchFrame = UInt8(ascii: "B")
    static let notificationFrame = UInt8(ascii: "N")

    /// Sends one item and reads the child's answer; `item` identifies it across retries.
    private func exchange(_ frame: [UInt8], item: UnsafeRawPointer, status: UnsafeMutablePointer<spanhost_status>) -> Int32 {
        // One child answers one item at a time, whatever the plugin declares.
        let item = UInt(bitPattern: item)
        let outcome: (code: Int32, message: String, retryAfterMs: UInt32) = link.withLock { link in
            if link.child == nil {
                do { try spawn(&link) } catch { return (Int32(SPANHOST_RETRYABLE), "isolated plugin cannot start: \(error)", 0) }
            }
            guard let (pid, fd) = link.child else { return (Int32(SPANHOST_RETRYABLE), "", 0) }
            guard Frame.write(fd, frame), let answer = Frame.read(fd), let result = Result(answer) else {
                let death = reap(&link, pid: pid, fd: fd)
                counters.add("isolated_crashes", 1)
                logger.error("isolated plugin process died; starting another", metadata: ["plugin": "\(library.name)", "how": "\(death)"])
                let count = (link.crashesOf?.item == item ? link.crashesOf!.count : 0) + 1
                link.crashesOf = (item, count)
                if count >= Self.poisonAfterCrashes {
                    link.crashesOf = nil
                    return (Int32(SPANHOST_PERMANENT), "crashed plugin \(library.name) \(count) times (\(death))", 0)
                }
                return (Int32(SPANHOST_RETRYABLE), "isolated plugin \(library.name) \(death); retrying in a new process", 0)
            }
            for (name, value) in result.counters where value != link.lastCounters[name] ?? 0 {
                counters.add(name, value - (link.lastCounters[name] ?? 0))
            }
            link.lastCounters = result.counters
            for (name, value) in result.gauges { gauges.set(name, value) }
            return (result.code, result.message, UInt32(clamping: result.retryAfterMs))
        }
        status.pointee.retry_after_ms = outcome.retryAfterMs
        return fail(status, outcome.code, outcome.message)
    }

    /// Ends the child: an empty frame asks it to destroy the instance and exit.
    func stop() {
        link.withLock { link in
            guard let (pid, fd) = link.child else { return }
            Self.end(pid: pid, fd: fd)
            link.child = nil
        }
    }

    /// Asks the child to exit, and kills it when it has not within 2 s.
    private static func end(pid: pid_t, fd: Int32) {
        _ = Frame.write(fd, [])
        var status: Int32 = 0
        for _ in 0..<100 where waitpid(pid, &status, WNOHANG) == 0 {
            usleep(20_000)
        }
        if waitpid(pid, &status, WNOHANG) == 0 {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        close(fd)
    }

    private func fail(_ status: UnsafeMutablePointer<spanhost_status>, _ code: Int32, _ message: String) -> Int32 {
        let cap = status.pointee.message_cap
        if cap > 0 {
            let bytes = Array(message.utf8.prefix(cap - 1))
            bytes.withUnsafeBufferPointer { UnsafeMutableRawPointer(status.pointee.message).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            status.pointee.message[bytes.count] = 0
        }
        return code
    }

    /// Waits for a child that stopped answering; says how it ended.
    private func reap(_ link: inout Link, pid: pid_t, fd: Int32) -> String {
        close(fd)
        link.child = nil
        kill(pid, SIGKILL)  // if it only closed the socket, it is of no more use
        return ChildProcess.wait(pid).description
    }

    // MARK: - The child

    /// What the child is to run, passed in its environment.
    struct Job: Codable {
        var sourcePath, loadedPath, sha256, component: String
        var settings: ConfigValue

        var encoded: String { String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self) }
    }

    /// `spanhostd --plugin-host`: creates the instance, then exports each batch it is sent
    /// over descriptor 3 until it is told to stop or the parent goes away.
    public static func serve(logger: Logger) -> Int32 {
        sh_crash_records_install(STDERR_FILENO)
        sh_die_with_parent()
        let fd: Int32 = 3
        guard let text = ProcessInfo.processInfo.environment[pluginVariable],
              let job = try? JSONDecoder().decode(Job.self, from: Data(text.utf8)) else {
            _ = Frame.write(fd, Array("the plugin host was started without its job".utf8))
            return 2
        }
        let instance: PluginInstance
        do {
            let library = try PluginLibrary(sourcePath: job.sourcePath, loadedPath: job.loadedPath, sha256: job.sha256)
            let id = try ComponentID(parsing: job.component, path: "component")
            instance = try PluginInstance(id: id, library: library, settings: job.settings)
        } catch {
            _ = Frame.write(fd, Array("\(error)".utf8))
            return 2
        }
        guard Frame.write(fd, []) else { return 2 }
        while let frame = Frame.read(fd), let kind = frame.first {
            let outcome: CallResult
            let payload = Array(frame.dropFirst())
            if kind == notificationFrame {
                if let wire = try? JSONDecoder().decode(WireNotification.self, from: Data(payload)), let event = wire.event() {
                    outcome = instance.notify(event.pointer)
                } else {
                    outcome = .permanent(message: "the event could not be decoded in the plugin process")
                }
            } else if let batch = try? SpanBatch.decode(payload, encoding: .protobuf, limit: Int.max) {
                outcome = instance.export(batch)
            } else {
                outcome = .permanent(message: "the batch could not be decoded in the plugin process")
            }
            var result: Result
            switch outcome {
            case .ok, .consumed: result = Result(code: Int32(SPANHOST_OK))
            case .retryable(let after, let message):
                let ms = after.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 } ?? 0
                result = Result(code: Int32(SPANHOST_RETRYABLE), message: message, retryAfterMs: Int32(clamping: ms))
            case .permanent(let message): result = Result(code: Int32(SPANHOST_PERMANENT), message: message)
            case .unavailable(let message): result = Result(code: Int32(SPANHOST_RETRYABLE), message: message)
            }
            result.counters = instance.counters.snapshot
            result.gauges = instance.gauges.snapshot
            guard Frame.write(fd, result.encoded) else { break }
        }
        instance.destroy()
        return 0
    }

    /// One export's outcome, as the child sends it.
    struct Result: Codable {
        var code: Int32
        var message = ""
        var retryAfterMs: Int32 = 0
        var counters: [String: Int64] = [:]
        var gauges: [String: Int64] = [:]

        init(code: Int32, message: String = "", retryAfterMs: Int32 = 0) {
            self.code = code
            self.message = message
            self.retryAfterMs = retryAfterMs
        }

        init?(_ bytes: [UInt8]) {
            guard let decoded = try? JSONDecoder().decode(Result.self, from: Data(bytes)) else { return nil }
            self = decoded
        }

        var encoded: [UInt8] { Array((try? JSONEncoder().encode(self)) ?? Data()) }
    }
}

enum IsolationError: Error, CustomStringConvertible {
    case start(String)
    case create(String)

    var description: String {
        switch self {
        case .start(let why): return "the plugin process did not start: \(why)"
        case .create(let why): return why
        }
    }
}

/// Length-prefixed frames on a stream socket.
enum Frame {
    static func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var length = UInt32(bytes.count).littleEndian
        let head = withUnsafeBytes(of: &length) { Array($0) }
        return ChildProcess.send(fd, head) && ChildProcess.send(fd, bytes)
    }

    /// Nil when the other side is gone.
    static func read(_ fd: Int32) -> [UInt8]? {
        guard let head = ChildProcess.receive(fd, 4) else { return nil }
        let length = Int(UInt32(head[0]) | UInt32(head[1]) << 8 | UInt32(head[2]) << 16 | UInt32(head[3]) << 24)
        return length == 0 ? [] : ChildProcess.receive(fd, length)
    }
}

/// A notification as it crosses to an isolated notifier: the struct's fields, attributes as
/// strings, integers, doubles or booleans (arrays, maps and bytes as their JSON text).
struct WireNotification: Codable {
    enum Value: Codable {
        case string(String), int(Int64), double(Double), bool(Bool)
    }
    var severity: UInt32
    var kind, source, key, summary: String
    var attributes: [String]
    var values: [Value]
    var traceID: [UInt8]
    var timeUnixNano: UInt64
    var count: UInt64

    init(_ n: UnsafePointer<spanhost_notification>) {
        let p = n.pointee
        severity = p.severity
        kind = p.kind.string
        source = p.source.string
        key = p.key.string
        summary = p.summary.string
        traceID = withUnsafeBytes(of: p.trace_id) { Array($0) }
        timeUnixNano = p.time_unix_nano
        count = p.count
        attributes = []
        values = []
        for i in 0..<p.attributes.count {
            let kv = p.attributes.items[i]
            attributes.append(kv.key.string)
            switch Int32(kv.value.type) {
            case SPANHOST_VALUE_STRING: values.append(.string(kv.value.as.string_value.string))
            case SPANHOST_VALUE_INT: values.append(.int(kv.value.as.int_value))
            case SPANHOST_VALUE_DOUBLE: values.append(.double(kv.value.as.double_value))
            case SPANHOST_VALUE_BOOL: values.append(.bool(kv.value.as.bool_value != 0))
            default:
                var value = kv.value
                var buffer = spanhost_buffer()
                if sh_encode_value_json(&value, &buffer) == 0, let data = buffer.data {
                    values.append(.string(String(decoding: UnsafeRawBufferPointer(start: data, count: buffer.len), as: UTF8.self)))
                    sh_buffer_free(&buffer)
                } else {
                    values.append(.string(""))
                }
            }
        }
    }

    /// The notification rebuilt in an arena of the child's.
    func event() -> NotificationEvent? {
        let attrs: [(String, NotificationEvent.Value)] = zip(attributes, values).map { key, value in
            switch value {
            case .string(let s): return (key, .string(s))
            case .int(let i): return (key, .int(i))
            case .double(let d): return (key, .double(d))
            case .bool(let b): return (key, .int(b ? 1 : 0))
            }
        }
        let zero = traceID.allSatisfy { $0 == 0 }
        return NotificationEvent(kind: kind, severity: severity, source: source, key: key, summary: summary, attributes: attrs,
                                 traceID: zero ? nil : traceID, count: count,
                                 time: Date(timeIntervalSince1970: Double(timeUnixNano) / 1e9))
    }
}
