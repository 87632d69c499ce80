import CSpanhost
import Foundation
@testable import SpanhostQueues
import SpanhostModel
import XCTest

final class DiskQueueTests: XCTestCase {
    var directory: String!

    override func setUp() {
        directory = NSTemporaryDirectory() + "spanhost-queue-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func batch(_ n: Int) throws -> SpanBatch {
        let json = """
            {"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"\(String(format: "%032x", n + 1))",
            "spanId":"\(String(format: "%016x", n + 1))","name":"op-\(n)"}]}]}]}
            """
        return try SpanBatch.decode(Array(json.utf8), encoding: .json)
    }

    func names(_ item: QueuedBatch) -> String {
        var name = ""
        item.batch.forEachSpan { _, _, span in name = span.pointee.name.string }
        return name
    }

    func testRecordsSurviveAReopenAndAcknowledgedOnesAreNotReplayed() throws {
        let log = try SegmentLog(directory: directory, segmentBytes: 200, fsync: .never)
        _ = try log.recover()
        var locations: [SegmentLog.Location] = []
        for n in 0..<10 {
            var bytes = try XCTUnwrap(batch(n).encode(.protobuf))
            locations.append(try bytes.withUnsafeMutableBytes { try log.append(UnsafeRawBufferPointer($0)) })
        }
        for location in locations.prefix(6) { log.acknowledge(location) }
        let segmentsBefore = try FileManager.default.contentsOfDirectory(atPath: directory).count
        log.close()
        let again = try SegmentLog(directory: directory, segmentBytes: 200, fsync: .never)
        let recovery = try again.recover()
        XCTAssertEqual(recovery.pending.map(\.seq), [7, 8, 9, 10])
        XCTAssertEqual(recovery.cutBytes, 0)
        // Two records fit a 200-byte segment: of five segments, the three holding only
        // acknowledged records were deleted.
        XCTAssertEqual(segmentsBefore, 2)
        let first = try again.read(recovery.pending[0])
        let decoded = try first.withUnsafeBytes { try SpanBatch.decode($0, format: .otlpProtobuf, gzip: false, limit: 1 << 20) }
        XCTAssertEqual(decoded.spanCount, 1)
    }

    func testAFlippedByteEndsItsSegmentAndTheRestReplays() throws {
        let log = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .always)
        _ = try log.recover()
        var locations: [SegmentLog.Location] = []
        for n in 0..<5 {
            let bytes = try XCTUnwrap(batch(n).encode(.protobuf))
            locations.append(try bytes.withUnsafeBytes { try log.append($0) })
        }
        log.close()
        // Damage record 3's payload: records 3, 4 and 5 are cut, 1 and 2 replay.
        let file = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.sorted().first!
        let handle = FileHandle(forUpdatingAtPath: "\(directory!)/\(file)")!
        try handle.seek(toOffset: UInt64(locations[2].offset + 3))
        let original = try handle.read(upToCount: 1)![0]
        try handle.seek(toOffset: UInt64(locations[2].offset + 3))
        try handle.write(contentsOf: Data([original ^ 0xff]))
        try handle.close()
        let again = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never)
        let recovery = try again.recover()
        XCTAssertEqual(recovery.pending.map(\.seq), [1, 2])
        XCTAssertEqual(recovery.cutSegments, 1)
        XCTAssertEqual(recovery.cutBytes, locations[4].offset + locations[4].length - (locations[2].offset - SegmentLog.headerSize))
    }

    func testDiskQueueLimitsCountUndeliveredBytesAndDeadLettersFailures() throws {
        let queue = try DiskQueue.open(directory: directory, limits: QueueLimits(items: 3, bytes: 1 << 20), fsync: .never)
        XCTAssertEqual(queue.offer(try batch(0), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(1), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(2), force: false), .queued)
        XCTAssertEqual(queue.offer(try batch(3), force: false), .full, "three items is the limit")
        XCTAssertTrue(queue.isFull)
        let gate = TakeGate()
        let first = try XCTUnwrap(queue.take(through: gate))
        XCTAssertEqual(names(first), "op-0")
        queue.done(first, .delivered)
        XCTAssertEqual(queue.offer(try batch(3), force: false), .queued, "a delivered batch makes room")
        let second = try XCTUnwrap(queue.take(through: gate))
        queue.done(second, .failed(reason: "rejected: bad data"))
        let third = try XCTUnwrap(queue.take(through: gate))
        queue.release(third)  // back to the front
        XCTAssertEqual(names(try XCTUnwrap(queue.take(through: gate))), "op-2")
        let closed = TakeGate()
        closed.close(at: .now)
        XCTAssertNil(queue.take(through: closed), "a closed gate gets nothing")
        XCTAssertEqual(closed.inHand, 0)
        XCTAssertEqual(names(try XCTUnwrap(queue.take(through: gate))), "op-3")
        let dead = try String(contentsOfFile: "\(directory!)/dead_letter.jsonl", encoding: .utf8)
        let line = try JSONSerialization.jsonObject(with: Data(dead.utf8)) as! [String: Any]
        XCTAssertEqual(line["reason"] as? String, "rejected: bad data")
        XCTAssertEqual(line["spans"] as? Int, 1)
        XCTAssertEqual(queue.stats.deadLettered, 1)
        XCTAssertEqual(gate.inHand, 5, "every batch handed out is counted, released ones too")
    }
}

