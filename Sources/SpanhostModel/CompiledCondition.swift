import CSpanhost

/// A condition compiled by the host's expression engine (the one plugins use), freed with this
/// object. `run` may be called from any thread at once.
public final class CompiledCondition: @unchecked Sendable {
    // Unchecked because the compiled form is a C pointer: it is written only by
    // `sh_expr_compile`, before this object exists, and `sh_expr_run` reads it without changing
    // it (per-run state lives on the caller's stack), so sharing it between threads is safe.
    private let expr: OpaquePointer

    /// Compiles `text` for `context` (SPANHOST_CONTEXT_*); the error says what and at which column.
    public init(_ text: String, context: Int32) throws(CompileError) {
        var message = [CChar](repeating: 0, count: 256)
        guard let expr = sh_expr_compile(text, text.utf8.count, UInt32(SPANHOST_EXPR_CONDITION), UInt32(context),
                                         &message, message.count) else {
            throw CompileError(message: String(nulTerminated: message))
        }
        self.expr = expr
    }

    deinit { sh_expr_free(expr) }

    /// 1: the condition holds, 0: it does not, negative: it failed to run.
    public func run(_ target: inout spanhost_expr_target) -> Int32 { sh_expr_run(expr, &target, nil) }

    /// Runs on one span of a batch.
    public func holds(span: UnsafeMutablePointer<spanhost_span>?, resource: UnsafeMutablePointer<spanhost_resource>?,
                      scope: UnsafeMutablePointer<spanhost_scope>?, batch: UnsafeMutablePointer<spanhost_batch>? = nil) -> Bool {
        var target = spanhost_expr_target(span: span, resource: resource, scope: scope, batch: batch)
        return run(&target) > 0
    }

    public struct CompileError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}

extension spanhost_expr_target {
    /// What an expression runs on: one span (or, with `span` nil, one resource) in its context.
    public init(span: UnsafeMutablePointer<spanhost_span>?, resource: UnsafeMutablePointer<spanhost_resource>?,
                scope: UnsafeMutablePointer<spanhost_scope>?, batch: UnsafeMutablePointer<spanhost_batch>? = nil) {
        self.init(struct_size: UInt32(MemoryLayout<spanhost_expr_target>.size), batch: batch, resource: resource, scope: scope,
                  span: span, event: nil, cache: nil)
    }
}
