import CSpanhost
import SpanhostConfig

/// A rule's `where:` conditions, compiled once by the host's expression engine (the one plugins
/// use): a span counts for the rule when any of them holds. Immutable once built; the engine
/// runs a compiled condition from any thread.
final class SpanConditions: @unchecked Sendable {
    private let expressions: [OpaquePointer]

    /// Compiles every rule's conditions and frees them: the config error names the rule, the
    /// item and the column. Run when a config is loaded, before rules are built from it.
    static func check(_ rules: [RuleConfig]) throws(ConfigError) {
        for rule in rules {
            for (i, text) in rule.whereConditions.enumerated() {
                var err = [CChar](repeating: 0, count: 256)
                guard let expr = sh_expr_compile(text, text.utf8.count, UInt32(SPANHOST_EXPR_CONDITION),
                                                 UInt32(SPANHOST_CONTEXT_SPAN), &err, err.count) else {
                    throw ConfigError("rules.\(rule.id).where.\(i)", "\(String(cString: err)) in '\(text)'")
                }
                sh_expr_free(expr)
            }
        }
    }

    /// nil when the rule has no conditions. Conditions that do not compile (`check` refuses
    /// such configs first) are left out.
    init?(_ texts: [String]) {
        guard !texts.isEmpty else { return nil }
        var err = [CChar](repeating: 0, count: 256)
        expressions = texts.compactMap { text in
            sh_expr_compile(text, text.utf8.count, UInt32(SPANHOST_EXPR_CONDITION), UInt32(SPANHOST_CONTEXT_SPAN), &err, err.count)
        }
    }

    deinit { expressions.forEach { sh_expr_free($0) } }

    /// Whether any condition holds for the span; one that fails to run does not.
    func hold(span: UnsafeMutablePointer<spanhost_span>, resource: UnsafeMutablePointer<spanhost_resource>?,
              scope: UnsafeMutablePointer<spanhost_scope>?) -> Bool {
        var target = spanhost_expr_target(struct_size: UInt32(MemoryLayout<spanhost_expr_target>.size), batch: nil,
                                          resource: resource, scope: scope, span: span, event: nil, cache: nil)
        return expressions.contains { sh_expr_run($0, &target, nil) > 0 }
    }
}
