import CRdKafka
import Foundation
import Logging
import SpanhostConfig
import SpanhostModel
import Synchronization

/// Consumes OTLP messages from Kafka topics as a member of a consumer group. An offset is
/// stored (and committed by librdkafka's periodic commit) only after the pipelines have taken
/// the message, so a crash re-delivers instead of losing. A message that cannot be decoded is
/// counted, logged with topic/partition/offset and skipped. While the pipelines refuse (503
/// for HTTP clients), the partitions are paused and the same message is offered again, while
/// the consumer keeps polling so the group's rebalances are served; if the held message's
/// partition is taken away meanwhile, the message is dropped unstored and its new owner reads it.
public final class KafkaReceiver: SourceReceiver {
    public let id: ComponentID
    public let settings: KafkaReceiverSettings
    public let counters: ReceiverCounters
    private let sink: SourceSink
    private let handle: KafkaHandle
    private var consumer: OpaquePointer { handle.pointer }
    private let rebalancer: Rebalancer
    private let logger: Logger
    private let stopping = Atomic(false)
    private let started = Atomic(false)
    /// Signalled when the consumer thread ends.
    private let done = DispatchSemaphore(value: 0)

    /// Connects (lazily, as librdkafka does) and subscribes; call `start` to consume.
    public init(id: ComponentID, settings: KafkaReceiverSettings, counters: ReceiverCounters, sink: SourceSink) throws {
        self.id = id
        self.settings = settings
        self.counters = counters
        self.sink = sink
        var logger = Logger(label: "spanhost.receiver.kafka")
        logger[metadataKey: "receiver"] = "\(id)"
        self.logger = logger
        let conf = rd_kafka_conf_new()
        var err = [CChar](repeating: 0, count: 512)
        func set(_ key: String, _ value: String, _ path: String) throws {
            guard rd_kafka_conf_set(conf, key, value, &err, err.count) == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                throw ConfigError(path, String(nulTerminated: err))
            }
        }
        let path = "receivers.\(id)"
        try set("bootstrap.servers", settings.brokers, "\(path).brokers")
        try set("group.id", settings.groupID, "\(path).group_id")
        try set("auto.offset.reset", settings.initialOffset, "\(path).initial_offset")
        try set("enable.auto.offset.store", "false", path)
        let groupKeys = Dictionary(uniqueKeysWithValues: KafkaReceiverSettings.groupKeys.map { ($1, $0) })
        for (key, value) in settings.groupProperties where settings.properties[key] == nil {
            try set(key, value, "\(path).\(groupKeys[key] ?? key)")
        }
        for (key, value) in settings.properties.sorted(by: { $0.key < $1.key }) { try set(key, value, "\(path).properties.\(key)") }
        let rebalancer = Rebalancer(counters: counters, logger: logger)
        self.rebalancer = rebalancer
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(rebalancer).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let opaque else { return }
            Unmanaged<Rebalancer>.fromOpaque(opaque).takeUnretainedValue().rebalance(rk, err, partitions)
        }
        guard let rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &err, err.count) else {
            rd_kafka_conf_destroy(conf)
            throw ConfigError(path, "cannot create the consumer: \(String(nulTerminated: err))")
        }
        rd_kafka_poll_set_consumer(rk)
        let topics = rd_kafka_topic_partition_list_new(Int32(settings.topics.count))
        for topic in settings.topics { rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA) }
        let rc = rd_kafka_subscribe(rk, topics)
        rd_kafka_topic_partition_list_destroy(topics)
        guard rc == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(rk)
            throw ConfigError("\(path).topics", "cannot subscribe: \(String(cString: rd_kafka_err2str(rc)))")
        }
        handle = KafkaHandle(rk)
    }

    public func start() {
        guard !started.exchange(true, ordering: .sequentiallyConsistent) else { return }
        let thread = Thread { [self] in
            run()
            done.signal()
        }
        thread.name = "kafka receiver \(id)"
        thread.start()
    }

    public var source: SourceSettings { .kafka(settings) }

    /// Stops consuming, commits what was stored and leaves the group, waiting at most
    /// `timeout` for the brokers (an unreachable cluster must not hold a shutdown).
    public func stop() {
        let timeout: TimeInterval = 5
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        if started.load(ordering: .sequentiallyConsistent) { done.wait() }
        let closed = DispatchSemaphore(value: 0)
        let handle = self.handle
        Thread.detachNewThread {
            rd_kafka_consumer_close(handle.pointer)
            rd_kafka_destroy(handle.pointer)
            closed.signal()
        }
        if closed.wait(timeout: .now() + timeout) == .timedOut {
            logger.warning("kafka consumer did not close within \(timeout)s; offsets stored since the last commit will be delivered again")
        }
    }

    private var isStopping: Bool { stopping.load(ordering: .relaxed) }

    private func run() {
        while !isStopping {
            guard let message = rd_kafka_consumer_poll(consumer, 100) else { continue }
            defer { rd_kafka_message_destroy(message) }
            let m = message.pointee
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    logger.warning("consumer error: \(String(cString: rd_kafka_err2str(m.err)))")
                }
                continue
            }
            let topic = String(cString: rd_kafka_topic_name(m.rkt))
            let batch: SpanBatch
            do {
                batch = try SpanBatch.decode(UnsafeRawBufferPointer(start: m.payload, count: m.len), format: settings.encoding.inputFormat,
                                             gzip: false, limit: Int.max)
            } catch {
                counters.add(rejectedRequests: 1)
                logger.error("message skipped: cannot decode", metadata: [
                    "topic": "\(topic)", "partition": "\(m.partition)", "offset": "\(m.offset)", "error": "\(error)"])
                store(message)
                continue
            }
            deliver(batch, message: message)
        }
    }

    /// Offers the batch until the pipelines take it (or refuse it for good), then stores the
    /// offset. While they refuse (full queues, memory limit), the assigned partitions are paused
    /// so librdkafka stops fetching into memory, and the consumer keeps polling between offers so
    /// rebalances are served. Returns without storing if the held message's partition is revoked.
    private func deliver(_ batch: SpanBatch, message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let spans = batch.spanCount
        let held = TopicPartition(topic: String(cString: rd_kafka_topic_name(message.pointee.rkt)), partition: message.pointee.partition)
        var paused = false
        /// Partitions read past while holding, by the first offset returned: rewound there.
        var rewound: [TopicPartition: Int64] = [:]
        defer {
            if paused {
                resumeAssigned()
                logger.info("partitions resumed")
            }
        }
        rebalancer.clearRevoked()
        while !isStopping {
            switch sink(batch) {
            case .accepted(let rejected, _):
                counters.add(acceptedSpans: spans - rejected, droppedSpans: rejected)
                store(message)
                return
            case .rejected(let reason):
                counters.add(rejectedRequests: 1)
                logger.error("message dropped: the pipelines refused it permanently", metadata: ["reason": "\(reason)"])
                store(message)
                return
            case .refused(let seconds, let reason):
                counters.add(refusedRequests: 1)
                if !paused {
                    paused = true
                    counters.add(pauses: 1)
                    logger.warning("partitions paused: the pipelines refuse", metadata: ["reason": "\(reason)"])
                }
                let retryAt = ContinuousClock.now + .seconds(min(max(seconds, 1), 5))
                repeat {
                    pauseAssigned()  // partitions assigned during the hold are paused too
                    pollWhileHolding(&rewound)
                    let revoked = rebalancer.revoked
                    for partition in revoked { rewound[partition] = nil }
                    if revoked.contains(held) {
                        counters.add(handedOver: 1)
                        logger.info("held message given up unstored: its partition was revoked, and its next owner reads it", metadata: [
                            "topic": "\(held.topic)", "partition": "\(held.partition)", "offset": "\(message.pointee.offset)"])
                        return
                    }
                } while ContinuousClock.now < retryAt && !isStopping
            }
        }
    }

    /// One short poll while a message is held: serves rebalance callbacks. A message it returns
    /// (fetched before the pause took effect, or from a partition just assigned) is not
    /// delivered: its partition is rewound to it, to be read again once resumed.
    private func pollWhileHolding(_ rewound: inout [TopicPartition: Int64]) {
        guard let message = rd_kafka_consumer_poll(consumer, 100) else { return }
        defer { rd_kafka_message_destroy(message) }
        let m = message.pointee
        guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR, let topic = m.rkt else { return }
        let key = TopicPartition(topic: String(cString: rd_kafka_topic_name(topic)), partition: m.partition)
        if let earlier = rewound[key], earlier <= m.offset { return }
        rewound[key] = m.offset
        let list = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_topic_partition_list_add(list, key.topic, key.partition)?.pointee.offset = m.offset
        if let error = rd_kafka_seek_partitions(consumer, list, 1000) {
            logger.warning("cannot rewind a partition read while holding; its messages may be skipped until the next rebalance",
                           metadata: ["error": "\(String(cString: rd_kafka_error_string(error)))"])
            rd_kafka_error_destroy(error)
        }
    }

    private func pauseAssigned() {
        var assigned: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(consumer, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR, let assigned else { return }
        rd_kafka_pause_partitions(consumer, assigned)
        rd_kafka_topic_partition_list_destroy(assigned)
    }

    /// Resumes what is assigned now: partitions revoked during the hold are not ours to resume.
    private func resumeAssigned() {
        var assigned: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(consumer, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR, let assigned else { return }
        rd_kafka_resume_partitions(consumer, assigned)
        rd_kafka_topic_partition_list_destroy(assigned)
    }

    private func store(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let list = rd_kafka_topic_partition_list_new(1)
        let entry = rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(message.pointee.rkt), message.pointee.partition)
        entry?.pointee.offset = message.pointee.offset + 1
        rd_kafka_offsets_store(consumer, list)
        rd_kafka_topic_partition_list_destroy(list)
    }
}

