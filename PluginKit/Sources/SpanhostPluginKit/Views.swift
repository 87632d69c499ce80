/// Read-only Swift views over the C span structs of a batch. Nothing is copied until you ask
/// for a Swift value (a `String`, an array); views are valid only during the hook call.
public struct BatchView {
    /// The C batch (spanhost.h), borrowed for the hook call.
    public let pointer: UnsafePointer<spanhost_batch>

    /// Spans in the batch, counted by walking it.
    public var spanCount: Int {
        var n = 0
        forEachSpan { _, _, _ in n += 1 }
        return n
    }

    /// Every span with its resource and scope.
    public func forEachSpan(_ body: (SpanView, ResourceView, ScopeView) -> Void) {
        let b = pointer.pointee
        for i in 0..<b.resource_spans_count {
            guard let rs = b.resource_spans[i] else { continue }
            let resource = ResourceView(pointer: rs.pointee.resource, schemaURL: rs.pointee.schema_url)
            for j in 0..<rs.pointee.scope_spans_count {
                guard let ss = rs.pointee.scope_spans[j] else { continue }
                let scope = ScopeView(pointer: ss.pointee.scope, schemaURL: ss.pointee.schema_url)
                for k in 0..<ss.pointee.spans_count {
                    if let span = ss.pointee.spans[k] { body(SpanView(pointer: span), resource, scope) }
                }
            }
        }
    }
}

/// A batch a processor may change: spans can be dropped and attributes set or removed.
public struct MutableBatchView {
    public let pointer: UnsafeMutablePointer<spanhost_batch>
    /// The same batch, read-only (for reading resources and scopes).
    public var readOnly: BatchView { BatchView(pointer: UnsafePointer(pointer)) }

    /// Every span, writable: drop it or set attributes (copied into the batch's arena).
    public func forEachSpan(_ body: (MutableSpanView) -> Void) {
        forEachSpan { span, _, _ in body(span) }
    }

    /// Every span, writable, with its resource and scope (to copy it into an `OwnedBatch`).
    public func forEachSpan(_ body: (MutableSpanView, ResourceView, ScopeView) -> Void) {
        readOnly.forEachSpan { span, resource, scope in
            body(MutableSpanView(pointer: UnsafeMutablePointer(mutating: span.pointer), batch: pointer), resource, scope)
        }
    }
}

/// A batch the plugin made (host->batch_new), to fill with copies of spans and emit later
/// (`PluginHost.emit`). Released when the last Swift reference goes. Not thread-safe: fill it
/// from one thread at a time.
public final class OwnedBatch: @unchecked Sendable {
    // Unchecked because the batch is C memory the plugin fills: it may be handed between
    // threads (held by one hook, emitted from another), but filled from one at a time, as said
    // above. Its reference count in the host is atomic.
    let pointer: UnsafeMutablePointer<spanhost_batch>
    private let api: UnsafePointer<spanhost_host_api>

    /// nil when the host is out of memory.
    public init?() {
        guard let api = SpanhostPlugin.hostAPI, let made = api.pointee.batch_new() else { return nil }
        self.api = api
        pointer = made
    }

    deinit { api.pointee.batch_release(pointer) }

    /// Appends a deep copy of `span` under its resource and scope; false when out of memory.
    @discardableResult
    public func add(_ span: SpanView, resource: ResourceView, scope: ScopeView) -> Bool {
        api.pointee.batch_add_span(pointer, resource.pointer, resource.schemaURL, scope.pointer, scope.schemaURL, span.pointer) != nil
    }

    public var view: BatchView { BatchView(pointer: UnsafePointer(pointer)) }
    public var spanCount: Int { view.spanCount }
}

/// A compiled OTTL condition or statement (PluginHost.compile), freed with its last reference.
/// May be run from several threads at once.
public final class Expression: Sendable {
    public enum Kind: UInt32, Sendable { case condition = 1, statement = 2 }
    public enum Context: UInt32, Sendable { case span = 1, resource = 2 }
    private let compiled: HostHandle
    private var api: UnsafePointer<spanhost_host_api> { compiled.api }
    private var pointer: OpaquePointer? { compiled.handle }

