import CSpanhost
import Logging
import SpanhostAlerts
import SpanhostConfig
import SpanhostConnectors
import SpanhostModel
import SpanhostPluginHost
import SpanhostQueues
import Synchronization

/// One `service.pipelines` entry: processors in order, then fan-out to every exporter.
public final class Pipeline: Sendable {
    public let id: String
    public let processors: [PluginInstance]
    public let exporters: [ExporterRunner]
    /// `loadbalancing` exporters: each sends every span to one of its backends.
    public let balancers: [LoadBalancer]
    public let notifiers: [NotifierRunner]
    /// Connectors listed under `exporters:`; they see what the exporters get.
    public let connectors: [SpanConnector]
    /// The pipeline's alert rules; also deduplicates events its processors raise.
    public let rules: RuleEngine

    /// Where the pipeline's error events are kept for the admin page's Errors view.
    let errors: ErrorLog
    /// Live taps (admin page) at the points of this pipeline.
    let taps: TapBoard

    /// The rule settings the engine was built from.
    let ruleConfigs: [RuleConfig]
    /// Why this pipeline refuses every batch (a component's plugin is quarantined), or nil.
    public let refusing: String?
    /// Quarantined exporters (with `sending_queue.on_full: drop`) whose share of every batch is
    /// dropped, counted in `droppedForQuarantine`.
    public let dropping: [String]
    /// Spans dropped for `dropping`'s exporters (each exporter counts a batch once).
    public let droppedForQuarantine = Atomic<Int>(0)
    /// Per processor: where the spans it holds are kept on disk (when an exporter of the
    /// pipeline has a persistent queue), or nil.
    public let journals: [HoldJournal?]
    /// Per processor: the counters added to on every batch, by handle (nil past the series limit).
    private let batchCounters: [(received: Counters.Handle?, dropped: Counters.Handle?)]

    /// forward and routing connectors listed under `exporters:`: the pipelines downstream.
    let downstream: [PipelineConnector]

    /// Some processor may change a batch in place (it did not declare SPANHOST_PLUGIN_READONLY):
    /// the pipeline then needs a batch no other pipeline sees.
    public let changesBatches: Bool

    /// Every processor and exporter on the way, downstream pipelines' included, says it never
    /// blocks: a batch may run through on an event loop.
    public var neverBlocks: Bool {
        processors.allSatisfy(\.neverBlocks) && exporters.allSatisfy(\.acceptNeverBlocks)
            && balancers.allSatisfy { $0.backends.allSatisfy(\.acceptNeverBlocks) } && downstream.allSatisfy(\.neverBlocks)
    }

    /// `previous` is this pipeline in the generation being replaced: its rule engine (windows,
    /// firing alerts, cool-downs) carries over when the rules and notifiers are unchanged.
    init(id: String, processors: [PluginInstance], exporters: [ExporterRunner], balancers: [LoadBalancer] = [], notifiers: [NotifierRunner],
         connectors: [SpanConnector] = [], rules: [RuleConfig], previous: Pipeline? = nil, errors: ErrorLog = ErrorLog(), taps: TapBoard = TapBoard(), refusing: String? = nil,
         dropping: [String] = [], journals: [HoldJournal?]? = nil, downstream: [PipelineConnector] = []) {
        self.id = id
        self.downstream = downstream
        self.refusing = refusing
        self.dropping = dropping
        self.processors = processors
        self.journals = journals ?? processors.map { _ in nil }
        self.changesBatches = processors.contains { !$0.library.isReadOnly }
        self.batchCounters = processors.map { ($0.counters.handle("received"), $0.counters.handle("dropped")) }
        self.exporters = exporters
        self.balancers = balancers
        self.notifiers = notifiers
        self.connectors = connectors
        self.ruleConfigs = rules
        self.errors = errors
        self.taps = taps
        let errorFlow = processors.contains { $0.library.raisesTraceEvents }
        if let previous, previous.ruleConfigs == rules, previous.rules.errorFlowInPipeline == errorFlow,
           previous.notifiers.map(ObjectIdentifier.init) == notifiers.map(ObjectIdentifier.init) {
            self.rules = previous.rules
        } else {
            self.rules = RuleEngine(pipeline: id, rules: rules,
                                    errorFlowInPipeline: errorFlow) { event in
                // Events raised for a trace are logged as they occur (notify); the error_span
                // rules' own notifications here.
                if event.pointer.pointee.kind.string == "error_span" { errors.record(event) }
                for notifier in notifiers { notifier.enqueue(event) }
            }
        }
    }

