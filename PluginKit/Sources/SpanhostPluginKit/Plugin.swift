@_exported import CSpanhostABI
#if canImport(Glibc)
import Glibc
#endif

/// What a plugin hook came to. `retryable` asks the host to retry (after `after`, if given);
/// `permanent` makes the host drop the batch and count it; `consumed` (processors) stops the
/// batch here: the processor has taken what it holds and emits it itself (`PluginHost.emit`).
public enum PluginResult: Sendable, Equatable {
    case ok
    case retryable(after: Duration? = nil, String)
    case permanent(String)
    case consumed
}

/// What a plugin declares about itself (the descriptor's SPANHOST_PLUGIN_* flags). Swift
/// images are never unloaded, so UNLOADABLE is not offered.
public struct PluginFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The host may call the instance's hooks from several threads at once.
    public static let concurrent = PluginFlags(rawValue: UInt32(SPANHOST_PLUGIN_CONCURRENT))
    /// The data hook never waits (no I/O, no sleeping): it may run on the host's I/O threads.
    public static let nonBlocking = PluginFlags(rawValue: UInt32(SPANHOST_PLUGIN_NONBLOCKING))
    /// (1.8) The processor never changes a batch: fan-out hands it the shared batch.
    public static let readOnly = PluginFlags(rawValue: UInt32(SPANHOST_PLUGIN_READONLY))
    /// (1.8) The processor raises one event per failing trace, with its trace id.
    public static let traceEvents = PluginFlags(rawValue: UInt32(SPANHOST_PLUGIN_TRACE_EVENTS))
}

/// A plugin type that can check a config without side effects (the descriptor's `validate`,
/// ABI 1.8): `spanhostd --check` then calls this instead of creating an instance. Read every
/// key you accept, as the initializer does. `host` has no instance: it compiles expressions,
/// but has no counters, emit or raise.
public protocol ConfigValidating {
    static func validate(_ config: PluginConfig, host: PluginHost) throws
}

/// One key of a plugin's config schema. The host checks settings against the schema before the
/// plugin's initializer runs: unknown keys, wrong types and missing required keys are refused
/// with a message naming the key. Use "*" for any list item or map key: `headers.*`.
public struct ConfigKey: Sendable {
    public enum ValueType: UInt32, Sendable {
        case string = 1, int, double, bool, duration, bytes, list, map, stringList, scalar
    }
    public var path: String
    public var type: ValueType
    public var required: Bool
    public var defaultValue: String?
    public var doc: String

    public init(_ path: String, _ type: ValueType, required: Bool = false, default defaultValue: String? = nil, _ doc: String) {
        self.path = path
        self.type = type
        self.required = required
        self.defaultValue = defaultValue
        self.doc = doc
    }
}

/// Thrown from a plugin's initializer to refuse its config; the message should name the key.
public struct PluginError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An exporter: receives read-only batches and delivers them somewhere.
/// Calls on one instance come from one thread at a time.
public protocol SpanExporterPlugin: AnyObject {
    init(config: PluginConfig, host: PluginHost) throws
    /// Return `.ok` only once the destination has accepted the batch.
    func export(_ batch: BatchView) -> PluginResult
    /// Push out anything buffered (before shutdown or reload).
    func flush() -> PluginResult
    /// Stop background work; called once, last.
    func shutdown()
}

/// A processor: changes a batch in place before exporters see it.
public protocol SpanProcessorPlugin: AnyObject {
    init(config: PluginConfig, host: PluginHost) throws
    func process(_ batch: MutableBatchView) -> PluginResult
    func flush() -> PluginResult
    func shutdown()
}

/// A notifier: tells people or systems about events (error spans, fired and resolved rules,
/// events raised by processors). Calls on one instance come from one thread at a time, never
/// from a pipeline's thread.
public protocol SpanNotifierPlugin: AnyObject {
    init(config: PluginConfig, host: PluginHost) throws
    /// Return `.retryable` to have the host retry with backoff.
    func notify(_ notification: NotificationView) -> PluginResult
    func flush() -> PluginResult
    func shutdown()
}

public extension SpanNotifierPlugin {
    func flush() -> PluginResult { .ok }
    func shutdown() {}
}

public extension SpanExporterPlugin {
    func flush() -> PluginResult { .ok }
    func shutdown() {}
}

public extension SpanProcessorPlugin {
    func flush() -> PluginResult { .ok }
    func shutdown() {}
}

