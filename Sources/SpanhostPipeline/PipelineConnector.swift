import CSpanhost
import Foundation
import SpanhostConfig
import SpanhostModel

/// A `forward` or `routing` connector: where a pipeline's batch goes after its processors,
/// besides its exporters. The pipelines it feeds list it under `receivers:`; the config was
/// checked for cycles, so a batch only ever flows downstream.
final class PipelineConnector: Sendable {
    let id: ComponentID
    private enum Kind: Sendable {
        case forward([Pipeline])
        case routing(routes: [Route], defaults: [Pipeline], propagateErrors: Bool)
    }
    private struct Route: Sendable {
        var context: RoutingSettings.Context
        /// nil for a request-context route.
        var condition: CompiledCondition?
        var request: RoutingSettings.RequestCondition?
        var pipelines: [Pipeline]
    }
    private let kind: Kind

    /// `fed`: the pipelines that list this connector under `receivers:`, by id.
    init(_ config: ConnectorConfig, fed: [String: Pipeline]) throws(ConfigError) {
        id = config.id
        switch config.kind {
        case .routing(let settings):
            var routes: [Route] = []
            for (index, route) in settings.routes.enumerated() {
                var compiled: CompiledCondition?
                if route.request == nil {
                    do {
                        compiled = try CompiledCondition(route.condition, context: route.context == .span ? SPANHOST_CONTEXT_SPAN : SPANHOST_CONTEXT_RESOURCE)
                    } catch {
                        throw ConfigError("connectors.\(config.id).table.\(index).condition", "\(error) in '\(route.condition)'")
                    }
                }
                routes.append(Route(context: route.context, condition: compiled, request: route.request,
                                    pipelines: route.pipelines.compactMap { fed[$0] }))
            }
            kind = .routing(routes: routes, defaults: settings.defaultPipelines.compactMap { fed[$0] },
                            propagateErrors: settings.propagateErrors)
        default:
            kind = .forward(fed.values.sorted { $0.id < $1.id })
        }
    }

    /// No plugin on the way blocks: a batch may run through on an event loop.
    var neverBlocks: Bool {
        switch kind {
        case .forward(let pipelines): return pipelines.allSatisfy(\.neverBlocks)
        case .routing(let routes, let defaults, _): return (routes.flatMap(\.pipelines) + defaults).allSatisfy(\.neverBlocks)
        }
    }

    /// Hands the batch (read-only: exporters may share it) on; each pipeline that changes
    /// batches works on its own copy.
    func consume(_ batch: SpanBatch) -> ConsumeOutcome {
        switch kind {
        case .forward(let pipelines):
            return Self.hand(batch, to: pipelines, original: false)
        case .routing(let routes, let defaults, let propagate):
            return route(batch, routes: routes, defaults: defaults, propagate: propagate)
        }
    }

    /// Each span goes to the first route that takes it: its resource's (resource context),
    /// its own (span context) or its request's (request context) condition holds.
    private func route(_ batch: SpanBatch, routes: [Route], defaults: [Pipeline], propagate: Bool) -> ConsumeOutcome {
        let count = batch.spanCount
        var choice = [Int](repeating: -1, count: count)  // route index per span, -1: default
        var failed: String?
        for (r, route) in routes.enumerated() {
            if let request = route.request {
                guard Self.holds(request, in: batch) else { continue }
                for i in choice.indices where choice[i] < 0 { choice[i] = r }
                continue
            }
            var index = 0
            var resourceVerdict: (UnsafeMutablePointer<spanhost_resource_spans>, Bool)?
            batch.forEachSpan { rs, ss, span in
                defer { index += 1 }
                guard choice[index] < 0 else { return }
                let holds: Bool
                if route.context == .resource {
                    if let (seen, verdict) = resourceVerdict, seen == rs {
                        holds = verdict
                    } else {
                        var target = spanhost_expr_target(span: nil, resource: rs.pointee.resource, scope: nil)
                        let result = route.condition?.run(&target) ?? 1
                        if result < 0 && failed == nil { failed = "route \(r) of \(id) failed to run" }
                        holds = result > 0
                        resourceVerdict = (rs, holds)
                    }
                } else {
                    var target = spanhost_expr_target(span: span, resource: rs.pointee.resource, scope: ss.pointee.scope)
                    let result = route.condition?.run(&target) ?? 1
                    if result < 0 && failed == nil { failed = "route \(r) of \(id) failed to run" }
                    holds = result > 0
                }
                if holds { choice[index] = r }
            }
        }
        if let failed, propagate { return .rejected(message: failed) }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        for (r, part) in batch.split(by: choice) {
            let pipelines = r < 0 ? defaults : routes[r].pipelines
            guard !pipelines.isEmpty else { continue }  // no default: what no route takes is not sent on
            guard let part else {
                outcome = Generation.merge(outcome, .refused(retryAfterSeconds: 1, message: "out of memory routing a batch in \(id)"))
                continue
            }
            outcome = Generation.merge(outcome, Self.hand(part, to: pipelines, original: part !== batch))
        }
        return outcome
    }

    /// `request["key"] == "value"`: any of the header's values (joined with ";" by the
    /// receiver) is the value; `!=`: none is.
    private static func holds(_ condition: RoutingSettings.RequestCondition, in batch: SpanBatch) -> Bool {
        let values = batch.clientMetadata("metadata." + condition.header.lowercased())?.split(separator: ";").map(String.init) ?? []
        return values.contains(condition.value) == condition.equal
    }

    /// `original`: the batch is this call's own (a copy made for a route), so one pipeline that
    /// changes batches may take it; else it is shared with the upstream pipeline's exporters.
    private static func hand(_ batch: SpanBatch, to pipelines: [Pipeline], original: Bool) -> ConsumeOutcome {
        let changes = pipelines.map { $0.changesBatches }
        let takesBatch = original ? Generation.plan(changes) : changes.map { !$0 }
        var outcome = ConsumeOutcome.accepted(rejectedSpans: 0, message: nil)
        for (pipeline, shared) in zip(pipelines, takesBatch) {
            guard let own = shared ? batch : batch.clone() else {
                outcome = Generation.merge(outcome, .refused(retryAfterSeconds: 1, message: "out of memory copying a batch for pipeline \(pipeline.id)"))
                continue
            }
            outcome = Generation.merge(outcome, pipeline.consume(own))
        }
        return outcome
    }
}
