import CSpanhost
import Glibc

/// The wire encodings of OTLP trace data.
public enum OTLPEncoding: Sendable {
    case protobuf
    case json

    /// The `SPANHOST_ENCODING_*` value of the C header.
    public var cValue: UInt32 {
        switch self {
        case .protobuf: return UInt32(SPANHOST_ENCODING_OTLP_PROTO)
        case .json: return UInt32(SPANHOST_ENCODING_OTLP_JSON)
        }
    }
}

/// Why a request body could not become a batch.
public enum DecodeError: Error, Equatable, CustomStringConvertible {
    /// The body (after decompression) is larger than the configured limit.
    case tooLarge(limit: Int)
    /// The gzip stream is damaged or truncated.
    case corruptGzip
    /// The bytes are not a valid ExportTraceServiceRequest in the given encoding.
    case invalid(String)
    case outOfMemory
    /// Decoding would build a batch larger than `limit` bytes (a multiple of the body).
    case expandsTooMuch(limit: Int)
    /// The request holds more spans than a receiver takes in one request.
    case tooManySpans(count: Int, limit: Int)
    /// A resource, scope, span, event or link has more attributes than a receiver takes.
    case tooManyAttributes(count: Int, limit: Int)

    /// True for the refusals answered 413 (the request is too big, not malformed).
    public var isTooLarge: Bool {
        switch self {
        case .tooLarge, .expandsTooMuch, .tooManySpans, .tooManyAttributes: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .tooLarge(let limit): return "request body exceeds \(limit) bytes after decompression"
        case .corruptGzip: return "request body is not valid gzip"
        case .invalid(let message): return message
        case .outOfMemory: return "out of memory while decoding"
        case .expandsTooMuch(let limit):
            return "decoding this request would take more than \(limit >> 20) MiB "
                + "(\(SpanBatch.decodeExpansion)x its decompressed size, plus 1 MiB); send fewer spans per request"
        case .tooManySpans(let count, let limit):
            return "the request holds \(count) spans; this receiver takes at most \(limit) per request (max_spans_per_request)"
        case .tooManyAttributes(let count, let limit):
            return "an item of the request has \(count) attributes; this receiver takes at most \(limit) (max_attributes_per_span)"
        }
    }
}

/// One batch of spans: a reference to an arena of `spanhost_batch` C structs.
///
/// The Swift object exists once per batch, never per span. Copies of the reference share the
/// arena; the arena is freed when the last reference (Swift or plugin) goes.
public final class SpanBatch: @unchecked Sendable {
    // Unchecked because the batch is C memory: one pipeline stage at a time owns it writable
    // (processors, in turn, on one thread each), and once it is handed to exporters or to more
    // than one pipeline it is only read; a pipeline that changes batches gets its own copy.
    // The arena's reference count is atomic (sh_batch_retain and sh_batch_release).
    /// The C batch. Writable while one pipeline stage owns the batch (processors), read-only
    /// once it has been handed to exporters.
    public let pointer: UnsafeMutablePointer<spanhost_batch>

    /// Takes over one reference that the caller already holds.
    public init(adopting pointer: UnsafeMutablePointer<spanhost_batch>) {
        self.pointer = pointer
    }

    /// Adds a reference to a batch owned elsewhere (a plugin's emit).
    public convenience init(retaining pointer: UnsafePointer<spanhost_batch>) {
        sh_batch_retain(pointer)
        self.init(adopting: UnsafeMutablePointer(mutating: pointer))
    }

    /// An empty batch; nil when out of memory.
    public static func empty() -> SpanBatch? {
        sh_batch_new().map(SpanBatch.init(adopting:))
    }

    deinit { sh_batch_release(pointer) }

    /// The OTLP protobuf request this batch was decoded from, in its own arena, while nothing
    /// has changed the batch since: a persistent queue writes it as it is instead of encoding
    /// the batch again. Cleared before a processor gets the batch.
    public private(set) var protobufSource: UnsafeRawBufferPointer?

    /// The batch is about to change: its request no longer says what it holds.
    public func forgetProtobufSource() { protobufSource = nil }

    /// Decodes an OTLP request body into a new batch. `gzip` bodies are inflated first;
    /// `limit` caps the body size after decompression.
    public static func decode(
        _ body: UnsafeRawBufferPointer, encoding: OTLPEncoding, gzip: Bool, limit: Int, caps: Caps = Caps()
    ) throws(DecodeError) -> SpanBatch {
        try decode(body, format: encoding == .json ? .otlpJSON : .otlpProtobuf, gzip: gzip, limit: limit, caps: caps)
    }

