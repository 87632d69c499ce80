import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostModel

/// The Jaeger agent's UDP ports: each datagram is one `emitBatch` message (compact protocol on
/// thrift_compact, binary on thrift_binary). Datagrams are decoded and run through the pipelines
/// on the receiver's own worker threads, at most `queue_size` waiting; UDP has no answer, so
/// what cannot be taken (queue full, memory limit, a refusing pipeline, bad bytes) is counted
/// at /status and logged, never held.
public final class JaegerAgentReceiver: SourceReceiver {
    public let id: ComponentID
    public let settings: [JaegerAgentSettings]
    public let counters: ReceiverCounters
    private let sink: SourceSink
    private let admission: Admission
    private let logger: Logger
    private let workers: [NIOThreadPool]
    private let waiting: [NIOLockedValueBox<Int>]
    private let stopped = NIOLockedValueBox(false)

    public var source: SourceSettings { .jaegerAgent(settings) }

    /// Binds every configured port, not reading yet.
    public static func bind(id: ComponentID, settings: [JaegerAgentSettings], counters: ReceiverCounters,
                            group: any EventLoopGroup, admission: Admission,
                            sink: SourceSink) async throws -> JaegerAgentReceiver {
        var channels: [any Channel] = []
        let receiver = JaegerAgentReceiver(id: id, settings: settings, counters: counters, admission: admission, sink: sink)
        do {
            for (index, agent) in settings.enumerated() {
                var bootstrap = DatagramBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    // A reload that changes these settings binds the new socket beside the old one.
                    .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
                    .channelOption(.autoRead, value: false)
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: agent.maxPacketSize))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(DatagramReader(receiver: receiver, index: index))
                        }
                    }
                if let size = agent.socketBufferSize {
                    bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(size))
                }
                do {
                    channels.append(try await bootstrap.bind(host: agent.endpoint.host, port: agent.endpoint.port).get())
                } catch {
                    throw ConfigError("receivers.\(id).protocols.\(agent.protocolName).endpoint",
                                      "cannot bind UDP \(agent.endpoint): \(error)")
                }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        receiver.attach(channels)
        return receiver
    }

    /// The bound channels, set once by `bind` before the receiver is handed out.
    private let attached = NIOLockedValueBox<[any Channel]>([])

    private init(id: ComponentID, settings: [JaegerAgentSettings], counters: ReceiverCounters,
                 admission: Admission, sink: SourceSink) {
        self.id = id
        self.settings = settings
        self.counters = counters
        self.admission = admission
        self.sink = sink
        var logger = Logger(label: "spanhost.receiver.jaeger")
        logger[metadataKey: "receiver"] = "\(id)"
        self.logger = logger
        workers = settings.map { NIOThreadPool(numberOfThreads: $0.workers) }
        waiting = settings.map { _ in NIOLockedValueBox(0) }
    }

    private func attach(_ channels: [any Channel]) { attached.withLockedValue { $0 = channels } }

    /// The port each protocol is bound to (0 in the config picks a free one).
    public var localPorts: [Int] { attached.withLockedValue { $0 }.map { $0.localAddress?.port ?? 0 } }

    public func start() {
        for pool in workers { pool.start() }
        for channel in attached.withLockedValue({ $0 }) { channel.setOption(.autoRead, value: true).whenSuccess { channel.read() } }
    }

    public func stop() {
        guard !stopped.withLockedValue({ let was = $0; $0 = true; return was }) else { return }
        for channel in attached.withLockedValue({ $0 }) { try? channel.close().wait() }
        for pool in workers { try? pool.syncShutdownGracefully() }
    }

    /// One datagram from protocol `index`: queued for a worker, or counted as refused.
    fileprivate func take(_ bytes: ByteBuffer, index: Int, loop: any EventLoop) {
        let agent = settings[index]
        let admitted = waiting[index].withLockedValue { count in
            guard count < agent.queueSize else { return false }
            count += 1
            return true
        }
        guard admitted else {
            counters.add(refusedRequests: 1)
            logger.warning("datagram dropped: \(agent.queueSize) are waiting for the pipelines (queue_size)")
            return
        }
        let waiting = self.waiting[index]
        let counters = self.counters
        workers[index].runIfActive(eventLoop: loop) { [self] in
            defer { waiting.withLockedValue { $0 -= 1 } }
            run(bytes, agent: agent)
        }.whenFailure { _ in
            waiting.withLockedValue { $0 -= 1 }
            counters.add(refusedRequests: 1)
        }
    }

    private func run(_ bytes: ByteBuffer, agent: JaegerAgentSettings) {
        if let reason = admission.refusal() {
            counters.add(refusedRequests: 1)
            logger.warning("datagram dropped: \(reason)")
            return
        }
        let batch: SpanBatch
        do throws(DecodeError) {
            batch = try bytes.withUnsafeReadableBytes { raw throws(DecodeError) in
                try SpanBatch.decode(raw, format: .jaegerThrift(agent.form == .compact ? .agentCompact : .agentBinary),
                                     gzip: false, limit: agent.maxPacketSize)
            }
        } catch {
            counters.add(rejectedRequests: 1)
            logger.warning("datagram rejected on \(agent.protocolName): \(error.description)")
            return
        }
        let spans = batch.spanCount
        switch sink(batch) {
        case .accepted(let rejected, _):
            counters.add(acceptedSpans: spans - rejected, droppedSpans: rejected)
        case .refused(_, let message), .rejected(let message):
            // A UDP client cannot be asked to send again: the spans are lost, and counted.
            counters.add(droppedSpans: spans)
            logger.warning("\(spans) spans from UDP dropped: \(message)")
        }
    }
}

/// Hands each datagram its channel reads to the receiver.
private final class DatagramReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let receiver: JaegerAgentReceiver
    let index: Int

    init(receiver: JaegerAgentReceiver, index: Int) {
        self.receiver = receiver
        self.index = index
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receiver.take(Self.unwrapInboundIn(data).data, index: index, loop: context.eventLoop)
    }
}