    /// Points each processor's emit and raise at this pipeline. Done when the pipeline's
    /// generation becomes current, so a processor carried over by a reload emits into the new
    /// chain from then on.
    func attachProcessors() {
        for (index, processor) in processors.enumerated() {
            // What a processor emits continues after it in this pipeline; what it emits or
            // releases of the spans it holds leaves its journal once the rest has taken it.
            if let journal = journals[index] {
                processor.emitHandler = { [self] batch in
                    // A processor that never held anything (most) pays nothing per emit.
                    let keys = journal.inUse ? HoldJournal.keys(of: batch) : []
                    let outcome = self.run(batch, from: index + 1)
                    let taken: Bool = if case .refused = outcome { false } else { true }
                    if taken && !keys.isEmpty {
                        journal.emitted(keys)
                        processor.gauges.set(Self.journalGauge, Int64(journal.heldSpans))
                    }
                    return outcome
                }
                processor.releaseHandler = { trace in
                    journal.release(HoldJournal.TraceID(trace))
                    processor.gauges.set(Self.journalGauge, Int64(journal.heldSpans))
                }
            } else {
                processor.emitHandler = { [self] batch in self.run(batch, from: index + 1) }
                processor.releaseHandler = nil
            }
            let standsForTrace = processor.library.raisesTraceEvents
            processor.raiseHandler = { [self] notification in self.notify(notification, standsForTrace: standsForTrace) }
        }
    }

    /// Runs a batch through the whole pipeline. The batch must be this pipeline's own
    /// (processors change it in place).
    public func consume(_ batch: SpanBatch) -> ConsumeOutcome {
        // The client keeps the data and sends it again: until an operator replaces or clears
        // the plugin, nothing here would be processed as configured.
        if let refusing { return .refused(retryAfterSeconds: 5, message: "pipeline \(id) is down: \(refusing)") }
        rules.observe(batch)
        return run(batch, from: 0)
    }

