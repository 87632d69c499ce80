import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOHTTP1
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostReceivers
import Synchronization

/// The running receivers: HTTP listeners by endpoint and sources (Kafka consumers, UDP
/// sockets) by id, all handing batches to whichever generation is current. A reload changes
/// them in two steps, like a generation: `prepare` builds everything the new config needs beside
/// what runs (new endpoints bound, new sources made but not taking data) and `commit` or
/// `abort` then applies or discards it.
final class ReceiverRegistry: Sendable {
    /// What an endpoint serves: the receiver of the current config, replaced when a reload
    /// commits. The server asks it for each connection's limits and each request's answer.
    final class HandlerSlot: HTTPService {
        private let receiver: Mutex<HTTPSpanReceiver>
        init(_ receiver: HTTPSpanReceiver) { self.receiver = Mutex(receiver) }
        var current: HTTPSpanReceiver {
            get { receiver.withLock { $0 } }
            set { receiver.withLock { $0 = newValue } }
        }

        var maxBodyBytes: Int { current.maxBodyBytes }
        var connectionLimits: ConnectionLimits { current.connectionLimits }
        var tls: NIOSSLContext? { current.tls }
        func refusal() -> String? { current.refusal() }
        func answerBeforeBody(_ head: HTTPRequestHead) -> HTTPResponse? { current.answerBeforeBody(head) }
        func errorResponse(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
            current.errorResponse(head, status, message)
        }
        func handle(_ request: HTTPRequest, on loop: any EventLoop) -> EventLoopFuture<HTTPResponse> { current.handle(request, on: loop) }
    }

    /// One bound endpoint: its server, which asks the slot for the handler of each request.
    struct Listener: Sendable {
        let slot: HandlerSlot
        let server: HTTPServer
    }

    /// What a reload would change, built and not yet applied.
    struct Change {
        /// The handler each endpoint of the new config will serve with.
        var handlers: [Endpoint: HTTPSpanReceiver] = [:]
        /// Endpoints bound for this change (closed again by `abort`).
        var bound: [Endpoint: Listener] = [:]
        /// Sources whose settings are new or changed, made and not taking data.
        var sources: [any SourceReceiver] = []
        /// The receivers with a source the new config has.
        var wantedSources: Set<ComponentID> = []
    }

    private let group: MultiThreadedEventLoopGroup
    private let pool: NIOThreadPool
    private let current: CurrentGeneration
    private let logger: Logger
    /// Sockets a supervisor bound for us, by endpoint: each listener on one serves a duplicate,
    /// so the supervisor's copy keeps the port when a listener closes or the worker dies.
    private let inherited: [Endpoint: CInt]
    /// False from shutdown on: receivers answer 503.
    let accepting = AcceptingFlag()

    /// What runs now, and the counters of every receiver seen since start.
    private struct Running {
        var listeners: [Endpoint: Listener] = [:]
        var sources: [ComponentID: any SourceReceiver] = [:]
        var counters: [ComponentID: ReceiverCounters] = [:]
    }
    private let running = Mutex(Running())

    init(group: MultiThreadedEventLoopGroup, pool: NIOThreadPool, current: CurrentGeneration, inherited: [Endpoint: CInt],
         logger: Logger) {
        self.inherited = inherited
        self.group = group
        self.pool = pool
        self.current = current
        self.logger = logger
    }

    /// Counters of every receiver seen since start, by id.
    var counterSnapshot: [(id: ComponentID, counters: ReceiverCounters)] {
        running.withLock { $0.counters.map { ($0.key, $0.value) } }.sorted { $0.id.description < $1.id.description }
    }

    /// Builds what `config` needs: handlers for every endpoint (new endpoints are bound and
    /// answer 503 until the generation that routes them is current), and the sources whose
    /// settings changed. Nothing that runs changes. Binds on the event loops and sets Kafka up
    /// on the thread pool, never on the concurrency pool.
    func prepare(_ config: ServiceConfig) async throws -> Change {
        var change = Change()
        do {
            for warning in try ReceiverSettings.exposureWarnings(in: config) { logger.warning("\(warning)") }
            // Certificates and token files are read now, so a reload takes renewed ones.
            let security = try ServerSecurity.load(for: config)
            for (id, settings) in try ReceiverSettings.used(in: config).sorted(by: { $0.key.description < $1.key.description }) {
                if let source = settings.source {
                    change.wantedSources.insert(id)
                    if running.withLock({ $0.sources[id]?.source }) != source {
                        change.sources.append(try await makeSource(id: id, settings: source, memoryLimit: config.memoryLimitBytes))
                    }
                }
                guard let endpoint = settings.endpoint,
                      let handler = makeHandler(id: id, settings: settings, security: security[endpoint] ?? .none,
                                                memoryLimit: config.memoryLimitBytes)
                else { continue }
                change.handlers[endpoint] = handler
                guard running.withLock({ $0.listeners[endpoint] }) == nil else { continue }
                let slot = HandlerSlot(handler)
                let binding: HTTPServer.Binding = inherited[endpoint].map { .socket(dup($0)) } ?? .tcp(host: endpoint.host, port: endpoint.port)
                let server = try await HTTPServer.start(binding, service: slot, group: group)
                change.bound[endpoint] = Listener(slot: slot, server: server)
                logger.info("receiver listening", metadata: ["receiver": "\(id)", "endpoint": "\(endpoint.host):\(server.localPort)",
                                                            "tls": "\(handler.security.tls != nil)", "auth": "\(handler.security.authenticator != nil)"])
            }
        } catch {
            await abort(change)
            throw error
        }
        return change
    }

