import Foundation
import Synchronization

/// Named figures of one component, shown at /status: counters (added to) or gauges (set).
/// A name may carry labels in Prometheus' form, `requests{status="500"}`.
///
/// Each name is one series with a handle: a name is looked up once (`handle`), after which an
/// add is one relaxed atomic add with no lock, so per-batch counting costs next to nothing.
/// Series live in chunks allocated as names arrive and never move, so a handle stays valid
/// without a lock. At most `maxSeries` names; adds to names past it are counted in
/// `series_over_limit` instead.
public final class Counters: @unchecked Sendable {
    // Unchecked because the cells are atomics in memory allocated here, reached through a raw
    // pointer so a plugin's add by handle takes no lock: chunks are allocated under `lock`,
    // never moved or freed before deinit, and a handle is only given out after its chunk
    // exists. `names` and `handles` are read and written under `lock` only.
    /// A series: its index plus one, so 0 (what the C API returns when full) names none.
    public struct Handle: Sendable, Hashable {
        public let id: UInt32
        fileprivate init(id: UInt32) { self.id = id }
    }

    public static let maxSeries = 4096
    private static let chunkSize = 64
    private let lock = NSLock()
    private var names: [String] = []
    private var handles: [String: Handle] = [:]
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<Atomic<Int64>>?>
    private let overLimit = Atomic<Int64>(0)
    /// How many series exist, published after their cells: what checks a plugin's handle.
    private let series = Atomic<Int>(0)

    public init() {
        chunks = .allocate(capacity: Self.maxSeries / Self.chunkSize)
        chunks.initialize(repeating: nil, count: Self.maxSeries / Self.chunkSize)
    }

    deinit {
        for i in 0..<(Self.maxSeries / Self.chunkSize) {
            guard let chunk = chunks[i] else { continue }
            chunk.deinitialize(count: Self.chunkSize)
            chunk.deallocate()
        }
        chunks.deallocate()
    }

    /// The series `name`, made on first use; nil when `maxSeries` names exist already.
    public func handle(_ name: String) -> Handle? {
        lock.withLock {
            if let known = handles[name] { return known }
            let index = names.count
            guard index < Self.maxSeries else { return nil }
            if index % Self.chunkSize == 0 {
                let chunk = UnsafeMutablePointer<Atomic<Int64>>.allocate(capacity: Self.chunkSize)
                for i in 0..<Self.chunkSize { (chunk + i).initialize(to: Atomic(0)) }
                chunks[index / Self.chunkSize] = chunk
            }
            names.append(name)
            let handle = Handle(id: UInt32(index + 1))
            handles[name] = handle
            series.store(names.count, ordering: .releasing)
            return handle
        }
    }

    /// The series a plugin's handle names, or nil for 0 or a number never handed out.
    public func handle(id: UInt32) -> Handle? {
        id > 0 && Int(id) <= series.load(ordering: .acquiring) ? Handle(id: id) : nil
    }

    private func cell(_ handle: Handle) -> UnsafeMutablePointer<Atomic<Int64>> {
        let index = Int(handle.id) - 1
        return chunks[index / Self.chunkSize]! + index % Self.chunkSize
    }

    public func add(_ handle: Handle, _ delta: Int64) {
        cell(handle).pointee.wrappingAdd(delta, ordering: .relaxed)
    }

    public func set(_ handle: Handle, _ value: Int64) {
        cell(handle).pointee.store(value, ordering: .relaxed)
    }

    public func add(_ name: String, _ delta: Int64) {
        guard let handle = handle(name) else {
            overLimit.wrappingAdd(1, ordering: .relaxed)
            return
        }
        add(handle, delta)
    }

    public func set(_ name: String, _ value: Int64) {
        guard let handle = handle(name) else {
            overLimit.wrappingAdd(1, ordering: .relaxed)
            return
        }
        set(handle, value)
    }

    public var snapshot: [String: Int64] {
        let known = lock.withLock { names }
        var values: [String: Int64] = [:]
        for (index, name) in known.enumerated() {
            values[name] = cell(Handle(id: UInt32(index + 1))).pointee.load(ordering: .relaxed)
        }
        let over = overLimit.load(ordering: .relaxed)
        if over > 0 { values["series_over_limit"] = over }
        return values
    }
}
