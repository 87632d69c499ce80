import Foundation
import Logging
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostModel
import SpanhostPipeline
import SpanhostReceivers

/// The running receivers: HTTP listeners by endpoint and sources (Kafka consumers, UDP
/// sockets) by id, all handing batches to whichever generation is current. A reload changes
/// them in two steps, like a generation: `prepare` builds everything the new config needs beside
/// what runs (new endpoints bound, new sources made but not taking data) and `commit` or
/// `abort` then applies or discards it.
final class ReceiverRegistry: @unchecked Sendable {
    /// One bound endpoint; its handler is replaced when a reload commits.
    final class Listener: @unchecked Sendable {
        private let lock = NSLock()
        private var handler: any ReceiverHandler
        var server: HTTPServer?
        init(handler: any ReceiverHandler) { self.handler = handler }
        var current: any ReceiverHandler {
            get { lock.withLock { handler } }
            set { lock.withLock { handler = newValue } }
        }
    }

    /// What a reload would change, built and not yet applied.
    struct Change {
        /// The handler each endpoint of the new config will serve with.
        var handlers: [Endpoint: any ReceiverHandler] = [:]
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
    let accepting = Flag(true)

    private let lock = NSLock()
    private var listeners: [Endpoint: Listener] = [:]
    private var sources: [ComponentID: any SourceReceiver] = [:]
    private var counters: [ComponentID: ReceiverCounters] = [:]

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
        lock.withLock { counters.map { ($0.key, $0.value) } }.sorted { $0.id.description < $1.id.description }
    }