/// The host's services for one instance: logging, counters, encoding, emitting held spans,
/// raising events, expressions.
public struct PluginHost: Sendable {
    private let held: HostHandle
    var api: UnsafePointer<spanhost_host_api> { held.api }
    var instance: OpaquePointer? { held.handle }

    init(api: UnsafePointer<spanhost_host_api>, instance: OpaquePointer?) {
        held = HostHandle(api: api, handle: instance)
    }

    /// The host has `member` (SPANHOST_HOST_HAS): it was added in a minor version at or
    /// before the host's.
    func has(_ member: PartialKeyPath<spanhost_host_api>) -> Bool {
        guard let offset = MemoryLayout<spanhost_host_api>.offset(of: member) else { return false }
        return Int(api.pointee.struct_size) >= offset + MemoryLayout<UnsafeRawPointer>.size
    }

    public enum LogLevel: UInt32 { case debug = 0, info, warn, error }

    public func log(_ level: LogLevel, _ message: String) {
        var message = message
        message.withUTF8 { api.pointee.log(instance, level.rawValue, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// Adds to a counter shown for this instance at /status. Labels are written into the name:
    /// `requests{status="500"}` (see counter_add in spanhost.h).
    public func count(_ name: String, _ delta: Int64 = 1) {
        api.pointee.counter_add(instance, name, delta)
    }

    /// Sets a gauge, a level that goes up and down; does nothing on a host older than ABI 1.2.
    public func gauge(_ name: String, _ value: Int64) {
        guard has(\.gauge_set) else { return }
        api.pointee.gauge_set(instance, name, value)
    }

    /// A counter declared once, for the data path: each `add` is one atomic add in the host
    /// (ABI 1.8), or a `count` by name on an older host.
    public struct Counter: Sendable {
        let host: PluginHost
        let name: String
        let id: UInt32
        public func add(_ delta: Int64 = 1) {
            if id != 0 { host.api.pointee.counter_add_id(host.instance, id, delta) } else { host.count(name, delta) }
        }
    }

    public func counter(_ name: String) -> Counter {
        Counter(host: self, name: name, id: has(\.counter_declare) ? api.pointee.counter_declare(instance, name) : 0)
    }

    /// A gauge declared once (see `counter`).
    public struct Gauge: Sendable {
        let host: PluginHost
        let name: String
        let id: UInt32
        public func set(_ value: Int64) {
            if id != 0 { host.api.pointee.gauge_set_id(host.instance, id, value) } else { host.gauge(name, value) }
        }
    }

    public func gauge(_ name: String) -> Gauge {
        Gauge(host: self, name: name, id: has(\.gauge_declare) ? api.pointee.gauge_declare(instance, name) : 0)
    }

    /// What became of an emitted batch (see emit in spanhost.h).
    public enum EmitResult: Sendable, Equatable {
        /// Delivered, queued, or dropped on purpose later on.
        case taken
        /// Not taken for now (a queue is full): keep it and emit it again later, in order.
        case retryLater
        /// Refused for good; the host counts its spans as lost.
        case rejected
    }

    /// Processors: hands `batch` to the rest of the pipeline, which runs on this thread before
    /// emit returns. May be called from any thread (timers included), never while holding a
    /// lock that `process` takes.
    public func emit(_ batch: OwnedBatch) -> EmitResult {
        switch api.pointee.emit(instance, batch.pointer) {
        case Int32(SPANHOST_OK): return .taken
        case Int32(SPANHOST_RETRYABLE): return .retryLater
        default: return .rejected
        }
    }

    /// Processors that hold spans: says the instance is done with trace `traceID` (16 bytes),
    /// after emitting what it keeps of it (ABI 1.4; see release_trace in spanhost.h).
    public func releaseTrace(_ traceID: [UInt8]) {
        guard traceID.count == 16, has(\.release_trace) else { return }
        api.pointee.release_trace(instance, traceID)
    }

    /// Raises an event to the notifiers of the instance's pipelines. False when the host did
    /// not take it (the instance belongs to no pipeline yet).
    @discardableResult
    public func raise(_ event: RaisedEvent) -> Bool {
        // Every string is copied into one buffer for the call; the host copies what it keeps.
        var texts: [[CChar]] = [event.kind, event.source, event.key, event.summary].map { Array($0.utf8CString) }
        for (key, value) in event.attributes { texts.append(Array(key.utf8CString)); texts.append(Array(value.utf8CString)) }
        return withStrs(texts) { views in
            var attributes = (0..<event.attributes.count).map { index -> spanhost_kv in
                var value = spanhost_value()
                value.type = UInt32(SPANHOST_VALUE_STRING)
                value.as.string_value = views[5 + 2 * index]
                return spanhost_kv(key: views[4 + 2 * index], value: value)
            }
            return attributes.withUnsafeMutableBufferPointer { items in
                var n = spanhost_notification()
                n.struct_size = UInt32(MemoryLayout<spanhost_notification>.size)
                n.severity = event.severity.rawValue
                (n.kind, n.source, n.key, n.summary) = (views[0], views[1], views[2], views[3])
                n.attributes = spanhost_kv_list(items: items.baseAddress, count: items.count)
                if let id = event.traceID, id.count == 16 { withUnsafeMutableBytes(of: &n.trace_id) { $0.copyBytes(from: id) } }
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                n.time_unix_nano = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
                n.count = max(1, event.count)
                return api.pointee.raise(instance, &n) == Int32(SPANHOST_OK)
            }
        }
    }

    /// Compiles an expression (OTTL; ABI 1.3) in `context`; throws the host's reason.
    public func compile(_ text: String, _ kind: Expression.Kind, in context: Expression.Context) throws -> Expression {
        guard has(\.expr_compile) else { throw PluginError("expressions need a host with ABI 1.3") }
        var message = [CChar](repeating: 0, count: 512)
        var compiled: OpaquePointer?
        let code = message.withUnsafeMutableBufferPointer { buffer in
            var status = spanhost_status(struct_size: UInt32(MemoryLayout<spanhost_status>.size), retry_after_ms: 0,
                                         message: buffer.baseAddress, message_cap: buffer.count)
            return api.pointee.expr_compile(text, text.utf8.count, kind.rawValue, context.rawValue, &compiled, &status)
        }
        guard code == Int32(SPANHOST_OK), let compiled else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw PluginError("\(text): \(reason)")
        }
        return Expression(api: api, pointer: compiled)
    }

    public enum Encoding: UInt32 { case otlpProtobuf = 0, otlpJSON = 1, zipkinJSON = 2 }

    /// The batch as an OTLP ExportTraceServiceRequest, or as Zipkin v2 JSON (ABI 1.6).
    public func encode(_ batch: BatchView, as encoding: Encoding) -> [UInt8]? {
        var buffer = spanhost_buffer()
        guard api.pointee.encode_batch(batch.pointer, encoding.rawValue, &buffer) == 0 else { return nil }
        defer { api.pointee.buffer_free(&buffer) }
        return Array(UnsafeBufferPointer(start: buffer.data, count: buffer.len))
    }

    /// The notification as the host's JSON (see encode_notification in spanhost.h); nil on a
    /// host older than ABI 1.1.
    public func json(_ notification: NotificationView) -> [UInt8]? {
        guard api.pointee.struct_size >= MemoryLayout<spanhost_host_api>.offset(of: \.encode_notification)! + MemoryLayout<UnsafeRawPointer>.size
        else { return nil }
        var buffer = spanhost_buffer()
        guard api.pointee.encode_notification(notification.pointer, &buffer) == 0 else { return nil }
        defer { api.pointee.buffer_free(&buffer) }
        return Array(UnsafeBufferPointer(start: buffer.data, count: buffer.len))
    }

    public func gzip(_ bytes: [UInt8]) -> [UInt8]? {
        var buffer = spanhost_buffer()
        guard api.pointee.gzip(bytes, bytes.count, &buffer) == 0 else { return nil }
        defer { api.pointee.buffer_free(&buffer) }
        return Array(UnsafeBufferPointer(start: buffer.data, count: buffer.len))
    }
}

/// Typed reads of the instance's config by dotted path ("headers", "retry.max", "items.0").
/// A value of the wrong type throws a `PluginError` naming the path.
public struct PluginConfig: Sendable {
    private let held: HostHandle
    var api: UnsafePointer<spanhost_host_api> { held.api }
    var handle: OpaquePointer? { held.handle }

    init(api: UnsafePointer<spanhost_host_api>, handle: OpaquePointer?) {
        held = HostHandle(api: api, handle: handle)
    }

    private func check(_ code: UInt32, _ path: String, _ type: String) throws -> Bool {
        switch Int32(bitPattern: code) {
        case SPANHOST_CONFIG_FOUND: return true
        case SPANHOST_CONFIG_MISSING: return false
        default: throw PluginError("\(path): must be \(type)")
        }
    }

    public func string(_ path: String) throws -> String? {
        var out = spanhost_str()
        guard try check(api.pointee.config_string(handle, path, &out), path, "a string") else { return nil }
        return out.swiftString
    }

    public func int(_ path: String) throws -> Int64? {
        var out: Int64 = 0
        return try check(api.pointee.config_int(handle, path, &out), path, "an integer") ? out : nil
    }

    public func double(_ path: String) throws -> Double? {
        var out = 0.0
        return try check(api.pointee.config_double(handle, path, &out), path, "a number") ? out : nil
    }

    public func bool(_ path: String) throws -> Bool? {
        var out: Int32 = 0
        return try check(api.pointee.config_bool(handle, path, &out), path, "true or false") ? out != 0 : nil
    }

    /// A duration in the host's grammar (500ms, 30s, 1m30s; a bare number is seconds), in
    /// seconds; nil if absent. Must be greater than zero.
    public func seconds(_ path: String) throws -> Double? {
        var ns: Int64 = 0
        guard try check(api.pointee.config_duration(handle, path, &ns), path, "a duration like 500ms or 30s") else { return nil }
        guard ns > 0 else { throw PluginError("\(path): must be longer than zero") }
        return Double(ns) / 1e9
    }

    /// A size in bytes (1048576, 512KiB, 64MiB); nil if absent.
    public func bytes(_ path: String) throws -> Int64? {
        var out: Int64 = 0
        return try check(api.pointee.config_bytes(handle, path, &out), path, "a size like 512KiB or 64MiB") ? out : nil
    }

    /// A list of strings (one string counts as a list of one); nil if absent.
    public func strings(_ path: String) throws -> [String]? {
        var items: UnsafePointer<spanhost_str>?
        var count = 0
        guard try check(api.pointee.config_string_list(handle, path, &items, &count), path, "a list of strings") else { return nil }
        return (0..<count).map { items![$0].swiftString }
    }

    /// Keys of the map at `path`, in file order (empty if absent).
    public func keys(_ path: String) throws -> [String] {
        var count = 0
        guard try check(api.pointee.config_count(handle, path, &count), path, "a map") else { return [] }
        return try (0..<count).map { index in
            var out = spanhost_str()
            guard try check(api.pointee.config_key(handle, path, index, &out), path, "a map") else {
                throw PluginError("\(path): must be a map")
            }
            return out.swiftString
        }
    }
}

/// An event a processor raises (see spanhost_notification).
public struct RaisedEvent: Sendable {
    public enum Severity: UInt32, Sendable { case info = 0, warning, error, critical }
    public var severity: Severity
    public var kind, source, key, summary: String
    public var attributes: [(String, String)]
    /// 16 bytes when the event is about one trace.
    public var traceID: [UInt8]?
    public var count: UInt64
    public init(severity: Severity = .error, kind: String, source: String, key: String = "", summary: String,
                attributes: [(String, String)] = [], traceID: [UInt8]? = nil, count: UInt64 = 1) {
        (self.severity, self.kind, self.source, self.key, self.summary) = (severity, kind, source, key, summary)
        (self.attributes, self.traceID, self.count) = (attributes, traceID, count)
    }
}

/// Views of NUL-terminated texts for one call (the views are not NUL-terminated themselves).
func withStrs<R>(_ texts: [[CChar]], _ body: ([spanhost_str]) -> R) -> R {
    let joined = texts.flatMap { $0 }
    return joined.withUnsafeBufferPointer { buffer in
        var views: [spanhost_str] = []
        var offset = 0
        for text in texts {
            views.append(spanhost_str(ptr: buffer.baseAddress.map { $0 + offset }, len: text.count - 1))
            offset += text.count
        }
        return body(views)
    }
}

extension spanhost_str {
    /// A Swift copy of the view.
    public var swiftString: String {
        guard let ptr, len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: ptr, count: len), as: UTF8.self)
    }
}

/// The host's function table and one opaque handle it gave (an instance, a config, a compiled
/// expression): what every host service is called with.
struct HostHandle: @unchecked Sendable {
    // Unchecked because both are C pointers. The table is the host's, immutable and valid for
    // the life of the process; the handle is opaque (never dereferenced here, only passed back),
    // and the host's functions that take it may be called from any thread (see spanhost.h).
    let api: UnsafePointer<spanhost_host_api>
    let handle: OpaquePointer?
}
