#if canImport(Glibc)
import Glibc
#endif

/// Turns a Swift type into the C descriptor the host loads. One plugin per image:
///
///     @_cdecl("spanhost_plugin_entry")
///     public func entry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
///         SpanhostPlugin.exporter(MyExporter.self, name: "my_exporter", version: "1.0.0", host: host)
///     }
///
/// Only C types cross the boundary: the host sees function pointers and opaque state.
public enum SpanhostPlugin {
    public static func exporter<T: SpanExporterPlugin>(
        _ type: T.Type, name: String, version: String, description: String = "", schema: [ConfigKey]? = nil,
        flags: PluginFlags = [], functions: [PluginFunction] = [], host: UnsafePointer<spanhost_host_api>?
    ) -> UnsafePointer<spanhost_plugin>? {
        register(host: host, kind: SPANHOST_KIND_EXPORTER, name: name, version: version, description: description, schema: schema,
                 flags: flags, functions: functions, validator: (T.self as? ConfigValidating.Type)?.validate) { config, host in
            let plugin = try T(config: config, host: host)
            return Instance(export: { plugin.export($0) }, process: nil, flush: plugin.flush, shutdown: plugin.shutdown)
        }
    }

    public static func processor<T: SpanProcessorPlugin>(
        _ type: T.Type, name: String, version: String, description: String = "", schema: [ConfigKey]? = nil,
        flags: PluginFlags = [], functions: [PluginFunction] = [], host: UnsafePointer<spanhost_host_api>?
    ) -> UnsafePointer<spanhost_plugin>? {
        register(host: host, kind: SPANHOST_KIND_PROCESSOR, name: name, version: version, description: description, schema: schema,
                 flags: flags, functions: functions, validator: (T.self as? ConfigValidating.Type)?.validate) { config, host in
            let plugin = try T(config: config, host: host)
            return Instance(export: nil, process: { plugin.process($0) }, flush: plugin.flush, shutdown: plugin.shutdown)
        }
    }

    public static func notifier<T: SpanNotifierPlugin>(
        _ type: T.Type, name: String, version: String, description: String = "", schema: [ConfigKey]? = nil,
        flags: PluginFlags = [], functions: [PluginFunction] = [], host: UnsafePointer<spanhost_host_api>?
    ) -> UnsafePointer<spanhost_plugin>? {
        register(host: host, kind: SPANHOST_KIND_NOTIFIER, name: name, version: version, description: description, schema: schema,
                 flags: flags, functions: functions, validator: (T.self as? ConfigValidating.Type)?.validate) { config, host in
            let plugin = try T(config: config, host: host)
            return Instance(export: nil, process: nil, notify: { plugin.notify($0) }, flush: plugin.flush, shutdown: plugin.shutdown)
        }
    }

    /// A library that only adds functions to expressions (SPANHOST_KIND_FUNCTIONS): loaded when
    /// `plugins.functions` names it.
    public static func functions(
        _ functions: [PluginFunction], name: String, version: String, description: String = "",
        host: UnsafePointer<spanhost_host_api>?
    ) -> UnsafePointer<spanhost_plugin>? {
        guard let host, Int32(host.pointee.abi_major) == SPANHOST_ABI_MAJOR else { return nil }
        if let descriptor = registered.descriptor { return UnsafePointer(descriptor) }
        registered.hostAPI = host
        var d = describe(kind: SPANHOST_KIND_FUNCTIONS, name: name, version: version, description: description, flags: [])
        (d.functions, d.functions_count) = (PluginFunction.table(functions), functions.count)
        return store(d)
    }

    /// The type-erased instance behind a `void *state`.
    final class Instance {
        let export: ((BatchView) -> PluginResult)?
        let process: ((MutableBatchView) -> PluginResult)?
        let notify: ((NotificationView) -> PluginResult)?
        let flush: () -> PluginResult
        let shutdown: () -> Void
        init(export: ((BatchView) -> PluginResult)?, process: ((MutableBatchView) -> PluginResult)?,
             notify: ((NotificationView) -> PluginResult)? = nil,
             flush: @escaping () -> PluginResult, shutdown: @escaping () -> Void) {
            self.export = export
            self.process = process
            self.notify = notify
            self.flush = flush
            self.shutdown = shutdown
        }
    }

    typealias Factory = (PluginConfig, PluginHost) throws -> Instance

