import CSpanhost
import Foundation
import SpanhostConfig

/// Why a persistent queue could not be opened or written.
public struct StorageError: Error, CustomStringConvertible {
    public var description: String
    /// The disk (or the process's file size limit) is full: retry once space returns.
    public var noSpace: Bool
    init(_ description: String, noSpace: Bool = false) {
        self.description = description
        self.noSpace = noSpace
    }
    static func errno(_ what: String, _ path: String) -> StorageError {
        StorageError("\(what) \(path): \(String(cString: strerror(Foundation.errno)))")
    }
}

/// Append-only segment files holding one exporter's queued batches.
///
/// A record is a 24-byte header (magic, type, sequence number, payload length, CRC-32 of the
/// payload) and its payload. DATA records hold a batch as an OTLP protobuf request; ACK
/// records say a sequence number was delivered (or dead-lettered). Segments roll over at
/// `segmentBytes` and are deleted oldest first once every DATA record in them is acknowledged,
/// so an ACK is never deleted before the record it acknowledges. On open, every segment is
/// read back: a record with a bad header or checksum (a crash mid-write) ends its segment, and
/// the damaged tail is cut off and counted. Not thread-safe: DiskQueue holds the lock.
///
/// A write that fails or lands short (a full disk) is undone: the file is cut back to where
/// the record began, so no later record is read from the wrong place; if it cannot be cut, the
/// log moves on to a new segment and recovery cuts the half record. An ACK that cannot be
/// written is kept in memory and written before the next record. A current segment whose
/// records are all acknowledged is rolled (and so deleted) once it holds `reclaimBytes`, or
/// at once when the disk is full, so space comes back as batches are delivered.
final class SegmentLog {
    struct Location: Sendable {
        var seq: UInt64
        var segment: UInt64
        var offset: Int
        var length: Int
    }

    struct Recovery {
        var pending: [Location] = []
        var cutBytes = 0
        var cutSegments = 0
    }

    static let magic: UInt32 = 0x3151_4853  // "SHQ1"
    static let headerSize = 24
    static let data: UInt8 = 1, ack: UInt8 = 2

    let directory: String
    let segmentBytes: Int
    let fsync: FsyncPolicy
    private var fd: Int32 = -1
    private var current: UInt64 = 0
    private var currentSize = 0
    private(set) var nextSeq: UInt64 = 1
    private var dirty = false
    /// Rolled segments written since the last fsync (interval policy), still open.
    private var rolledUnsynced: [Int32] = []
    /// Unacknowledged DATA records per segment, for every segment still on disk.
    private var live: [UInt64: Int] = [:]
    private(set) var bytesOnDisk = 0
    private var sizes: [UInt64: Int] = [:]
    /// ACKs not written yet (the disk was full): sequence number -> segment of its DATA record.
    private var unwrittenAcks: [UInt64: UInt64] = [:]
    /// The current segment has a half-written record that could not be cut off.
    private var mustRoll = false
    private var reclaimBytes: Int { min(segmentBytes, 1 << 20) }

