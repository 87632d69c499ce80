import SpanhostModel

/// Turns many occurrences of one event into few notifications.
///
/// The first occurrence of a key opens a group. After `groupWait` the group is reported once,
/// with the number of occurrences so far as its count. For `cooldown` after that, occurrences
/// are only counted; when it ends they are reported together (and a new cooldown starts), or
/// the group closes if there were none. So a burst of 10,000 identical errors is one
/// notification with count 10,000. Not thread-safe: the rule engine holds its lock.
struct Deduplicator {
    private struct Group {
        var event: NotificationEvent
        var pending: UInt64
        var until: ContinuousClock.Instant
    }

    let groupWait: Duration
    let cooldown: Duration
    /// Beyond this many open keys, new keys are refused (counted by the caller).
    let maxKeys: Int
    private var groups: [String: Group] = [:]

    init(groupWait: Duration, cooldown: Duration, maxKeys: Int = 10_000) {
        self.groupWait = groupWait
        self.cooldown = cooldown
        self.maxKeys = maxKeys
    }

    var openKeys: Int { groups.count }

    /// Counts one occurrence of `key`; `make` builds the event when the key is new. Returns an
    /// event to send now (only when group_wait is zero), and false when the key was refused.
    mutating func occur(_ key: String, now: ContinuousClock.Instant,
                        make: () -> NotificationEvent?) -> (send: NotificationEvent?, accepted: Bool) {
        if groups[key] != nil {
            groups[key]!.pending += 1
            return (nil, true)
        }
        guard groups.count < maxKeys, let event = make() else { return (nil, false) }
        if groupWait == .zero {
            groups[key] = Group(event: event, pending: 0, until: now + cooldown)
            return (event, true)
        }
        groups[key] = Group(event: event, pending: 1, until: now + groupWait)
        return (nil, true)
    }

    /// Reports every group with occurrences not yet reported, and forgets all groups (the
    /// rules stop: a reload or shutdown).
    mutating func flush() -> [NotificationEvent] {
        defer { groups.removeAll() }
        return groups.values.filter { $0.pending > 0 }.compactMap { $0.event.counted($0.pending) }
    }

    /// Reports the groups whose wait or cooldown has ended.
    mutating func due(now: ContinuousClock.Instant) -> [NotificationEvent] {
        var out: [NotificationEvent] = []
        for (key, group) in groups where now >= group.until {
            if group.pending == 0 {
                groups[key] = nil
                continue
            }
            if let event = group.event.counted(group.pending) { out.append(event) }
            groups[key]!.pending = 0
            groups[key]!.until = now + cooldown
        }
        return out
    }
}