    /// What the entry function registered; an image holds exactly one plugin.
    struct Registered {
        var hostAPI: UnsafePointer<spanhost_host_api>?
        var factory: Factory?
        var validator: ((PluginConfig, PluginHost) throws -> Void)?
        var descriptor: UnsafeMutablePointer<spanhost_plugin>?
    }
    // Unsafe by the compiler's measure, safe by the ABI's order: the host calls the entry
    // function once, before any other function of the image, and waits for it; this is written
    // there and only read afterwards.
    nonisolated(unsafe) static var registered = Registered()
    static var hostAPI: UnsafePointer<spanhost_host_api>? { registered.hostAPI }

    static func register(host: UnsafePointer<spanhost_host_api>?, kind: Int32, name: String, version: String,
                         description: String, schema: [ConfigKey]?, flags: PluginFlags, functions: [PluginFunction],
                         validator: ((PluginConfig, PluginHost) throws -> Void)?,
                         factory: @escaping Factory) -> UnsafePointer<spanhost_plugin>? {
        guard let host, Int32(host.pointee.abi_major) == SPANHOST_ABI_MAJOR else { return nil }
        if let descriptor = registered.descriptor { return UnsafePointer(descriptor) }
        registered.hostAPI = host
        registered.factory = factory
        registered.validator = validator
        var d = describe(kind: kind, name: name, version: version, description: description, flags: flags)
        if !functions.isEmpty { (d.functions, d.functions_count) = (PluginFunction.table(functions), functions.count) }
        if let schema {
            // Lives as long as the image, like the rest of the descriptor.
            let keys = UnsafeMutablePointer<spanhost_config_key>.allocate(capacity: max(schema.count, 1))
            for (index, key) in schema.enumerated() {
                (keys + index).initialize(to: spanhost_config_key(
                    path: UnsafePointer(strdup(key.path)), type: key.type.rawValue, required: key.required ? 1 : 0,
                    default_value: key.defaultValue.map { UnsafePointer(strdup($0)) }, doc: UnsafePointer(strdup(key.doc))))
            }
            d.config_schema = UnsafePointer(keys)
            d.config_schema_count = schema.count
        }
        d.create = { config, instance, out, status in
            guard let api = SpanhostPlugin.hostAPI, let factory = SpanhostPlugin.registered.factory else { return Int32(SPANHOST_PERMANENT) }
            do {
                let made = try factory(PluginConfig(api: api, handle: config), PluginHost(api: api, instance: instance))
                out?.pointee = Unmanaged.passRetained(made).toOpaque()
                return Int32(SPANHOST_OK)
            } catch {
                SpanhostPlugin.write("\(error)", to: status)
                return Int32(SPANHOST_PERMANENT)
            }
        }
        if validator != nil {
            d.validate = { config, status in
                guard let api = SpanhostPlugin.hostAPI, let validator = SpanhostPlugin.registered.validator else { return Int32(SPANHOST_OK) }
                do {
                    try validator(PluginConfig(api: api, handle: config), PluginHost(api: api, instance: nil))
                    return Int32(SPANHOST_OK)
                } catch {
                    SpanhostPlugin.write("\(error)", to: status)
                    return Int32(SPANHOST_PERMANENT)
                }
            }
        }
        if kind == SPANHOST_KIND_EXPORTER {
            d.export_batch = { state, batch, status in
                guard let state, let batch, let export = SpanhostPlugin.instance(state).export else { return Int32(SPANHOST_PERMANENT) }
                return SpanhostPlugin.report(export(BatchView(pointer: batch)), to: status)
            }
        } else if kind == SPANHOST_KIND_NOTIFIER {
            d.notify = { state, notification, status in
                guard let state, let notification, let notify = SpanhostPlugin.instance(state).notify else { return Int32(SPANHOST_PERMANENT) }
                return SpanhostPlugin.report(notify(NotificationView(pointer: notification)), to: status)
            }
        } else {
            d.process = { state, batch, status in
                guard let state, let batch, let process = SpanhostPlugin.instance(state).process else { return Int32(SPANHOST_PERMANENT) }
                return SpanhostPlugin.report(process(MutableBatchView(pointer: batch)), to: status)
            }
        }
        d.flush = { state, status in
            guard let state else { return Int32(SPANHOST_OK) }
            return SpanhostPlugin.report(SpanhostPlugin.instance(state).flush(), to: status)
        }
        d.destroy = { state in
            guard let state else { return }
            let instance = Unmanaged<Instance>.fromOpaque(state)
            instance.takeUnretainedValue().shutdown()
            instance.release()
        }
        return store(d)
    }