extension DiskQueueTests {
    func digest(_ text: String) -> ExportAttempts.Digest {
        Array(text.utf8).withUnsafeBytes { ExportAttempts.Digest($0) }
    }

    /// Each process below is an ExportAttempts opened on the same directory, as a restarted
    /// worker opens its queue.
    func testCrashesAreCountedByContentAcrossRecordsAndDeaths() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let poison = digest("poison"), fine = digest("fine")
        let first = ExportAttempts(directory: directory)
        first.recover(countingCrash: true)
        first.taken(7, digest: poison, by: "crashy")
        first.taken(8, digest: fine, by: "file")
        first.returned(8, acknowledged: true)
        first.taken(9, digest: fine, by: "file")
        first.returned(9, acknowledged: false)  // put back: not a crash
        // The process dies while 7 is out.
        let second = ExportAttempts(directory: directory)
        second.recover(countingCrash: true)
        XCTAssertEqual(second.crashes(of: poison), .init(count: 1, plugin: "crashy"))
        XCTAssertNil(second.crashes(of: fine))
        // The client sent the same request again: a new record, the same content; it dies again.
        second.taken(12, digest: poison, by: "crashy")
        let third = ExportAttempts(directory: directory)
        third.recover(countingCrash: true)
        XCTAssertEqual(third.crashes(of: poison), .init(count: 2, plugin: "crashy"))
        // Content delivered after all is poison no more.
        third.taken(15, digest: poison, by: "crashy")
        third.returned(15, acknowledged: true)
        let fourth = ExportAttempts(directory: directory)
        fourth.recover(countingCrash: true)
        XCTAssertNil(fourth.crashes(of: poison))
    }
}