    init(api: UnsafePointer<spanhost_host_api>, pointer: OpaquePointer) {
        compiled = HostHandle(api: api, handle: pointer)
    }

    deinit { api.pointee.expr_free(pointer) }

    /// A condition: whether it holds for `span`. A statement: whether it ran (its `where`
    /// held); it changes the span in place. Throws when the expression failed on this span.
    public func run(on span: MutableSpanView, resource: ResourceView, scope: ScopeView) throws -> Bool {
        var target = spanhost_expr_target()
        target.struct_size = UInt32(MemoryLayout<spanhost_expr_target>.size)
        target.batch = span.batch
        target.resource = UnsafeMutablePointer(mutating: resource.pointer)
        target.scope = UnsafeMutablePointer(mutating: scope.pointer)
        target.span = span.pointer
        // Run per span: the status's buffer is on the stack, not allocated each time.
        let (result, failure): (Int32, String?) = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            buffer[0] = 0
            var status = spanhost_status(struct_size: UInt32(MemoryLayout<spanhost_status>.size), retry_after_ms: 0,
                                         message: buffer.baseAddress, message_cap: buffer.count)
            let result = api.pointee.expr_run(pointer, &target, &status)
            return (result, result < 0 ? String(cString: buffer.baseAddress!) : nil)
        }
        if let failure { throw PluginError(failure) }
        return result == 1
    }
}

/// One span of a batch a processor holds writable.
public struct MutableSpanView {
    public let pointer: UnsafeMutablePointer<spanhost_span>
    let batch: UnsafeMutablePointer<spanhost_batch>

    public var view: SpanView { SpanView(pointer: UnsafePointer(pointer)) }

    /// Removes the span from the batch when the processor returns.
    public func drop() { pointer.pointee.host_flags |= UInt32(SPANHOST_SPAN_DROP) }

    /// Removes the span from the batch because the processor keeps a copy to emit later (copy
    /// it into an `OwnedBatch` first); not a drop.
    public func take() { pointer.pointee.host_flags |= UInt32(SPANHOST_SPAN_TAKEN) }

    /// Sets (or replaces) a string attribute; key and value are copied into the batch.
    public func setAttribute(_ key: String, _ value: String) {
        guard let api = SpanhostPlugin.hostAPI else { return }
        var k = key, v = value
        k.withUTF8 { kb in
            v.withUTF8 { vb in
                var value = spanhost_value()
                value.type = UInt32(SPANHOST_VALUE_STRING)
                value.as.string_value = spanhost_str(ptr: UnsafeRawPointer(vb.baseAddress)?.assumingMemoryBound(to: CChar.self), len: vb.count)
                _ = api.pointee.set_attribute(batch, &pointer.pointee.attributes,
                                              spanhost_str(ptr: UnsafeRawPointer(kb.baseAddress)?.assumingMemoryBound(to: CChar.self), len: kb.count), &value)
            }
        }
    }
}

/// The resource (the service and its attributes) a span belongs to.
public struct ResourceView {
    public let pointer: UnsafePointer<spanhost_resource>
    /// The schema URL of the spans' resource group.
    public let schemaURL: spanhost_str
    public var attributes: AttributesView { AttributesView(list: pointer.pointee.attributes) }
}

/// The instrumentation scope (library name and version) a span was recorded by.
public struct ScopeView {
    public let pointer: UnsafePointer<spanhost_scope>
    /// The schema URL of the spans' scope group.
    public let schemaURL: spanhost_str
    public var name: String { pointer.pointee.name.swiftString }
    public var version: String { pointer.pointee.version.swiftString }
}

/// One span, read in place; its fields become Swift values only when read.
public struct SpanView {
    public let pointer: UnsafePointer<spanhost_span>