    init(directory: String, segmentBytes: Int, fsync: FsyncPolicy) throws {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.fsync = fsync
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    private func path(_ segment: UInt64) -> String { String(format: "%@/%016llu.seg", directory, segment) }

    private func segments() throws -> [UInt64] {
        try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".seg") }
            .compactMap { UInt64($0.dropLast(4)) }
            .sorted()
    }

    /// Reads every segment, cuts damaged tails, and returns the records not yet acknowledged,
    /// oldest first. Then starts a fresh segment for appends.
    func recover() throws -> Recovery {
        var result = Recovery()
        var data: [UInt64: Location] = [:]
        var acked = Set<UInt64>()
        let all = try segments()
        for segment in all {
            let file = path(segment)
            guard let bytes = FileManager.default.contents(atPath: file) else { throw StorageError.errno("cannot read", file) }
            var offset = 0
            bytes.withUnsafeBytes { raw in
                while offset + Self.headerSize <= raw.count {
                    let magic = raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                    let type = raw[offset + 4]
                    let seq = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                    let length = Int(raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt32.self))
                    let crc = raw.loadUnaligned(fromByteOffset: offset + 20, as: UInt32.self)
                    guard magic == Self.magic, type == Self.data || type == Self.ack,
                          offset + Self.headerSize + length <= raw.count,
                          Self.crc32(UnsafeRawBufferPointer(rebasing: raw[(offset + Self.headerSize)..<(offset + Self.headerSize + length)]), seq: seq) == crc
                    else { break }
                    if type == Self.data {
                        data[seq] = Location(seq: seq, segment: segment, offset: offset + Self.headerSize, length: length)
                    } else {
                        acked.insert(seq)
                    }
                    nextSeq = max(nextSeq, seq + 1)
                    offset += Self.headerSize + length
                }
            }
            if offset < bytes.count {
                // A crash mid-write (or damage): keep what checks out, cut the rest.
                guard truncate(file, off_t(offset)) == 0 else { throw StorageError.errno("cannot truncate", file) }
                result.cutBytes += bytes.count - offset
                result.cutSegments += 1
            }
            sizes[segment] = offset
            live[segment] = 0
            current = max(current, segment)
        }
        for (seq, location) in data where !acked.contains(seq) {
            result.pending.append(location)
            live[location.segment, default: 0] += 1
        }
        result.pending.sort { $0.seq < $1.seq }
        bytesOnDisk = sizes.values.reduce(0, +)
        deleteAcknowledgedSegments()
        try roll()
        return result
    }

    /// Starts a new segment file for appends. The old one stays current if the new cannot be made.
    private func roll() throws {
        let next = current + 1
        let file = path(next)
        let newFD = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard newFD >= 0 else { throw StorageError.errno("cannot create", file) }
        if fd >= 0 {
            // The interval policy's timer syncs a rolled segment with the next tick, outside the
            // queue's lock (a segment rolled because all of it was delivered needs no sync).
            let needsSync = dirty && live[current, default: 0] > 0
            switch fsync {
            case .interval where needsSync: rolledUnsynced.append(fd)
            case .always where needsSync:
                _ = Foundation.fsync(fd)
                Foundation.close(fd)
            default: Foundation.close(fd)
            }
        }
        fd = newFD
        current = next
        currentSize = 0
        sizes[current] = 0
        live[current] = 0
        dirty = false
        mustRoll = false
        deleteAcknowledgedSegments()
    }

    /// Appends a DATA record and returns where its payload is. On a failure nothing of the
    /// record is left where a later record could follow it. `payloadCRC` is the payload's
    /// CRC-32 when the caller has it already.
    func append(_ payload: UnsafeRawBufferPointer, payloadCRC: UInt32? = nil) throws -> Location {
        let size = Self.headerSize + payload.count
        if mustRoll || (currentSize > 0 && currentSize + size > segmentBytes) { try roll() }
        writeUnwrittenAcks()
        let seq = nextSeq
        do {
            try write(type: Self.data, seq: seq, payload: payload, payloadCRC: payloadCRC)
        } catch let error as StorageError where error.noSpace && live[current, default: 0] == 0 && currentSize > 0 {
            // Everything in the current segment is delivered: give its space back and try once more.
            try roll()
            try write(type: Self.data, seq: seq, payload: payload, payloadCRC: payloadCRC)
        }
        if fsync == .always {
            do { try fsyncCurrent() } catch {
                undo(to: currentSize - size)
                throw error
            }
        }
        nextSeq += 1
        live[current, default: 0] += 1
        return Location(seq: seq, segment: current, offset: currentSize - payload.count, length: payload.count)
    }

    /// Records that `location` was delivered (or dead-lettered); deletes segments that hold
    /// nothing unacknowledged any more. An ACK that cannot be written now is written later;
    /// until then (or if the process dies first) the batch would be delivered again.
    func acknowledge(_ location: Location) {
        live[location.segment, default: 1] -= 1
        unwrittenAcks[location.seq] = location.segment
        writeUnwrittenAcks()
        if live[current] == 0 && currentSize >= reclaimBytes { try? roll() }
        deleteAcknowledgedSegments()
    }

    /// ACKs not yet on disk (the disk was full).
    var pendingAcks: Int { unwrittenAcks.count }

    private func writeUnwrittenAcks() {
        guard !unwrittenAcks.isEmpty, !mustRoll, fd >= 0 else { return }
        for (seq, segment) in unwrittenAcks.sorted(by: { $0.key < $1.key }) {
            // An ACK for a segment already deleted is not needed.
            if sizes[segment] != nil {
                guard (try? write(type: Self.ack, seq: seq, payload: UnsafeRawBufferPointer(start: nil, count: 0))) != nil else { return }
            }
            unwrittenAcks[seq] = nil
        }
    }

    func read(_ location: Location) throws -> [UInt8] {
        let file = path(location.segment)
        let readFD = open(file, O_RDONLY | O_CLOEXEC)
        guard readFD >= 0 else { throw StorageError.errno("cannot open", file) }
        defer { Foundation.close(readFD) }
        var out = [UInt8](repeating: 0, count: location.length)
        let n = out.withUnsafeMutableBytes { pread(readFD, $0.baseAddress, location.length, off_t(location.offset)) }
        guard n == location.length else { throw StorageError("short read in \(file) at \(location.offset)") }
        return out
    }

    /// fsync if anything was written since the last one.
    func sync() throws {
        writeUnwrittenAcks()
        for old in rolledUnsynced {
            _ = Foundation.fsync(old)
            Foundation.close(old)
        }
        rolledUnsynced = []
        try fsyncCurrent()
    }

    /// For the interval policy's timer: descriptors to fsync (and close) without the queue's
    /// lock, so appends never wait for the disk. What was written before this call is on
    /// disk once they are synced.
    func descriptorsToSync() -> [Int32] {
        writeUnwrittenAcks()
        var result = rolledUnsynced
        rolledUnsynced = []
        if dirty, fd >= 0 {
            let copy = dup(fd)
            if copy >= 0 { result.append(copy) }
            dirty = false
        }
        return result
    }

    private func fsyncCurrent() throws {
        guard dirty, fd >= 0 else { return }
        guard Foundation.fsync(fd) == 0 else { throw StorageError.errno("cannot fsync", path(current)) }
        dirty = false
    }

    func close() {
        try? sync()
        if fd >= 0 {
            if dirty { _ = Foundation.fsync(fd) }
            Foundation.close(fd)
            fd = -1
        }
    }

    private func write(type: UInt8, seq: UInt64, payload: UnsafeRawBufferPointer, payloadCRC: UInt32? = nil) throws {
        let crc = payloadCRC.map { Self.crc32(combining: $0, length: payload.count, seq: seq) } ?? Self.crc32(payload, seq: seq)
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: Self.magic, toByteOffset: 0, as: UInt32.self)
            h[4] = type
            h.storeBytes(of: seq, toByteOffset: 8, as: UInt64.self)
            h.storeBytes(of: UInt32(payload.count), toByteOffset: 16, as: UInt32.self)
            h.storeBytes(of: crc, toByteOffset: 20, as: UInt32.self)
        }
        let expected = Self.headerSize + payload.count
        // One writev: the record lands whole, or is cut off again here (or by recovery after a crash).
        let written = header.withUnsafeBytes { h -> Int in
            var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress), iov_len: h.count),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)]
            return writev(fd, &iov, payload.count > 0 ? 2 : 1)
        }
        guard written == expected else {
            let code = written < 0 ? Foundation.errno : ENOSPC
            undo(to: currentSize)
            let what = written < 0 ? String(cString: strerror(code)) : "short write (\(written) of \(expected) bytes)"
            throw StorageError("cannot write \(path(current)): \(what)", noSpace: code == ENOSPC || code == EDQUOT || code == EFBIG)
        }
        currentSize += written
        sizes[current, default: 0] += written
        bytesOnDisk += written
        dirty = true
    }

    /// Cuts the current segment back to `size` bytes (a record that failed); when that fails
    /// too, the next write starts a new segment and recovery cuts the half record.
    private func undo(to size: Int) {
        if ftruncate(fd, off_t(size)) != 0 { mustRoll = true }
        bytesOnDisk -= currentSize - size
        sizes[current, default: 0] = size
        currentSize = size
    }

    /// Deletes the oldest segments while they are fully acknowledged (never the current one).
    private func deleteAcknowledgedSegments() {
        for segment in live.keys.sorted() {
            guard segment != current, live[segment] == 0 else { return }
            unlink(path(segment))
            bytesOnDisk -= sizes[segment] ?? 0
            live[segment] = nil
            sizes[segment] = nil
        }
    }

    /// The same, from the payload's own CRC-32.
    static func crc32(combining payloadCRC: UInt32, length: Int, seq: UInt64) -> UInt32 {
        var seq = seq
        let crc = withUnsafeBytes(of: &seq) { sh_crc32(0, $0.baseAddress, $0.count) }
        return length > 0 ? sh_crc32_combine(crc, payloadCRC, length) : crc
    }

    /// CRC-32 (zlib's) of the sequence number and the payload.
    static func crc32(_ payload: UnsafeRawBufferPointer, seq: UInt64) -> UInt32 {
        var seq = seq
        var crc = withUnsafeBytes(of: &seq) { sh_crc32(0, $0.baseAddress, $0.count) }
        if payload.count > 0 { crc = sh_crc32(crc, payload.baseAddress, payload.count) }
        return crc
    }
}
