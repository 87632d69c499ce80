import CSpanhost
import SpanhostConfig
import SpanhostModel

/// A `loadbalancing` exporter: each span goes to one backend (an otlphttp exporter with its
/// own queue), picked by its trace id or its service name on a consistent-hash ring. Adding
/// or removing a backend moves only the keys that land on it.
public final class LoadBalancer: Sendable {
    public let id: ComponentID
    public let backends: [ExporterRunner]
    private let routingKey: LoadBalancerConfig.RoutingKey
    /// Sorted points of the ring, each owned by a backend.
    private let ring: [(point: UInt64, backend: Int)]

    /// Points per backend: enough that keys spread evenly over a few backends.
    static let pointsPerBackend = 200

    init(_ config: LoadBalancerConfig, backends: [ExporterRunner]) {
        id = config.id
        routingKey = config.routingKey
        self.backends = backends
        var ring: [(UInt64, Int)] = []
        for (index, backend) in config.backends.enumerated() {
            for point in 0..<Self.pointsPerBackend {
                ring.append((Array("\(backend.hostname)#\(point)".utf8).withUnsafeBytes(Self.hash), index))
            }
        }
        self.ring = ring.sorted { $0.0 < $1.0 }
    }

    /// FNV-1a, 64 bits, then a final mix so nearby inputs spread over the ring.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    /// The backend whose point follows `key` on the ring.
    func backend(for key: UnsafeRawBufferPointer) -> Int {
        let h = Self.hash(key)
        var low = 0, high = ring.count
        while low < high {
            let mid = (low + high) / 2
            if ring[mid].point < h { low = mid + 1 } else { high = mid }
        }
        return ring[low == ring.count ? 0 : low].backend
    }

    /// Hands each backend its share of the batch (read-only: shared with other exporters).
    func accept(_ batch: SpanBatch, force: Bool) -> ConsumeOutcome {
        var choice: [Int] = []
        choice.reserveCapacity(batch.spanCount)
        var lastResource: UnsafeMutablePointer<spanhost_resource_spans>?
        var serviceBackend = 0
        batch.forEachSpan { rs, _, span in
            switch routingKey {
            case .traceID:
                choice.append(withUnsafeBytes(of: span.pointee.trace_id) { backend(for: $0) })
            case .service:
                if rs != lastResource {
                    lastResource = rs
                    var name = Self.serviceName(rs.pointee.resource)
                    serviceBackend = name.withUTF8 { backend(for: UnsafeRawBufferPointer($0)) }
                }
                choice.append(serviceBackend)
            }
        }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        for (index, part) in batch.split(by: choice) {
            guard let part else {
                outcome = Generation.merge(outcome, .refused(retryAfterSeconds: 1, message: "out of memory splitting a batch in \(id)"))
                continue
            }
            if let answer = backends[index].accept(part, force: force) { outcome = Generation.merge(outcome, answer) }
        }
        return outcome
    }

    private static func serviceName(_ resource: UnsafeMutablePointer<spanhost_resource>?) -> String {
        guard let list = resource?.pointee.attributes else { return "" }
        for i in 0..<list.count where list.items[i].key.string == "service.name" && list.items[i].value.type == UInt32(SPANHOST_VALUE_STRING) {
            return list.items[i].value.as.string_value.string
        }
        return ""
    }
}