    /// Discards a prepared change: closes what it bound, stops what it created.
    func abort(_ change: Change) async {
        for (endpoint, listener) in change.bound {
            await listener.server.close()
            logger.info("receiver closed", metadata: ["endpoint": "\(endpoint)"])
        }
        await stop(change.sources)
    }

    /// Stops sources on the thread pool: a Kafka consumer's stop waits for its thread.
    private func stop(_ sources: [any SourceReceiver]) async {
        guard !sources.isEmpty else { return }
        try? await pool.runIfActive {
            for source in sources { source.stop() }
        }
    }

    /// Applies a prepared change: every listener serves with its new handler, new sources
    /// start and replaced or removed ones stop, endpoints the config dropped close.
    func commit(_ change: Change) async {
        let (closing, retiring): ([Listener], [any SourceReceiver]) = running.withLock { running in
            for (endpoint, listener) in change.bound { running.listeners[endpoint] = listener }
            for (endpoint, handler) in change.handlers { running.listeners[endpoint]?.slot.current = handler }
            let closing = running.listeners.filter { change.handlers[$0.key] == nil }
            for endpoint in closing.keys { running.listeners.removeValue(forKey: endpoint) }
            let replaced = Set(change.sources.map(\.id))
            let retiring = running.sources.filter { !change.wantedSources.contains($0.key) || replaced.contains($0.key) }
            for id in retiring.keys { running.sources.removeValue(forKey: id) }
            return (Array(closing.values), Array(retiring.values))
        }
        await stop(retiring)
        for source in retiring { logger.info("receiver stopped", metadata: ["receiver": "\(source.id)"]) }
        for source in change.sources {
            source.start()
            running.withLock { $0.sources[source.id] = source }
            logger.info("receiver taking data", metadata: ["receiver": "\(source.id)", "source": "\(source.source)"])
        }
        for listener in closing {
            await listener.server.close()
            logger.info("receiver closed", metadata: ["endpoint": "\(listener.slot.current.endpoint)"])
        }
    }

    /// Stops taking data: HTTP receivers answer 503 and sources stop (Kafka consumers commit
    /// what they delivered). Listeners stay open until `close`, so clients get an answer. Blocking.
    func stopAccepting() {
        accepting.value = false
        for source in running.withLock({ Array($0.sources.values) }) { source.stop() }
    }

    /// Closes every listener.
    func close() async {
        for listener in running.withLock({ running in defer { running.listeners.removeAll() }; return Array(running.listeners.values) }) {
            await listener.server.close()
        }
    }

    private func counters(for id: ComponentID) -> ReceiverCounters {
        running.withLock { running in
            if let existing = running.counters[id] { return existing }
            let made = ReceiverCounters()
            running.counters[id] = made
            return made
        }
    }

    /// The factory of HTTP receivers: settings in, a receiver feeding the current generation out.
    private func makeHandler(id: ComponentID, settings: ReceiverSettings, security: ServerSecurity,
                             memoryLimit limit: Int?) -> HTTPSpanReceiver? {
        let counters = counters(for: id)
        let admission = Admission(accepting: accepting, memoryLimit: limit)
        let consumer = GenerationConsumer(current: current)
        func receiver(_ wire: any SpanWire, endpoint: Endpoint, maxBodyBytes: Int, requestTimeout: Duration,
                      connections: HTTPConnectionSettings) -> HTTPSpanReceiver {
            HTTPSpanReceiver(id: id, wire: wire, endpoint: endpoint, maxBodyBytes: maxBodyBytes, requestTimeout: requestTimeout,
                             connections: connections, counters: counters, security: security, admission: admission,
                             consumer: consumer, pool: pool)
        }
        switch settings {
        case .otlp(let s):
            return receiver(OTLPWire(tracesPath: s.tracesPath), endpoint: s.endpoint, maxBodyBytes: s.maxRequestBodySize,
                            requestTimeout: s.requestTimeout, connections: s.connections)
        case .zipkin(let s):
            return receiver(SpanPostWire.zipkin, endpoint: s.endpoint, maxBodyBytes: s.maxRequestBodySize,
                            requestTimeout: s.requestTimeout, connections: s.connections)
        case .jaeger(let s):
            return s.thriftHTTP.map {
                receiver(SpanPostWire.jaeger, endpoint: $0.endpoint, maxBodyBytes: $0.maxRequestBodySize,
                         requestTimeout: $0.requestTimeout, connections: $0.connections)
            }
        case .kafka, .nop: return nil
        }
    }

    /// The factory of sources: settings in, a source made (not started) feeding the current
    /// generation out. A Kafka consumer is made on the thread pool (its setup blocks).
    private func makeSource(id: ComponentID, settings: SourceSettings, memoryLimit limit: Int?) async throws -> any SourceReceiver {
        let sink = SourceSink(id: id, consumer: GenerationConsumer(current: current))
        switch settings {
        case .kafka(let kafka):
            let counters = counters(for: id)
            return try await pool.runIfActive { try KafkaReceiver(id: id, settings: kafka, counters: counters, sink: sink) }
        case .jaegerAgent(let agents):
            return try await JaegerAgentReceiver.bind(id: id, settings: agents, counters: counters(for: id), group: group,
                                                      admission: Admission(accepting: accepting, memoryLimit: limit), sink: sink)
        }
    }
}

/// The current generation as receivers see it: where a batch runs, and running it there.
struct GenerationConsumer: BatchConsumer {
    let current: CurrentGeneration

    func placement(from receiver: ComponentID, bodyBytes: Int, compressed: Bool) -> BatchPlacement {
        current.placement(from: receiver, bodyBytes: bodyBytes, compressed: compressed)
    }

    func consume(_ batch: SpanBatch, from receiver: ComponentID, placement: BatchPlacement) -> ConsumeOutcome? {
        current.consume(batch, from: receiver, placement: placement)
    }
}