    /// What one request may hold, checked after decoding (the arena cap has bounded memory by then).
    public struct Caps: Sendable, Equatable {
        public var maxSpans: Int
        public var maxAttributes: Int
        /// Far above what SDKs send: their batch processors send 512 spans and keep 128 attributes.
        public init(maxSpans: Int = 200_000, maxAttributes: Int = 10_000) {
            self.maxSpans = maxSpans
            self.maxAttributes = maxAttributes
        }
    }

    /// The request formats a receiver can decode.
    public enum InputFormat: Sendable, Equatable {
        case otlpProtobuf, otlpJSON, zipkinJSON, zipkinProtobuf
        /// Zipkin's older model (POST /api/v1/spans).
        case zipkinV1JSON
        /// An Omegi agent's error or flow message; its times are local at this offset from UTC.
        case omegiJSON(utcOffsetSeconds: Int32)
        /// Jaeger Thrift: a Batch (HTTP), or the agent's emitBatch message (UDP).
        case jaegerThrift(JaegerForm)
    }

    /// How Jaeger Thrift arrives.
    public enum JaegerForm: Sendable, Equatable {
        /// A `Batch` in the binary protocol: POST /api/traces.
        case batch
        /// The agent's `emitBatch` in the compact protocol (UDP 6831).
        case agentCompact
        /// The agent's `emitBatch` in the binary protocol (UDP 6832).
        case agentBinary

        var cValue: UInt32 {
            switch self {
            case .batch: return SH_JAEGER_BATCH_BINARY
            case .agentCompact: return SH_JAEGER_AGENT_COMPACT
            case .agentBinary: return SH_JAEGER_AGENT_BINARY
            }
        }
    }

    public static func decode(
        _ body: UnsafeRawBufferPointer, format: InputFormat, gzip: Bool, limit: Int, caps: Caps = Caps()
    ) throws(DecodeError) -> SpanBatch {
        guard let batch = SpanBatch.empty() else { throw .outOfMemory }
        let bytes: UnsafePointer<UInt8>
        let count: Int
        if gzip {
            var out: UnsafeMutablePointer<UInt8>?
            var outLen = 0
            let rc = sh_gunzip(body.baseAddress?.assumingMemoryBound(to: UInt8.self), body.count, limit, &out, &outLen)
            if rc == SH_GUNZIP_TOO_LARGE { throw .tooLarge(limit: limit) }
            guard rc == SH_GUNZIP_OK, let out else { throw .corruptGzip }
            guard sh_arena_adopt(batch.pointer, out, outLen) == 0 else { throw .outOfMemory }
            bytes = UnsafePointer(out)
            count = outLen
        } else {
            if body.count > limit { throw .tooLarge(limit: limit) }
            guard let copy = sh_arena_copy(batch.pointer, body.baseAddress, body.count) else { throw .outOfMemory }
            bytes = copy
            count = body.count
        }
        // No real SDK's request builds more than a few bytes of batch per byte of body; empty
        // spans (2 bytes each) would build about 90x. Cap it.
        let arenaLimit = sh_batch_bytes(batch.pointer) + count.multipliedReportingOverflow(by: decodeExpansion).partialValue + (1 << 20)
        sh_batch_set_limit(batch.pointer, arenaLimit)
        defer { sh_batch_set_limit(batch.pointer, 0) }
        let failure: String? = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { errBuf in
            errBuf[0] = 0
            let rc: Int32
            switch format {
            case .otlpProtobuf: rc = sh_decode_otlp_proto(batch.pointer, bytes, count, errBuf.baseAddress, errBuf.count)
            case .otlpJSON: rc = sh_decode_otlp_json(batch.pointer, bytes, count, errBuf.baseAddress, errBuf.count)
            case .zipkinJSON: rc = sh_decode_zipkin_json(batch.pointer, bytes, count, errBuf.baseAddress, errBuf.count)
            case .zipkinProtobuf: rc = sh_decode_zipkin_proto(batch.pointer, bytes, count, errBuf.baseAddress, errBuf.count)
            case .zipkinV1JSON:
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let micros = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
                rc = sh_decode_zipkin_v1_json(batch.pointer, bytes, count, micros, errBuf.baseAddress, errBuf.count)
            case .omegiJSON(let offset):
                rc = sh_decode_omegi_json(batch.pointer, bytes, count, offset, errBuf.baseAddress, errBuf.count)
            case .jaegerThrift(let form):
                rc = sh_decode_jaeger_thrift(batch.pointer, bytes, count, form.cValue, errBuf.baseAddress, errBuf.count)
            }
            errBuf[errBuf.count - 1] = 0
            return rc == 0 ? nil : String(cString: errBuf.baseAddress!)
        }
        if let failure {
            if sh_batch_over_limit(batch.pointer) != 0 { throw .expandsTooMuch(limit: arenaLimit) }
            throw .invalid(failure)
        }
        batch.assertStructurallyValid(after: "decoding \(format)")
        if format == .otlpProtobuf { batch.protobufSource = UnsafeRawBufferPointer(start: bytes, count: count) }
        let spans = batch.spanCount
        if spans > caps.maxSpans { throw .tooManySpans(count: spans, limit: caps.maxSpans) }
        let attributes = sh_batch_most_attributes(batch.pointer)
        if attributes > caps.maxAttributes { throw .tooManyAttributes(count: attributes, limit: caps.maxAttributes) }
        return batch
    }