    /// Runs `batch` through the processors from index `first` on, then to the exporters and
    /// downstream connectors.
    ///
    /// Re-entered on purpose: a processor's `host->emit` (see `attachProcessors`) calls this with
    /// the index after its own, on the emitting thread. Inside the processor's `process` hook that
    /// is the pipeline thread, so the emitted spans reach the exporters before `process` returns
    /// and the caller's answer covers them; from the processor's own timer thread (batch,
    /// tail_sampling) it runs there. Nothing here holds a lock across a processor call, so either
    /// is safe; the depth is bounded by the number of processors.
    func run(_ batch: SpanBatch, from first: Int) -> ConsumeOutcome {
        var rejected = 0
        if first < processors.count && changesBatches { batch.forgetProtobufSource() }
        for index in first..<processors.count {
            if taps.isWatching { tap(batch, at: index) }
            let processor = processors[index]
            let received = batch.spanCount
            if let counter = batchCounters[index].received { processor.counters.add(counter, Int64(received)) }
            let journal = journals[index]
            journal?.beginProcess()
            let outcome = processor.process(batch)
            batch.assertStructurallyValid(after: "processor \(processor.id)")
            if let journal {
                // Spans the processor now holds are on disk before the client hears 200.
                let problem = keepHeld(batch, outcome, of: processor, in: journal)
                journal.endProcess()
                if let problem { return .refused(retryAfterSeconds: 1, message: "\(processor.id): \(problem)") }
            }
            switch outcome {
            case .ok:
                let dropped = batch.removeDroppedSpans()
                rejected += dropped
                if let counter = batchCounters[index].dropped { processor.counters.add(counter, Int64(dropped)) }
                if batch.spanCount == 0 { return .accepted(rejectedSpans: rejected, message: filteredMessage(rejected)) }
            case .consumed:
                return .accepted(rejectedSpans: rejected, message: filteredMessage(rejected))
            case .retryable(let after, let message):
                processor.counters.add("refused", Int64(received))
                let seconds = after.map { max(1, Int($0.components.seconds)) } ?? 1
                return .refused(retryAfterSeconds: seconds, message: "\(processor.id): \(message)")
            case .permanent(let message):
                processor.counters.add("failed", Int64(received))
                return .rejected(message: "\(processor.id): \(message)")
            case .unavailable(let message):
                processor.counters.add("refused", Int64(received))
                return .refused(retryAfterSeconds: 1, message: message)
            }
        }
        if taps.isWatching { tap(batch, at: processors.count) }
        // Spans held by processors being flushed at shutdown go into the queues whatever their
        // limits: from there they are delivered, kept on disk or counted as lost.
        let draining = self.draining.load(ordering: .relaxed)
        // Check every refusing queue first so a full one refuses the batch before any other takes it.
        if !draining, let full = exporters.first(where: \.refusesWhenFull)
            ?? balancers.lazy.compactMap({ $0.backends.first(where: \.refusesWhenFull) }).first {
            return .refused(retryAfterSeconds: 1, message: "exporter \(full.id) queue is full")
        }
        for connector in connectors { connector.observe(batch) }
        if !dropping.isEmpty { droppedForQuarantine.add(batch.spanCount * dropping.count, ordering: .relaxed) }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: rejected, message: filteredMessage(rejected))
        for connector in downstream { outcome = Generation.merge(outcome, connector.consume(batch)) }
        for exporter in exporters {
            if let answer = exporter.accept(batch, force: draining) { outcome = Generation.merge(outcome, answer) }
        }
        for balancer in balancers { outcome = Generation.merge(outcome, balancer.accept(batch, force: draining)) }
        return outcome
    }

    /// Hands the batch to the taps at `point` (0: after the receivers, k: after processor k).
    private func tap(_ batch: SpanBatch, at point: Int) {
        for tap in taps.taps(pipeline: id, point: point) { tap.offer(batch) }
    }

    /// Writes what a processor took from `batch` (marked TAKEN, or all of it when it consumed
    /// the batch) to its journal. Returns why it could not, or nil.
    private func keepHeld(_ batch: SpanBatch, _ outcome: CallResult, of processor: PluginInstance, in journal: HoldJournal) -> String? {
        let held: SpanBatch
        let keys: [HoldJournal.SpanKey]
        switch outcome {
        case .consumed:
            held = batch
            keys = HoldJournal.keys(of: batch)
        case .ok:
            keys = HoldJournal.keys(of: batch, flagged: UInt32(SPANHOST_SPAN_TAKEN))
            guard !keys.isEmpty else { return nil }
            guard let taken = batch.copy(flagged: UInt32(SPANHOST_SPAN_TAKEN)) else { return "out of memory copying held spans" }
            held = taken
        default:
            return nil
        }
        do {
            try journal.hold(held, keys: keys)
            processor.gauges.set(Self.journalGauge, Int64(journal.heldSpans))
            return nil
        } catch {
            return "cannot keep held spans on disk: \(error)"
        }
    }

    /// The processor gauge of spans in its hold journal.
    static let journalGauge = "journal_spans"

    /// Set while the pipeline's processors are flushed for a shutdown or reload.
    let draining = Atomic<Bool>(false)

    private func filteredMessage(_ rejected: Int) -> String? {
        rejected > 0 ? "\(rejected) spans dropped by processors of pipeline \(id)" : nil
    }

    /// A processor raised an event: copy it (the raiser keeps its own) and let the rule engine
    /// deduplicate it on its way to the notifiers' queues.
    func notify(_ notification: UnsafePointer<spanhost_notification>, standsForTrace: Bool) {
        guard standsForTrace || !notifiers.isEmpty, let event = NotificationEvent(copying: notification) else { return }
        if standsForTrace { errors.record(event) }
        guard !notifiers.isEmpty else { return }
        rules.raised(event, standsForTrace: standsForTrace)
    }
}
