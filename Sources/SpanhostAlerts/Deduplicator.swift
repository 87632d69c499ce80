import Foundation
import SpanhostModel

/// Turns many occurrences of one event into few notifications.
///
/// The first occurrence of a key (an error signature) opens a group. After `groupWait` the group
/// is reported once, with the number of occurrences so far as its count. For `cooldown` after
/// that, occurrences are only counted; they are reported together `repeatWait` after the first
/// of them at the latest (or when the cooldown ends, if sooner), and a new cooldown starts; the
/// group closes after a cooldown with none. So a burst of 10,000 identical errors is one
/// notification with count 10,000, and a repeat waits at most `repeatWait`.
///
/// Every report describes its own occurrences: its text, attributes and trace id are those of
/// one of them (rebuilt at most once a second), with up to ten recent trace ids and the first
/// and last times. Not thread-safe: the rule engine holds its lock.
struct Deduplicator {
    private struct Group {
        var event: NotificationEvent
        var pending: UInt64
        var until: ContinuousClock.Instant
        /// Of the occurrences not yet reported: newest first, at most ten.
        var traces: [[UInt8]] = []
        var first: Date?
        var last: Date?
        /// Whether the event itself has gone out (later reports are cooldown reports).
        var reported = false
        /// One of the occurrences not yet reported, as its own event, and when it was built.
        var latest: NotificationEvent?
        var latestBuilt: ContinuousClock.Instant?

        mutating func note(traceID: [UInt8]?, time: Date) {
            if let traceID, traceID.contains(where: { $0 != 0 }) {
                traces.removeAll { $0 == traceID }
                traces.insert(traceID, at: 0)
                if traces.count > 10 { traces.removeLast() }
            }
            if first == nil { first = time }
            last = time
        }

        /// What to send for the occurrences pending now.
        mutating func take() -> NotificationEvent? {
            defer {
                pending = 0
                traces = []
                first = nil
                last = nil
                reported = true
                latest = nil
            }
            guard reported, let first, let last else { return event.counted(pending) }
            if let latest { return latest.report(count: pending, traceIDs: traces, first: first, last: last, ownTrace: true) }
            return event.report(count: pending, traceIDs: traces, first: first, last: last)
        }
    }

    let groupWait: Duration
    let cooldown: Duration
    let repeatWait: Duration
    /// Beyond this many open keys, new keys are refused (counted by the caller).
    let maxKeys: Int
    private var groups: [String: Group] = [:]

    /// `repeatWait` nil: repeats wait for the end of the cooldown.
    init(groupWait: Duration, cooldown: Duration, repeatWait: Duration? = nil, maxKeys: Int = 10_000) {
        self.groupWait = groupWait
        self.cooldown = cooldown
        self.repeatWait = min(repeatWait ?? cooldown, cooldown)
        self.maxKeys = maxKeys
    }

    var openKeys: Int { groups.count }

    /// Counts one occurrence of `key`; `make` builds the event when the key is new. Returns an
    /// event to send now (only when group_wait is zero), and false when the key was refused.
    mutating func occur(_ key: String, now: ContinuousClock.Instant, traceID: [UInt8]? = nil, time: Date = Date(),
                        make: () -> NotificationEvent?) -> (send: NotificationEvent?, accepted: Bool) {
        if groups[key] != nil {
            groups[key]!.pending += 1
            if groups[key]!.reported {
                groups[key]!.note(traceID: traceID, time: time)
                // The first repeat since the last report: it goes out within repeatWait.
                if groups[key]!.pending == 1 { groups[key]!.until = min(groups[key]!.until, now + repeatWait) }
                if groups[key]!.latestBuilt.map({ now - $0 >= .seconds(1) }) ?? true, let event = make() {
                    groups[key]!.latest = event
                    groups[key]!.latestBuilt = now
                }
            }
            return (nil, true)
        }
        guard groups.count < maxKeys, let event = make() else { return (nil, false) }
        if groupWait == .zero {
            groups[key] = Group(event: event, pending: 0, until: now + cooldown, reported: true)
            return (event, true)
        }
        groups[key] = Group(event: event, pending: 1, until: now + groupWait)
        return (nil, true)
    }

    /// Reports every group with occurrences not yet reported, and forgets all groups (the
    /// rules stop: a reload or shutdown).
    mutating func flush() -> [NotificationEvent] {
        defer { groups.removeAll() }
        return groups.keys.compactMap { key in groups[key]!.pending > 0 ? groups[key]!.take() : nil }
    }

    /// Reports the groups whose wait or cooldown has ended.
    mutating func due(now: ContinuousClock.Instant) -> [NotificationEvent] {
        var out: [NotificationEvent] = []
        for (key, group) in groups where now >= group.until {
            if group.pending == 0 {
                groups[key] = nil
                continue
            }
            if let event = groups[key]!.take() { out.append(event) }
            groups[key]!.until = now + cooldown
        }
        return out
    }
}