    /// A decoded batch may take this many times its request's decompressed size (plus 1 MiB).
    public static let decodeExpansion = 16

    /// Convenience for tests and tools: decode from an array.
    public static func decode(_ body: [UInt8], encoding: OTLPEncoding, gzip: Bool = false,
                              limit: Int = 20 << 20) throws(DecodeError) -> SpanBatch {
        do {
            return try body.withUnsafeBytes { raw in try decode(raw, encoding: encoding, gzip: gzip, limit: limit) }
        } catch let error as DecodeError {
            throw error
        } catch {
            throw .invalid("\(error)")
        }
    }

    /// Serializes the batch as an ExportTraceServiceRequest; nil when out of memory.
    public func encode(_ encoding: OTLPEncoding) -> [UInt8]? {
        var buffer = spanhost_buffer()
        guard sh_encode_batch(pointer, encoding.cValue, &buffer) == 0 else { return nil }
        defer { sh_buffer_free(&buffer) }
        return Array(UnsafeBufferPointer(start: buffer.data, count: buffer.len))
    }

    public var spanCount: Int { sh_batch_span_count(pointer) }

    /// Debug builds check the whole batch (types match their values, every pointer and count
    /// inside the batch, strings UTF-8) after every decode and every processor, and stop at the
    /// first corrupt one, naming the stage and the field. Release builds skip it: it walks the
    /// arena's blocks for every pointer.
    @inline(__always)
    public func assertStructurallyValid(after stage: @autoclosure () -> String) {
        #if DEBUG
        var err = [CChar](repeating: 0, count: 256)
        if sh_batch_validate(pointer, nil, 0, &err, err.count) != 0 {
            let field = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            fatalError("corrupt batch after \(stage()): \(field)")
        }
        #endif
    }

    /// Bytes this batch holds in memory (its arena and the body it was decoded from).
    public var arenaBytes: Int { sh_batch_bytes(pointer) }

    /// Bytes held by every live batch in the process (the memory limiter's measure).
    public static var liveBytes: Int { sh_live_batch_bytes() }

    /// Bytes of the slabs batch arenas take their blocks from: `liveBytes` in use plus free
    /// blocks and cached empty slabs not yet given back to the system.
    public static var arenaMappedBytes: Int { sh_pool_mapped_bytes() }

    /// Removes spans that a processor marked `SPANHOST_SPAN_DROP` or `SPANHOST_SPAN_TAKEN`;
    /// returns how many were dropped (taken spans are the processor's, not lost).
    @discardableResult
    public func removeDroppedSpans() -> Int { sh_batch_compact(pointer) }

    /// Copies every span of `other` into this batch (with its resource and scope); false when
    /// out of memory.
    public func append(spansOf other: SpanBatch) -> Bool {
        var complete = true
        other.forEachSpan { rs, ss, span in
            if complete && sh_batch_add_span(pointer, rs.pointee.resource, rs.pointee.schema_url,
                                             ss.pointee.scope, ss.pointee.schema_url, span) == nil {
                complete = false
            }
        }
        return complete
    }

