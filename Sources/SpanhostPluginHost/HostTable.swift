import CSpanhost
import SpanhostConfig
import SpanhostModel

/// The `spanhost_host_api` table handed to every plugin's entry function. One table for the
/// life of the process; each function finds the Swift object behind an opaque handle.
enum HostTable {
    // Written once before any plugin can see it and never again, so sharing it is safe.
    nonisolated(unsafe) static let pointer: UnsafePointer<spanhost_host_api> = {
        let table = UnsafeMutablePointer<spanhost_host_api>.allocate(capacity: 1)
        table.initialize(to: make())
        return UnsafePointer(table)
    }()

    private static func lookup(_ config: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                               listing: Bool = false) -> (ConfigHandle, ConfigValue?)? {
        guard let handle = ConfigHandle.from(config) else { return nil }
        let key = path.map { String(cString: $0) } ?? ""
        return (handle, handle.lookup(key, listing: listing))
    }

    private static let found = UInt32(SPANHOST_CONFIG_FOUND)
    private static let missing = UInt32(SPANHOST_CONFIG_MISSING)
    private static let wrongType = UInt32(SPANHOST_CONFIG_WRONG_TYPE)

    /// Calls `body` with the status's message buffer, or a scratch one when the plugin passed
    /// no status (allowed: the reason then goes nowhere).
    private static func withMessage<R>(_ status: UnsafeMutablePointer<spanhost_status>?,
                                       _ body: (UnsafeMutablePointer<CChar>, Int) -> R) -> R {
        if let status, let message = status.pointee.message { return body(message, status.pointee.message_cap) }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { body($0.baseAddress!, $0.count) }
    }