/// A full disk, made real with the kernel's file size limit (RLIMIT_FSIZE): a write that
/// crosses it lands short, the next fails with EFBIG, exactly as on a full file system.
extension DiskQueueTests {
    /// Runs `body` with files limited to `bytes`; SIGXFSZ is ignored so writes fail instead.
    func withFileSizeLimit<T>(_ bytes: Int, _ body: () throws -> T) rethrows -> T {
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: old.rlim_max)
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
        defer {
            setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
            signal(SIGXFSZ, oldHandler)
        }
        return try body()
    }

    func segmentSize(_ log: SegmentLog) throws -> Int {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.sorted()
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory!)/\(files.last!)")
        return (attributes[.size] as! NSNumber).intValue
    }

    func testABatchNothingChangedIsWrittenAsItsRequestCameAndAChangedOneIsEncodedAgain() throws {
        var request = try XCTUnwrap(batch(7).encode(.protobuf))
        request += [0xf8, 0x01, 0x2a]  // field 31, a varint: unknown to the decoder, skipped by it
        let received = try SpanBatch.decode(request, encoding: .protobuf)
        let changed = try SpanBatch.decode(request, encoding: .protobuf)
        changed.forgetProtobufSource()
        let queue = try DiskQueue.open(directory: directory, limits: QueueLimits(items: 10, bytes: 1 << 20), fsync: .never)
        XCTAssertEqual(queue.offer(received, force: false), .queued)
        XCTAssertEqual(queue.offer(changed, force: false), .queued)
        let segment = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.first)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: "\(directory!)/\(segment)"))
        let first = Array(bytes[SegmentLog.headerSize..<(SegmentLog.headerSize + request.count)])
        XCTAssertEqual(first, request)
        let second = Array(bytes[(2 * SegmentLog.headerSize + request.count)...])
        XCTAssertEqual(second, request.dropLast(3).map { $0 })
    }

    func testAShortWriteIsCutBackSoLaterRecordsReadBackWhole() throws {
        let log = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never)
        _ = try log.recover()
        let payloads = try (0..<4).map { try XCTUnwrap(batch($0).encode(.protobuf)) }
        let first = try payloads[0].withUnsafeBytes { try log.append($0) }
        let size = try segmentSize(log)
        // Room for the header and half the payload: the kernel writes that much and stops.
        let sizeAfter = try withFileSizeLimit(size + SegmentLog.headerSize + payloads[1].count / 2) { () -> Int in
            XCTAssertThrowsError(try payloads[1].withUnsafeBytes { try log.append($0) }) { error in
                XCTAssertTrue((error as? StorageError)?.noSpace == true, "\(error)")
            }
            return (try? segmentSize(log)) ?? -1
        }
        XCTAssertEqual(sizeAfter, size, "the half record is cut off")
        // Space is back: the next records follow the first directly and read back whole.
        let later = try payloads[2...].map { p in try p.withUnsafeBytes { try log.append($0) } }
        XCTAssertEqual(later[0].offset, first.offset + first.length + SegmentLog.headerSize)
        log.close()
        let again = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never)
        let recovery = try again.recover()
        XCTAssertEqual(recovery.cutBytes, 0)
        XCTAssertEqual(recovery.pending.map(\.seq), [first.seq] + later.map(\.seq))
        XCTAssertEqual(try recovery.pending.map { try again.read($0) }, [payloads[0], payloads[2], payloads[3]])
    }

    func testAcksThatCannotBeWrittenAreWrittenOnceThereIsRoom() throws {
        let log = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never)
        _ = try log.recover()
        let locations = try (0..<3).map { n in try XCTUnwrap(batch(n).encode(.protobuf)).withUnsafeBytes { try log.append($0) } }
        let size = try segmentSize(log)
        withFileSizeLimit(size) {
            for location in locations { log.acknowledge(location) }
            XCTAssertEqual(log.pendingAcks, 3)
        }
        try log.sync()
        XCTAssertEqual(log.pendingAcks, 0)
        log.close()
        let recovery = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never).recover()
        XCTAssertEqual(recovery.pending.count, 0, "delivered batches are not sent again")
    }

    func testAFullDiskGivesBackADeliveredCurrentSegment() throws {
        let log = try SegmentLog(directory: directory, segmentBytes: 1 << 20, fsync: .never)
        _ = try log.recover()
        let payload = try XCTUnwrap(batch(0).encode(.protobuf))
        let locations = try (0..<20).map { _ in try payload.withUnsafeBytes { try log.append($0) } }
        for location in locations { log.acknowledge(location) }
        let before = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }
        XCTAssertEqual(before.count, 1, "below the reclaim size the current segment stays")
        let location = try withFileSizeLimit(try segmentSize(log)) { try payload.withUnsafeBytes { try log.append($0) } }
        let after = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }
        XCTAssertEqual(after.count, 1)
        XCTAssertNotEqual(after, before, "the delivered segment was deleted for the new record")
        XCTAssertEqual(try log.read(location), payload)
    }

    func testADiskQueueThatCannotWriteSaysSoInsteadOfFull() throws {
        let queue = try DiskQueue.open(directory: directory, limits: QueueLimits(items: 100, bytes: 1 << 20), fsync: .never)
        XCTAssertEqual(queue.offer(try batch(0), force: false), .queued)
        let result = try withFileSizeLimit(Int(queue.stats.bytesOnDisk ?? 0)) { queue.offer(try batch(1), force: false) }
        guard case .notStored(let reason) = result else { return XCTFail("\(result)") }
        XCTAssertTrue(reason.contains("File too large"), reason)
        XCTAssertEqual(queue.stats.writeFailures, 1)
        XCTAssertEqual(queue.offer(try batch(2), force: false), .queued, "writes resume when there is room")
        XCTAssertEqual(queue.depth, 2)
    }
}

extension DiskQueueTests {
    func testADeathOutsideThisQueuesPluginCountsNoCrash() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let content = Array("innocent".utf8).withUnsafeBytes { ExportAttempts.Digest($0) }
        for _ in 0..<3 {
            let attempts = ExportAttempts(directory: directory)
            // Killed, or another exporter crashed, while this batch was out.
            attempts.recover(countingCrash: false)
            XCTAssertNil(attempts.crashes(of: content))
            attempts.taken(3, digest: content, by: "otlphttp")
        }
    }
}
