import CSpanhost
import Foundation

/// A `spanhost_notification` the host owns: a deep copy in its own arena, so it can wait in a
/// notifier's queue after the raiser has returned. Notifier plugins read the C struct in place.
public final class NotificationEvent: @unchecked Sendable {
    // Unchecked because the event is C memory: it is built in its own arena before this object
    // exists, and read only afterwards (a changed copy is a new event in a new arena).
    private let arena: UnsafeMutablePointer<spanhost_batch>
    public let pointer: UnsafePointer<spanhost_notification>
    /// When the first occurrence this event stands for reached the host (for delay figures).
    public let firstSeen: ContinuousClock.Instant

    /// Takes over `arena`, which holds the notification at `pointer`.
    private init(arena: UnsafeMutablePointer<spanhost_batch>, pointer: UnsafePointer<spanhost_notification>,
                 firstSeen: ContinuousClock.Instant) {
        self.arena = arena
        self.pointer = pointer
        self.firstSeen = firstSeen
    }

    /// Copies a notification raised by a plugin.
    public convenience init?(copying source: UnsafePointer<spanhost_notification>, firstSeen: ContinuousClock.Instant = .now) {
        guard let arena = sh_batch_new() else { return nil }
        guard let copy = sh_notification_copy(arena, source) else {
            sh_batch_release(arena)
            return nil
        }
        self.init(arena: arena, pointer: UnsafePointer(copy), firstSeen: firstSeen)
    }

    deinit { sh_batch_release(arena) }

    /// A typed attribute value for events built by the host.
    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int64)
        case double(Double)
    }

    /// Builds an event from Swift values (rules raise these), straight into its own arena.
    public convenience init?(kind: String, severity: UInt32, source: String, key: String, summary: String,
                             attributes: [(String, Value)], traceID: [UInt8]? = nil, count: UInt64 = 1,
                             time: Date = Date(), firstSeen: ContinuousClock.Instant = .now) {
        guard let arena = sh_batch_new() else { return nil }
        func view(_ text: String) -> spanhost_str {
            var text = text
            return text.withUTF8 { sh_arena_strdup(arena, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
        guard let n = sh_arena_alloc(arena, MemoryLayout<spanhost_notification>.size)?
            .bindMemory(to: spanhost_notification.self, capacity: 1) else {
            sh_batch_release(arena)
            return nil
        }
        n.initialize(to: spanhost_notification())
        n.pointee.struct_size = UInt32(MemoryLayout<spanhost_notification>.size)
        n.pointee.severity = severity
        n.pointee.kind = view(kind)
        n.pointee.source = view(source)
        n.pointee.key = view(key)
        n.pointee.summary = view(summary)
        n.pointee.count = count
        n.pointee.time_unix_nano = UInt64(max(0, time.timeIntervalSince1970) * 1e9)
        if let traceID, traceID.count == 16 {
            withUnsafeMutableBytes(of: &n.pointee.trace_id) { $0.copyBytes(from: traceID) }
        }
        self.init(arena: arena, pointer: UnsafePointer(n), firstSeen: firstSeen)
        guard adding(attributes) else { return nil }
    }

    /// The same event standing for `count` occurrences (deduplication reports bursts this way).
    public func counted(_ count: UInt64) -> NotificationEvent? {
        var n = pointer.pointee
        n.count = count
        return withExtendedLifetime(self) { NotificationEvent(copying: &n, firstSeen: firstSeen) }
    }

    /// A report of the occurrences counted during a cooldown: the event's text, but the count,
    /// trace id and time of those occurrences (the latest trace), the first and last times, and
    /// up to ten recent trace ids (newest first) as attributes.
    /// `ownTrace`: the event is one of those occurrences, and keeps its own trace id (so its
    /// text and trace agree).
    public func report(count: UInt64, traceIDs: [[UInt8]], first: Date, last: Date, ownTrace: Bool = false) -> NotificationEvent? {
        var n = pointer.pointee
        n.count = count
        n.time_unix_nano = UInt64(max(0, last.timeIntervalSince1970) * 1e9)
        if !ownTrace, let latest = traceIDs.first, latest.count == 16 {
            withUnsafeMutableBytes(of: &n.trace_id) { $0.copyBytes(from: latest) }
        }
        guard let event = withExtendedLifetime(self, { NotificationEvent(copying: &n, firstSeen: firstSeen) }) else { return nil }
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var added: [(String, Value)] = [("first_seen", .string(format.string(from: first))), ("last_seen", .string(format.string(from: last)))]
        if !traceIDs.isEmpty {
            added.append(("recent_trace_ids", .string(traceIDs.prefix(10).map { $0.map { String(format: "%02x", $0) }.joined() }.joined(separator: ","))))
        }
        return event.adding(added) ? event : nil
    }

    /// A copy of this event with `attributes` added (or replaced).
    public func with(_ attributes: [(String, Value)]) -> NotificationEvent? {
        guard let copy = withExtendedLifetime(self, { NotificationEvent(copying: pointer, firstSeen: firstSeen) }) else { return nil }
        return copy.adding(attributes) ? copy : nil
    }

    /// Adds attributes to an event this process has just built (before anyone else sees it).
    /// sh_set_attribute copies key and value into the arena, so views of the Swift strings do.
    private func adding(_ attributes: [(String, Value)]) -> Bool {
        let n = UnsafeMutablePointer(mutating: pointer)
        for (key, value) in attributes {
            var key = key
            let stored: Int32 = key.withUTF8 { k in
                let keyView = spanhost_str(ptr: UnsafeRawPointer(k.baseAddress)?.assumingMemoryBound(to: CChar.self), len: k.count)
                var v = spanhost_value()
                switch value {
                case .string(var s):
                    v.type = UInt32(SPANHOST_VALUE_STRING)
                    return s.withUTF8 { b in
                        v.as.string_value = spanhost_str(ptr: UnsafeRawPointer(b.baseAddress)?.assumingMemoryBound(to: CChar.self), len: b.count)
                        return sh_set_attribute(arena, &n.pointee.attributes, keyView, &v)
                    }
                case .int(let i):
                    v.type = UInt32(SPANHOST_VALUE_INT)
                    v.as.int_value = i
                case .double(let d):
                    v.type = UInt32(SPANHOST_VALUE_DOUBLE)
                    v.as.double_value = d
                }
                return sh_set_attribute(arena, &n.pointee.attributes, keyView, &v)
            }
            if stored != 0 { return false }
        }
        return true
    }

    public var kind: String { pointer.pointee.kind.string }
    public var key: String { pointer.pointee.key.string }
    public var source: String { pointer.pointee.source.string }
    public var count: UInt64 { pointer.pointee.count }

    /// The event as the JSON documented for host->encode_notification.
    public var json: String {
        var buffer = spanhost_buffer()
        guard sh_encode_notification_json(pointer, &buffer) == 0, let data = buffer.data else { return "{}" }
        defer { sh_buffer_free(&buffer) }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: buffer.len), as: UTF8.self)
    }
}