    /// Builds what `config` needs: handlers for every endpoint (new endpoints are bound and
    /// answer 503 until the generation that routes them is current), and the sources whose
    /// settings changed. Nothing that runs changes. Blocking (binds, Kafka setup).
    func prepare(_ config: ServiceConfig) async throws -> Change {
        var change = Change()
        do {
            for warning in try ReceiverSettings.exposureWarnings(in: config) { logger.warning("\(warning)") }
            // Certificates and token files are read now, so a reload takes renewed ones.
            let security = try ServerSecurity.load(for: config)
            for (id, settings) in try ReceiverSettings.used(in: config).sorted(by: { $0.key.description < $1.key.description }) {
                if let source = settings.source {
                    change.wantedSources.insert(id)
                    if lock.withLock({ sources[id]?.source }) != source {
                        change.sources.append(try await makeSource(id: id, settings: source, memoryLimit: config.memoryLimitBytes))
                    }
                }
                guard let endpoint = settings.endpoint,
                      let handler = makeHandler(id: id, settings: settings, security: security[endpoint] ?? .none,
                                                memoryLimit: config.memoryLimitBytes)
                else { continue }
                change.handlers[endpoint] = handler
                guard lock.withLock({ listeners[endpoint] }) == nil else { continue }
                let listener = Listener(handler: handler)
                change.bound[endpoint] = listener
                let pool = self.pool
                let binding: HTTPServer.Binding = inherited[endpoint].map { .socket(dup($0)) } ?? .tcp(host: endpoint.host, port: endpoint.port)
                listener.server = try await HTTPServer.start(
                    binding,
                    maxBodyBytes: { listener.current.maxRequestBodySize },
                    limits: { listener.current.connectionLimits },
                    tls: { listener.current.security.tls }, refusal: { listener.current.refusal() },
                    beforeBody: { listener.current.answerBeforeBody($0) },
                    errorResponse: { listener.current.errorResponse($0, $1, $2) }, group: group
                ) { request, loop in listener.current.handle(request, on: loop, pool: pool) }
                logger.info("receiver listening", metadata: ["receiver": "\(id)", "endpoint": "\(endpoint.host):\(listener.server?.localPort ?? 0)",
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
            await listener.server?.close()
            logger.info("receiver closed", metadata: ["endpoint": "\(endpoint)"])
        }
        for source in change.sources { source.stop() }
    }

    /// Applies a prepared change: every listener serves with its new handler, new sources
    /// start and replaced or removed ones stop, endpoints the config dropped close.
    func commit(_ change: Change) async {
        let (closing, retiring): ([Listener], [any SourceReceiver]) = lock.withLock {
            for (endpoint, listener) in change.bound { listeners[endpoint] = listener }
            for (endpoint, handler) in change.handlers { listeners[endpoint]?.current = handler }
            let closing = listeners.filter { change.handlers[$0.key] == nil }
            for endpoint in closing.keys { listeners.removeValue(forKey: endpoint) }
            let replaced = Set(change.sources.map(\.id))
            let retiring = sources.filter { !change.wantedSources.contains($0.key) || replaced.contains($0.key) }
            for id in retiring.keys { sources.removeValue(forKey: id) }
            return (Array(closing.values), Array(retiring.values))
        }
        for source in retiring {
            source.stop()
            logger.info("receiver stopped", metadata: ["receiver": "\(source.id)"])
        }
        for source in change.sources {
            source.start()
            lock.withLock { sources[source.id] = source }
            logger.info("receiver taking data", metadata: ["receiver": "\(source.id)", "source": "\(source.source)"])
        }
        for listener in closing {
            await listener.server?.close()
            logger.info("receiver closed", metadata: ["endpoint": "\(listener.current.endpoint)"])
        }
    }

    /// Stops taking data: HTTP receivers answer 503 and sources stop (Kafka consumers commit
    /// what they delivered). Listeners stay open until `close`, so clients get an answer. Blocking.
    func stopAccepting() {
        accepting.value = false
        for source in lock.withLock({ Array(sources.values) }) { source.stop() }
    }

    /// Closes every listener.
    func close() async {
        for listener in lock.withLock({ defer { listeners.removeAll() }; return Array(listeners.values) }) {
            await listener.server?.close()
        }
    }

    private func counters(for id: ComponentID) -> ReceiverCounters {
        lock.withLock {
            if let existing = counters[id] { return existing }
            let made = ReceiverCounters()
            counters[id] = made
            return made
        }
    }

    /// Why a receiver must not take data now (shutting down, over the memory limit), or nil.
    private func refusal(memoryLimit limit: Int?) -> @Sendable () -> String? {
        let accepting = self.accepting
        return {
            guard accepting.value else { return "spanhost is shutting down" }
            // Batches and the request bodies being received or decoded, together.
            if let limit, SpanBatch.liveBytes + RequestBodies.inFlightBytes > limit {
                return "memory limit reached: \(SpanBatch.liveBytes >> 20) MiB of spans held and \(RequestBodies.inFlightBytes >> 20) MiB "
                    + "of requests arriving, limit \(limit >> 20) MiB"
            }
            return nil
        }
    }

    /// The factory of HTTP receivers: settings in, a handler feeding the current generation out.
    private func makeHandler(id: ComponentID, settings: ReceiverSettings, security: ServerSecurity,
                             memoryLimit limit: Int?) -> (any ReceiverHandler)? {
        let counters = counters(for: id)
        let current = self.current
        let refusal = refusal(memoryLimit: limit)
        let sink: BatchSink = { batch in current.consume(batch, from: id) }
        let inline = InlineSink(allowed: { current.neverBlocks(from: id) },
                                consume: { batch in current.consumeIfNonBlocking(batch, from: id) })
        switch settings {
        case .otlp(let s): return OTLPHTTPHandler(settings: s, counters: counters, security: security, refusal: refusal, sink: sink, inline: inline)
        case .zipkin(let s): return SpanPostHandler.zipkin(s, counters: counters, security: security, refusal: refusal, sink: sink, inline: inline)
        case .jaeger(let s):
            return s.thriftHTTP.map { SpanPostHandler.jaeger($0, counters: counters, security: security, refusal: refusal, sink: sink, inline: inline) }
        case .kafka, .nop: return nil
        }
    }

    /// The factory of sources: settings in, a source made (not started) feeding the current
    /// generation out. Blocking.
    private func makeSource(id: ComponentID, settings: SourceSettings, memoryLimit limit: Int?) async throws -> any SourceReceiver {
        let current = self.current
        let sink: BatchSink = { batch in current.consume(batch, from: id) }
        switch settings {
        case .kafka(let kafka):
            return try KafkaReceiver(id: id, settings: kafka, counters: counters(for: id), sink: sink)
        case .jaegerAgent(let agents):
            return try await JaegerAgentReceiver.bind(id: id, settings: agents, counters: counters(for: id), group: group,
                                                      refusal: refusal(memoryLimit: limit), sink: sink)
        }
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag: Bool
    init(_ value: Bool) { flag = value }
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}
