import CSpanhost
import SpanhostConfig
import SpanhostModel

/// A rule's `where:` conditions, compiled once by the host's expression engine (the one plugins
/// use): a span counts for the rule when any of them holds.
struct SpanConditions: Sendable {
    private let expressions: [CompiledCondition]

    /// Compiles every rule's conditions and frees them: the config error names the rule, the
    /// item and the column. Run when a config is loaded, before rules are built from it.
    static func check(_ rules: [RuleConfig]) throws(ConfigError) {
        for rule in rules {
            for (i, text) in rule.whereConditions.enumerated() {
                do {
                    _ = try CompiledCondition(text, context: SPANHOST_CONTEXT_SPAN)
                } catch {
                    throw ConfigError("rules.\(rule.id).where.\(i)", "\(error) in '\(text)'")
                }
            }
        }
    }

    /// nil when the rule has no conditions. Conditions that do not compile (`check` refuses
    /// such configs first) are left out.
    init?(_ texts: [String]) {
        guard !texts.isEmpty else { return nil }
        expressions = texts.compactMap { try? CompiledCondition($0, context: SPANHOST_CONTEXT_SPAN) }
    }

    /// Whether any condition holds for the span; one that fails to run does not.
    func hold(span: UnsafeMutablePointer<spanhost_span>, resource: UnsafeMutablePointer<spanhost_resource>?,
              scope: UnsafeMutablePointer<spanhost_scope>?) -> Bool {
        // One target for every condition of the span (this runs per span of every batch).
        var target = spanhost_expr_target(span: span, resource: resource, scope: scope)
        return expressions.contains { $0.run(&target) > 0 }
    }
}
