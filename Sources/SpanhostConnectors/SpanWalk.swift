import Foundation
import CSpanhost
import SpanhostConfig
import SpanhostModel

/// What the derived telemetry reads of one span, straight from the C structs.
struct SpanFacts {
    var traceID: (UInt64, UInt64)
    var spanID: UInt64
    var parentID: UInt64
    var kind: UInt32
    var failed: Bool
    var seconds: Double
    var name: String { String(decoding: UnsafeRawBufferPointer(start: span.pointee.name.ptr, count: span.pointee.name.len), as: UTF8.self) }
    let span: UnsafeMutablePointer<spanhost_span>
    let resource: UnsafeMutablePointer<spanhost_resource>?

    /// The span's attribute `key`, else its resource's, as text (the Collector's dimension lookup).
    func attribute(_ key: String) -> String? {
        attributeText(span.pointee.attributes, key) ?? resource.flatMap { attributeText($0.pointee.attributes, key) }
    }
}

/// The value of `key` in `list` as text, as pcommon's AsString writes scalars; nil when absent.
/// Maps, lists and bytes are written as JSON.
func attributeText(_ list: spanhost_kv_list, _ key: String) -> String? {
    var key = key
    return key.withUTF8 { k -> String? in
        for i in 0..<list.count {
            let kv = list.items[i]
            guard kv.key.len == k.count, k.count == 0 || memcmp(kv.key.ptr, k.baseAddress!, k.count) == 0 else { continue }
            var value = kv.value
            switch Int32(value.type) {
            case SPANHOST_VALUE_STRING:
                let s = value.as.string_value
                return String(decoding: UnsafeRawBufferPointer(start: s.ptr, count: s.len), as: UTF8.self)
            case SPANHOST_VALUE_BOOL: return value.as.bool_value != 0 ? "true" : "false"
            case SPANHOST_VALUE_INT: return String(value.as.int_value)
            case SPANHOST_VALUE_DOUBLE:
                let d = value.as.double_value
                return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
            default:
                var out = spanhost_buffer()
                defer { sh_buffer_free(&out) }
                guard sh_encode_value_json(&value, &out) == 0 else { return nil }
                return String(decoding: UnsafeRawBufferPointer(start: out.data, count: out.len), as: UTF8.self)
            }
        }
        return nil
    }
}

extension SpanBatch {
    /// Calls `body` with every span and its resource's service.name ("unknown_service" without one).
    func forEachSpanFact(_ body: (SpanFacts, String) -> Void) {
        let b = pointer.pointee
        for i in 0..<b.resource_spans_count {
            guard let rs = b.resource_spans[i] else { continue }
            let service = rs.pointee.resource.flatMap { serviceName($0.pointee.attributes) } ?? "unknown_service"
            for j in 0..<rs.pointee.scope_spans_count {
                guard let ss = rs.pointee.scope_spans[j] else { continue }
                for k in 0..<ss.pointee.spans_count {
                    guard let span = ss.pointee.spans[k] else { continue }
                    let s = span.pointee
                    let (t0, t1): (UInt64, UInt64) = withUnsafeBytes(of: s.trace_id) { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
                    let spanID = withUnsafeBytes(of: s.span_id) { $0.loadUnaligned(as: UInt64.self) }
                    let parentID = withUnsafeBytes(of: s.parent_span_id) { $0.loadUnaligned(as: UInt64.self) }
                    let nanos = s.end_time_unix_nano > s.start_time_unix_nano ? s.end_time_unix_nano - s.start_time_unix_nano : 0
                    body(SpanFacts(traceID: (t0, t1), spanID: spanID, parentID: parentID, kind: s.kind,
                                   failed: s.status_code == UInt32(SPANHOST_STATUS_ERROR), seconds: Double(nanos) / 1e9, span: span, resource: rs.pointee.resource),
                         service)
                }
            }
        }
    }

    private func serviceName(_ list: spanhost_kv_list) -> String? {
        for i in 0..<list.count {
            let kv = list.items[i]
            guard kv.key.len == 12, memcmp(kv.key.ptr, "service.name", 12) == 0, kv.value.type == UInt32(SPANHOST_VALUE_STRING) else { continue }
            let s = kv.value.as.string_value
            return String(decoding: UnsafeRawBufferPointer(start: s.ptr, count: s.len), as: UTF8.self)
        }
        return nil
    }
}

/// Counts per explicit upper bound (Prometheus' cumulative buckets are made when written).
public struct BucketHistogram: Sendable {
    let bounds: [Double]  // seconds
    private(set) var counts: [UInt64]  // one per bound, then +Inf
    private(set) var sum = 0.0
    private(set) var count: UInt64 = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = [UInt64](repeating: 0, count: bounds.count + 1)
    }

    mutating func record(_ seconds: Double) {
        counts[bounds.firstIndex { seconds <= $0 } ?? bounds.count] += 1
        sum += seconds
        count += 1
    }

    /// The bound under which `q` (0...1) of the values fall (the last bound for the +Inf bucket).
    func quantile(_ q: Double) -> Double {
        guard count > 0 else { return 0 }
        let target = UInt64((Double(count) * q).rounded(.up))
        var seen: UInt64 = 0
        for (index, n) in counts.enumerated() {
            seen += n
            if seen >= target { return index < bounds.count ? bounds[index] : bounds.last ?? 0 }
        }
        return bounds.last ?? 0
    }
}

/// Prometheus text for hand-made series (histograms keep their own counts, which the registry
/// cannot take as they are). Label values come from span data, so they are escaped.
public struct PrometheusText {
    public private(set) var text = ""
    private var described: Set<String> = []
    /// The prometheus exporter's `namespace` (with its `_`) and `const_labels`.
    private let prefix: String
    private let constLabels: [(String, String)]

    public init(namespace: String = "", constLabels: [String: String] = [:]) {
        prefix = namespace.isEmpty ? "" : Self.labelName(namespace) + "_"
        self.constLabels = constLabels.sorted { $0.key < $1.key }.map { (Self.labelName($0.key), $0.value) }
    }

    mutating func header(_ name: String, _ type: String, _ help: String) {
        let name = prefix + name
        guard described.insert(name).inserted else { return }
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// A Prometheus name for an attribute or namespace: `http.method` -> `http_method`.
    static func labelName(_ name: String) -> String {
        var out = String(name.unicodeScalars.map { $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || $0 == "_" ? Character($0) : "_" })
        if out.first.map({ $0.isNumber }) ?? true { out = "_" + out }
        return out
    }

    static func escape(_ value: String) -> String {
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += "\(prefix)\(name)\(Self.labels(constLabels + labels)) \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))\n"
    }

    mutating func histogram(_ name: String, _ labels: [(String, String)], _ h: BucketHistogram, _ help: String) {
        header(name, "histogram", help)
        var cumulative: UInt64 = 0
        for (index, bound) in h.bounds.enumerated() {
            cumulative += h.counts[index]
            sample("\(name)_bucket", labels + [("le", String(bound))], Double(cumulative))
        }
        sample("\(name)_bucket", labels + [("le", "+Inf")], Double(h.count))
        sample("\(name)_sum", labels, h.sum)
        sample("\(name)_count", labels, Double(h.count))
    }
}