    public var name: String { pointer.pointee.name.swiftString }
    public var traceID: String { withUnsafeBytes(of: pointer.pointee.trace_id) { hex($0) } }
    public var spanID: String { withUnsafeBytes(of: pointer.pointee.span_id) { hex($0) } }
    public var parentSpanID: String { withUnsafeBytes(of: pointer.pointee.parent_span_id) { hex($0) } }
    /// `SPANHOST_SPAN_KIND_*`
    public var kind: UInt32 { pointer.pointee.kind }
    /// `SPANHOST_STATUS_*`
    public var statusCode: UInt32 { pointer.pointee.status_code }
    public var statusMessage: String { pointer.pointee.status_message.swiftString }
    public var startTimeUnixNano: UInt64 { pointer.pointee.start_time_unix_nano }
    public var endTimeUnixNano: UInt64 { pointer.pointee.end_time_unix_nano }
    public var attributes: AttributesView { AttributesView(list: pointer.pointee.attributes) }
    public var eventCount: Int { pointer.pointee.events_count }
    public var linkCount: Int { pointer.pointee.links_count }
}

/// Attributes as (key, value) pairs.
public struct AttributesView: Sequence {
    let list: spanhost_kv_list

    public func makeIterator() -> AnyIterator<(key: String, value: AttributeValue)> {
        var index = 0
        let list = self.list
        return AnyIterator {
            guard index < list.count else { return nil }
            defer { index += 1 }
            return (list.items[index].key.swiftString, AttributeValue(list.items[index].value))
        }
    }

    public subscript(key: String) -> AttributeValue? { first { $0.key == key }?.value }
}

/// An attribute value (OTLP AnyValue), copied into Swift.
public indirect enum AttributeValue: Equatable, Sendable {
    case empty
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes([UInt8])
    case array([AttributeValue])
    case kvlist([String: AttributeValue])

    init(_ v: spanhost_value) {
        switch Int32(bitPattern: v.type) {
        case SPANHOST_VALUE_STRING: self = .string(v.as.string_value.swiftString)
        case SPANHOST_VALUE_BOOL: self = .bool(v.as.bool_value != 0)
        case SPANHOST_VALUE_INT: self = .int(v.as.int_value)
        case SPANHOST_VALUE_DOUBLE: self = .double(v.as.double_value)
        case SPANHOST_VALUE_BYTES: self = .bytes(Array(UnsafeBufferPointer(start: v.as.bytes_value.ptr, count: v.as.bytes_value.len)))
        case SPANHOST_VALUE_ARRAY:
            let a = v.as.array_value
            self = .array((0..<a.count).map { AttributeValue(a.items[$0]) })
        case SPANHOST_VALUE_KVLIST:
            let l = v.as.kvlist_value
            self = .kvlist(Dictionary((0..<l.count).map { (l.items[$0].key.swiftString, AttributeValue(l.items[$0].value)) },
                                      uniquingKeysWith: { _, last in last }))
        default: self = .empty
        }
    }
}

private func hex(_ bytes: UnsafeRawBufferPointer) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// A notification handed to a notifier, read in place (borrowed for the call).
public struct NotificationView {
    public let pointer: UnsafePointer<spanhost_notification>
    public var kind: String { pointer.pointee.kind.swiftString }
    /// SPANHOST_SEVERITY_*: 0 info, 1 warning, 2 error, 3 critical.
    public var severity: UInt32 { pointer.pointee.severity }
    public var severityName: String { ["info", "warning", "error", "critical"][Int(min(pointer.pointee.severity, 3))] }
    public var source: String { pointer.pointee.source.swiftString }
    public var key: String { pointer.pointee.key.swiftString }
    public var summary: String { pointer.pointee.summary.swiftString }
    public var count: UInt64 { pointer.pointee.count }
    public var timeUnixNano: UInt64 { pointer.pointee.time_unix_nano }
    public var attributes: AttributesView { AttributesView(list: pointer.pointee.attributes) }
    /// 32 hex digits, or nil when the event is not about one trace.
    public var traceID: String? {
        withUnsafeBytes(of: pointer.pointee.trace_id) { $0.allSatisfy { $0 == 0 } ? nil : hex($0) }
    }
}