/// Follows the group's assignments. When partitions are taken away, the offsets of what the
/// pipelines already took are committed at once, so the next owner starts right after them
/// instead of at the last periodic commit (which would deliver those messages twice).
/// Called on the consumer's thread (librdkafka serves the callback inside a poll), so its lock
/// is never contended; it is there because the receiver that owns it is shared.
final class Rebalancer: Sendable {
    let counters: ReceiverCounters
    let logger: Logger
    private struct Seen {
        /// Partitions revoked since the consumer last cleared this (while holding a message).
        var revoked: Set<TopicPartition> = []
        var rebalances = 0
    }
    private let seen = Mutex(Seen())

    var revoked: Set<TopicPartition> { seen.withLock { $0.revoked } }
    func clearRevoked() { seen.withLock { $0.revoked.removeAll() } }

    init(counters: ReceiverCounters, logger: Logger) {
        self.counters = counters
        self.logger = logger
    }

    private static func check(_ error: OpaquePointer?) {
        if let error { rd_kafka_error_destroy(error) }
    }

    func rebalance(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let count = Int(partitions?.pointee.cnt ?? 0)
        defer {
            let rebalances = seen.withLock { $0.rebalances += 1; return $0.rebalances }
            let member = rd_kafka_memberid(rk)
            counters.setGroup(memberID: member.map { String(cString: $0) } ?? "", rebalances: rebalances, protocol: cooperative ? "cooperative" : "eager")
            if let member { rd_kafka_mem_free(rk, member) }
        }
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative { Self.check(rd_kafka_incremental_assign(rk, partitions)) } else { rd_kafka_assign(rk, partitions) }
            // A partition paused during an earlier hold stays paused in librdkafka across a new
            // assignment; start it fetching (a hold in progress pauses it again after this poll).
            if let partitions { rd_kafka_resume_partitions(rk, partitions) }
            counters.changeAssignment(by: count)
            logger.info("partitions assigned", metadata: ["partitions": "\(count)"])
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Asynchronous: a slow coordinator must not hold the consumer thread (or a shutdown).
            let rc = rd_kafka_commit(rk, nil, 1)
            if rc != RD_KAFKA_RESP_ERR_NO_ERROR && rc != RD_KAFKA_RESP_ERR__NO_OFFSET {
                logger.warning("commit before giving up partitions failed; the next owner may see some messages again",
                               metadata: ["error": "\(String(cString: rd_kafka_err2str(rc)))"])
            }
            noteRevoked(partitions)
            if cooperative { Self.check(rd_kafka_incremental_unassign(rk, partitions)) } else { rd_kafka_assign(rk, nil) }
            counters.changeAssignment(by: -count)
            logger.info("partitions revoked", metadata: ["partitions": "\(count)"])
        default:
            logger.warning("rebalance error: \(String(cString: rd_kafka_err2str(err)))")
            noteRevoked(partitions)
            if cooperative { Self.check(rd_kafka_incremental_unassign(rk, partitions)) } else { rd_kafka_assign(rk, nil) }
            counters.changeAssignment(by: -count)
        }
    }
}

extension Rebalancer {
    fileprivate func noteRevoked(_ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        guard let list = partitions?.pointee else { return }
        let partitions = (0..<Int(list.cnt)).map { TopicPartition(topic: String(cString: list.elems[$0].topic), partition: list.elems[$0].partition) }
        seen.withLock { $0.revoked.formUnion(partitions) }
    }
}

struct TopicPartition: Hashable, Sendable {
    let topic: String
    let partition: Int32
}

/// A librdkafka consumer (`rd_kafka_t`).
final class KafkaHandle: @unchecked Sendable {
    // Unchecked because it is a C pointer: librdkafka's handle may be used from any thread, and
    // the receiver destroys it once, after its consumer thread ended.
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

extension KafkaReceiverSettings.Encoding {
    /// The decoder for this encoding.
    var inputFormat: SpanBatch.InputFormat {
        switch self {
        case .otlpProto: return .otlpProtobuf
        case .otlpJSON: return .otlpJSON
        case .omegi(let offset): return .omegiJSON(utcOffsetSeconds: offset)
        }
    }
}