    /// A deep copy of the spans whose host flags have `flag` (without the flags); nil when out
    /// of memory.
    public func copy(flagged flag: UInt32) -> SpanBatch? {
        copy { _, span in span.pointee.host_flags & flag != 0 }
    }

    /// A deep copy of the spans `keep` picks, given each span and its index in `forEachSpan`
    /// order, with the batch's client_metadata; nil when out of memory. The batch is only read.
    public func copy(where keep: (Int, UnsafeMutablePointer<spanhost_span>) -> Bool) -> SpanBatch? {
        guard let copy = SpanBatch.empty(), sh_batch_copy_client_metadata(copy.pointer, pointer) == 0 else { return nil }
        var complete = true
        var index = 0
        forEachSpan { rs, ss, span in
            defer { index += 1 }
            if complete && keep(index, span)
                && sh_batch_add_span(copy.pointer, rs.pointee.resource, rs.pointee.schema_url,
                                     ss.pointee.scope, ss.pointee.schema_url, span) == nil {
                complete = false
            }
        }
        return complete ? copy : nil
    }

    /// The batch split by `group` (one entry per span, in `forEachSpan` order), groups in
    /// ascending order: the batch itself when one group has every span, else a copy of the
    /// group's spans (nil when out of memory). The batch is only read.
    public func split(by group: [Int]) -> [(group: Int, batch: SpanBatch?)] {
        Dictionary(grouping: group.indices, by: { group[$0] }).sorted { $0.key < $1.key }.map { key, members in
            if members.count == group.count { return (key, self) }
            let picked = Set(members)
            return (key, copy { index, _ in picked.contains(index) })
        }
    }

    /// A deep copy, for handing the same data to a second pipeline that will change it; nil
    /// when out of memory.
    public func clone() -> SpanBatch? {
        guard let copy = SpanBatch.empty(), copy.append(spansOf: self),
              sh_batch_copy_client_metadata(copy.pointer, pointer) == 0 else { return nil }
        return copy
    }

    /// The batch with its client_metadata set (what the receiver knew of the request). Out of
    /// memory, it goes on without: the spans matter more than their request's headers.
    public func withClientMetadata(_ pairs: [(key: String, value: String)]) -> SpanBatch {
        _ = setClientMetadata(pairs)
        return self
    }

    /// The string value of `key` in the batch's client_metadata, or nil.
    public func clientMetadata(_ key: String) -> String? { pointer.pointee.client_metadata.string(key) }

    /// Sets the batch's client_metadata; false when out of memory.
    public func setClientMetadata(_ pairs: [(key: String, value: String)]) -> Bool {
        pairs.allSatisfy { pair in
            var key = pair.key, value = pair.value
            return key.withUTF8 { k in
                value.withUTF8 { v in
                    sh_batch_set_client_metadata(pointer, k.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, k.count,
                                                 v.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, v.count) == 0
                }
            }
        }
    }

    /// Visits every span with its resource and scope groups.
    public func forEachSpan(
        _ body: (UnsafeMutablePointer<spanhost_resource_spans>, UnsafeMutablePointer<spanhost_scope_spans>,
                 UnsafeMutablePointer<spanhost_span>) -> Void
    ) {
        let b = pointer.pointee
        for i in 0..<b.resource_spans_count {
            guard let rs = b.resource_spans[i] else { continue }
            for j in 0..<rs.pointee.scope_spans_count {
                guard let ss = rs.pointee.scope_spans[j] else { continue }
                for k in 0..<ss.pointee.spans_count {
                    if let span = ss.pointee.spans[k] { body(rs, ss, span) }
                }
            }
        }
    }
}

extension spanhost_kv_list {
    /// The string value of `key`, or nil when it is absent or not a string. Keys are compared
    /// as bytes: no Swift string is made for the keys passed over.
    public func string(_ key: String) -> String? {
        var key = key
        return key.withUTF8 { k in
            for i in 0..<count {
                let kv = items[i]
                guard kv.key.len == k.count, kv.value.type == UInt32(SPANHOST_VALUE_STRING),
                      k.count == 0 || memcmp(kv.key.ptr, k.baseAddress!, k.count) == 0 else { continue }
                return kv.value.as.string_value.string
            }
            return nil
        }
    }
}

extension spanhost_str {
    /// Copies the view into a Swift string (invalid UTF-8 is repaired).
    public var string: String {
        guard let ptr, len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: ptr, count: len), as: UTF8.self)
    }
}
