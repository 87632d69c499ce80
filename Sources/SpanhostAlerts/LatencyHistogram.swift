/// A log-linear histogram of durations in microseconds, in the manner of HdrHistogram with two
/// significant digits: values below 64 are exact, larger ones fall into buckets 1/32 of their
/// power of two wide (at most about 3% wide). Sparse, since most spans of one key land in a
/// few buckets.
public struct LatencyHistogram: Sendable, Equatable {
    private(set) var buckets: [UInt16: UInt32] = [:]
    public private(set) var count: UInt64 = 0

    public init() {}

    static func index(of micros: UInt64) -> UInt16 {
        if micros < 64 { return UInt16(micros) }
        let msb = 63 - micros.leadingZeroBitCount
        let shift = msb - 5
        return UInt16(64 + (shift - 1) * 32 + Int(micros >> UInt64(shift)) - 32)
    }

    /// The largest value that falls into bucket `index`.
    static func highestValue(of index: UInt16) -> UInt64 {
        if index < 64 { return UInt64(index) }
        let shift = UInt64((Int(index) - 64) / 32 + 1)
        let sub = UInt64((Int(index) - 64) % 32 + 32)
        return ((sub + 1) << shift) - 1
    }

    public mutating func record(micros: UInt64) {
        buckets[Self.index(of: micros), default: 0] += 1
        count += 1
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for (index, n) in other.buckets { buckets[index, default: 0] += n }
        count += other.count
    }

    /// The value at `percentile` (0...100): the highest value of the bucket holding it.
    public func value(atPercentile percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = max(1, UInt64((percentile / 100 * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for index in buckets.keys.sorted() {
            seen += UInt64(buckets[index]!)
            if seen >= rank { return Self.highestValue(of: index) }
        }
        return Self.highestValue(of: buckets.keys.max()!)
    }
}
