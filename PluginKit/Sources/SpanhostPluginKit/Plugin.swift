@_exported import CSpanhostABI

/// What a plugin hook came to. `retryable` asks the host to retry (after `after`, if given);
/// `permanent` makes the host drop the batch and count it.
public enum PluginResult: Sendable, Equatable {
    case ok
    case retryable(after: Duration? = nil, String)
    case permanent(String)
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

/// The host's services for one instance: logging, counters, encoding.
public struct PluginHost: @unchecked Sendable {
    let api: UnsafePointer<spanhost_host_api>
    let instance: OpaquePointer?

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
        guard api.pointee.struct_size >= MemoryLayout<spanhost_host_api>.offset(of: \.gauge_set)! + MemoryLayout<UnsafeRawPointer>.size
        else { return }
        api.pointee.gauge_set(instance, name, value)
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
public struct PluginConfig: @unchecked Sendable {
    let api: UnsafePointer<spanhost_host_api>
    let handle: OpaquePointer?

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

extension spanhost_str {
    /// A Swift copy of the view.
    public var swiftString: String {
        guard let ptr, len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: ptr, count: len), as: UTF8.self)
    }
}
