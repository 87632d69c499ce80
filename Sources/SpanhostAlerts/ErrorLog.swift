import CSpanhost
import Foundation
import Synchronization
import SpanhostModel

/// The recent errors the admin page's Errors view shows: the error events a pipeline saw (what
/// processors declaring SPANHOST_PLUGIN_TRACE_EVENTS raise, such as `error_flow`, and the
/// `error_span` rules' notifications), grouped by signature (kind and key: service, span,
/// exception type), newest first, with counts and first and
/// last times, and each signature's latest occurrences as the event JSON notifiers get. Bounded
/// (signatures and occurrences per signature) and in memory; a reload hands it to the next
/// generation, a restart starts it empty.
public final class ErrorLog: Sendable {
    public struct Occurrence: Sendable, Encodable {
        public var time: String
        public var traceId: String?
        /// The event as host->encode_notification writes it (parsed by the page).
        public var event: String
    }

    public struct Signature: Sendable, Encodable {
        public var kind: String
        public var key: String
        public var service: String
        public var summary: String
        public var count: UInt64
        public var firstSeen: String
        public var lastSeen: String
        /// Newest first.
        public var occurrences: [Occurrence]
    }

    public let maxSignatures: Int
    public let maxOccurrences: Int
    private let state = Mutex<[String: Signature]>([:])

    public init(maxSignatures: Int = 200, maxOccurrences: Int = 10) {
        self.maxSignatures = maxSignatures
        self.maxOccurrences = maxOccurrences
    }

    public func record(_ event: NotificationEvent, time: Date = Date()) {
        let n = event.pointer.pointee
        let kind = n.kind.string
        let key = n.key.string
        let id = kind + "\u{1F}" + key
        let stamp = Self.format(time)
        let traceID = withUnsafeBytes(of: n.trace_id) { bytes in
            bytes.allSatisfy { $0 == 0 } ? nil : bytes.map { String(format: "%02x", $0) }.joined()
        }
        let occurrence = Occurrence(time: stamp, traceId: traceID, event: event.json)
        let service = n.attributes.string("service.name") ?? ""
        state.withLock { signatures in
            if var known = signatures[id] {
                known.count += max(1, n.count)
                known.lastSeen = stamp
                known.summary = n.summary.string
                known.occurrences.insert(occurrence, at: 0)
                if known.occurrences.count > maxOccurrences { known.occurrences.removeLast() }
                signatures[id] = known
                return
            }
            if signatures.count >= maxSignatures, let oldest = signatures.min(by: { $0.value.lastSeen < $1.value.lastSeen })?.key {
                signatures[oldest] = nil
            }
            signatures[id] = Signature(kind: kind, key: key, service: service, summary: n.summary.string, count: max(1, n.count),
                                       firstSeen: stamp, lastSeen: stamp, occurrences: [occurrence])
        }
    }

    /// Signatures, the most recently seen first; only `service`'s when given.
    public func signatures(service: String? = nil) -> [Signature] {
        state.withLock { Array($0.values) }
            .filter { service == nil || $0.service == service }
            .sorted { $0.lastSeen > $1.lastSeen }
    }

    private static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}