    /// A descriptor's identity; every string lives as long as the image.
    private static func describe(kind: Int32, name: String, version: String, description: String, flags: PluginFlags) -> spanhost_plugin {
        var d = spanhost_plugin()
        d.struct_size = UInt32(MemoryLayout<spanhost_plugin>.size)
        d.abi_major = UInt16(SPANHOST_ABI_MAJOR)
        d.abi_minor = UInt16(SPANHOST_ABI_MINOR)
        d.kind = UInt32(kind)
        d.flags = flags.rawValue  // never UNLOADABLE: Swift images must stay mapped
        d.name = UnsafePointer(strdup(name))
        d.version = UnsafePointer(strdup(version))
        d.description = UnsafePointer(strdup(description))
        return d
    }

    private static func store(_ d: spanhost_plugin) -> UnsafePointer<spanhost_plugin> {
        let stored = UnsafeMutablePointer<spanhost_plugin>.allocate(capacity: 1)
        stored.initialize(to: d)
        registered.descriptor = stored
        return UnsafePointer(stored)
    }

    static func instance(_ state: UnsafeMutableRawPointer) -> Instance {
        Unmanaged<Instance>.fromOpaque(state).takeUnretainedValue()
    }

    static func report(_ result: PluginResult, to status: UnsafeMutablePointer<spanhost_status>?) -> Int32 {
        switch result {
        case .ok: return Int32(SPANHOST_OK)
        case .consumed: return Int32(SPANHOST_CONSUMED)
        case .retryable(let after, let message):
            if let after, let status {
                status.pointee.retry_after_ms = UInt32(clamping: after.components.seconds * 1000 + after.components.attoseconds / 1_000_000_000_000_000)
            }
            write(message, to: status)
            return Int32(SPANHOST_RETRYABLE)
        case .permanent(let message):
            write(message, to: status)
            return Int32(SPANHOST_PERMANENT)
        }
    }

    static func write(_ message: String, to status: UnsafeMutablePointer<spanhost_status>?) {
        guard let status, let buffer = status.pointee.message, status.pointee.message_cap > 0 else { return }
        let bytes = Array(message.utf8.prefix(status.pointee.message_cap - 1))
        for (i, byte) in bytes.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
    }
}

/// A function expressions may call (ABI 1.3), written as a C-convention Swift function that takes
/// its arguments by value, then a pointer to its result and the status, and returns a result
/// code (see spanhost_function in spanhost.h):
///
///     let wordCount: @convention(c) (spanhost_str, UnsafeMutablePointer<Int64>?,
///                                    UnsafeMutablePointer<spanhost_status>?) -> Int32 = { text, result, _ in ... }
///     PluginFunction("word_count", [.string], returns: .int, wordCount)
///
/// It may run on several threads at once, the host's I/O threads included: it must not block.
public struct PluginFunction {
    public enum ArgType: UInt32 { case string = 1, int, double, bool, bytes }
    public var name: String
    public var args: [ArgType]
    public var result: ArgType
    public var description: String
    let pointer: UnsafeRawPointer

    /// `function` must be a `@convention(c)` function whose type matches `args` and `result`.
    public init<F>(_ name: String, _ args: [ArgType], returns result: ArgType, description: String = "", _ function: F) {
        precondition(MemoryLayout<F>.size == MemoryLayout<UnsafeRawPointer>.size, "\(name): pass a @convention(c) function")
        (self.name, self.args, self.result, self.description) = (name, args, result, description)
        pointer = unsafeBitCast(function, to: UnsafeRawPointer.self)
    }

    /// The C array the descriptor points at; lives as long as the image.
    static func table(_ functions: [PluginFunction]) -> UnsafePointer<spanhost_function> {
        let table = UnsafeMutablePointer<spanhost_function>.allocate(capacity: max(functions.count, 1))
        for (index, f) in functions.enumerated() {
            let args = UnsafeMutablePointer<UInt32>.allocate(capacity: max(f.args.count, 1))
            for (i, arg) in f.args.enumerated() { args[i] = arg.rawValue }
            (table + index).initialize(to: spanhost_function(
                struct_size: UInt32(MemoryLayout<spanhost_function>.size), name: UnsafePointer(strdup(f.name)), result: f.result.rawValue,
                arg_count: UInt32(f.args.count), args: UnsafePointer(args),
                fn: unsafeBitCast(f.pointer, to: (@convention(c) () -> Void).self), description: UnsafePointer(strdup(f.description))))
        }
        return UnsafePointer(table)
    }
}