    private static func make() -> spanhost_host_api {
        var api = spanhost_host_api()
        api.struct_size = UInt32(MemoryLayout<spanhost_host_api>.size)
        api.abi_major = UInt16(SPANHOST_ABI_MAJOR)
        api.abi_minor = UInt16(SPANHOST_ABI_MINOR)
        api.log = { instance, level, message, len in
            let text = message.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
            PluginInstance.from(instance)?.log(level: level, text) ?? PluginInstance.logUnattributed(level: level, text)
        }
        api.config_string = { config, path, out in
            guard let (handle, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard let s = value.stringValue else { return HostTable.wrongType }
            out?.pointee = handle.keep(s)
            return HostTable.found
        }
        api.config_int = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard let i = value.intValue else { return HostTable.wrongType }
            out?.pointee = i
            return HostTable.found
        }
        api.config_double = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard let d = value.doubleValue else { return HostTable.wrongType }
            out?.pointee = d
            return HostTable.found
        }
        api.config_bool = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard let b = value.boolValue else { return HostTable.wrongType }
            out?.pointee = b ? 1 : 0
            return HostTable.found
        }
        api.config_count = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            switch value {
            case .list(let items): out?.pointee = items.count
            case .map(let entries): out?.pointee = entries.count
            default: return HostTable.wrongType
            }
            return HostTable.found
        }
        api.config_key = { config, path, index, out in
            guard let (handle, value) = HostTable.lookup(config, path, listing: true), let value else { return HostTable.missing }
            guard let entries = value.mapEntries else { return HostTable.wrongType }
            guard index < entries.count else { return HostTable.missing }
            out?.pointee = handle.keep(entries[index].key)
            return HostTable.found
        }
        api.config_duration = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard value.isScalar, let duration = try? parseDuration(value, path: "") else { return HostTable.wrongType }
            let (seconds, attoseconds) = duration.components
            out?.pointee = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            return HostTable.found
        }
        api.config_bytes = { config, path, out in
            guard let (_, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            guard value.isScalar, let bytes = try? parseBytes(value, path: "") else { return HostTable.wrongType }
            out?.pointee = bytes
            return HostTable.found
        }
        api.config_string_list = { config, path, out, count in
            guard let (handle, value) = HostTable.lookup(config, path), let value, value != .null else { return HostTable.missing }
            let items: [String]
            switch value {
            case .list(let list):
                guard list.allSatisfy(\.isScalar) else { return HostTable.wrongType }
                items = list.compactMap(\.stringValue)
            default:
                guard value.isScalar, let one = value.stringValue else { return HostTable.wrongType }
                items = [one]
            }
            out?.pointee = handle.keep(items)
            count?.pointee = items.count
            return HostTable.found
        }
        api.arena_alloc = { batch, size in sh_arena_alloc(batch, size) }
        api.arena_strdup = { batch, ptr, len in sh_arena_strdup(batch, ptr, len) }
        api.set_attribute = { batch, attributes, key, value in sh_set_attribute(batch, attributes, key, value) }
        api.remove_attribute = { batch, attributes, key in sh_remove_attribute(batch, attributes, key) }
        api.batch_new = { sh_batch_new() }
        api.batch_retain = { batch in if let batch { sh_batch_retain(batch) } }
        api.batch_release = { batch in if let batch { sh_batch_release(batch) } }
        api.batch_add_span = { batch, resource, resourceSchema, scope, scopeSchema, span in
            guard let batch, let span else { return nil }
            return sh_batch_add_span(batch, resource, resourceSchema, scope, scopeSchema, span)
        }
        api.emit = { instance, batch in
            guard let instance = PluginInstance.from(instance), let batch else { return Int32(SPANHOST_PERMANENT) }
            return instance.emit(SpanBatch(retaining: batch))
        }
        api.raise = { instance, notification in
            guard let instance = PluginInstance.from(instance), let notification else { return Int32(SPANHOST_PERMANENT) }
            return instance.raise(notification)
        }
        api.release_trace = { instance, traceID in
            guard let instance = PluginInstance.from(instance), let traceID else { return }
            instance.releaseHandler?(traceID)
        }
        api.counter_add = { instance, name, delta in
            guard let instance = PluginInstance.from(instance), let name else { return }
            instance.counters.add(String(cString: name), delta)
        }
        api.gauge_set = { instance, name, value in
            guard let instance = PluginInstance.from(instance), let name else { return }
            instance.gauges.set(String(cString: name), value)
        }
        api.counter_declare = { instance, name in
            guard let instance = PluginInstance.from(instance), let name else { return 0 }
            return instance.counters.handle(String(cString: name))?.id ?? 0
        }
        api.counter_add_id = { instance, id, delta in
            guard let counters = PluginInstance.from(instance)?.counters, let handle = counters.handle(id: id) else { return }
            counters.add(handle, delta)
        }
        api.gauge_declare = { instance, name in
            guard let instance = PluginInstance.from(instance), let name else { return 0 }
            return instance.gauges.handle(String(cString: name))?.id ?? 0
        }
        api.gauge_set_id = { instance, id, value in
            guard let gauges = PluginInstance.from(instance)?.gauges, let handle = gauges.handle(id: id) else { return }
            gauges.set(handle, value)
        }
        api.set_attribute_lent = { batch, attributes, key, value in
            guard let value else { return -1 }
            // Strings and bytes are lent as they are; arrays and maps are copied (their items
            // would otherwise have to outlive the batch too).
            let viewOnly = value.pointee.type == UInt32(SPANHOST_VALUE_STRING) || value.pointee.type == UInt32(SPANHOST_VALUE_BYTES)
            return sh_set_attribute_lent(batch, attributes, key, value, viewOnly ? 1 : 0)
        }
        api.expr_compile = { text, len, kind, context, out, status in
            guard let out else { return Int32(SPANHOST_PERMANENT) }
            guard let expr = HostTable.withMessage(status, { sh_expr_compile(text, len, kind, context, $0, $1) }) else {
                return Int32(SPANHOST_PERMANENT)
            }
            out.pointee = expr
            return Int32(SPANHOST_OK)
        }
        // Run per span: the C function itself, with no Swift in between.
        api.expr_run = sh_expr_run
        api.expr_free = sh_expr_free
        api.expr_infer_context = { text, len, status in
            guard let text else { return 0 }
            return HostTable.withMessage(status) { sh_expr_infer_context(text, len, $0, $1) }
        }
        api.encode_batch = { batch, encoding, out in
            guard let batch, let out else { return -1 }
            return sh_encode_batch(batch, encoding, out)
        }
        api.buffer_free = { buffer in sh_buffer_free(buffer) }
        api.gzip = { data, len, out in
            guard let out else { return -1 }
            return sh_gzip(data, len, out)
        }
        api.encode_notification = { notification, out in
            guard let notification, let out else { return -1 }
            return sh_encode_notification_json(notification, out)
        }
        api.encode_value = { value, out in
            guard let value, let out else { return -1 }
            return sh_encode_value_json(value, out)
        }
        return api
    }
}
