import CSpanhost
import Foundation
import Synchronization
import Logging
import SpanhostConfig
import SpanhostModel

/// One instance of a plugin, for one configured component. Every call into the plugin goes
/// through `call`, which serializes (unless the plugin is concurrent), counts and maps results.
public final class PluginInstance: @unchecked Sendable {
    // Unchecked because of the plugin's state pointer and the crash context, C memory that Swift
    // cannot check, and the lock-ordered fields beside them. `isolated` is set in init only.
    // `state` and `destroyed` are written by create (in init) and by destroy, which takes
    // `callLock` and waits for the calls in progress; calls read them under `callLock`, or, for
    // a SPANHOST_PLUGIN_CONCURRENT plugin, at once as that flag allows (destroy then still
    // comes after the last call: the host destroys an instance only once no pipeline uses it).
    // The rest is `let`, atomic, or in a Mutex.
    /// A number unique in this process: a component carried over by a reload keeps it.
    public let uid: Int
    public let id: ComponentID
    public let library: PluginLibrary
    public let settings: ConfigValue
    public let counters = Counters()
    /// Levels the plugin sets with `host->gauge_set`.
    public let gauges = Counters()
    private let config: ConfigHandle
    private var state: UnsafeMutableRawPointer?
    private let callLock = NSLock()
    let logger: Logger
    private var destroyed = false
    let guardState: CallGuard
    /// With `isolation: process`: the child process that holds the plugin's state instead.
    private var isolated: IsolatedPlugin?
    /// Whether the watchdog has this instance in view (it lets go of instances with no call).
    let watched = Atomic<Bool>(false)
    /// Set once a data call broke SPANHOST_PLUGIN_NONBLOCKING's promise (see neverBlocks).
    private let demoted = Atomic<Bool>(false)
    /// Who is running, for the crash record written if a call kills the process.
    private let crashContext: UnsafeMutablePointer<sh_crash_context>
    private static let uids = Atomic(0)

    /// Where `host->emit` sends batches (set by the pipeline for processors).
    public var emitHandler: (@Sendable (SpanBatch) -> ConsumeOutcome)? {
        get { targets.withLock { $0.emit } }
        set { targets.withLock { $0.emit = newValue } }
    }
    /// Where `host->raise` sends notifications (set by the pipeline).
    public var raiseHandler: (@Sendable (UnsafePointer<spanhost_notification>) -> Void)? {
        get { targets.withLock { $0.raise } }
        set { targets.withLock { $0.raise = newValue } }
    }
    /// Where `host->release_trace` goes (set by the pipeline for processors whose held spans
    /// it journals); the 16-byte trace id is borrowed for the call.
    public var releaseHandler: (@Sendable (UnsafePointer<UInt8>) -> Void)? {
        get { targets.withLock { $0.release } }
        set { targets.withLock { $0.release = newValue } }
    }
    private struct Targets {
        var emit: (@Sendable (SpanBatch) -> ConsumeOutcome)?
        var raise: (@Sendable (UnsafePointer<spanhost_notification>) -> Void)?
        var release: (@Sendable (UnsafePointer<UInt8>) -> Void)?
    }
    private let targets = Mutex(Targets())

    static let unattributed = Logger(label: "spanhost.plugin")

    /// Creates and starts the instance. On failure the plugin's own message is in the error.
    /// `start: false` only creates the instance (validation): no hook after create but destroy.
    public init(id: ComponentID, library: PluginLibrary, settings: ConfigValue, policy: CallPolicy = CallPolicy(),
                start: Bool = true) throws {
        self.uid = Self.uids.add(1, ordering: .relaxed).newValue
        self.guardState = CallGuard(policy: policy)
        self.id = id
        self.library = library
        self.settings = settings
        self.config = ConfigHandle(settings)
        var logger = Logger(label: "spanhost.plugin")
        logger[metadataKey: "component"] = "\(id)"
        self.logger = logger
        let record = "plugin=\(library.name)\nversion=\(library.version)\nfile=\(library.sourcePath)\nsha256=\(library.sha256)\n"
            + "component=\(id)\n"
        crashContext = .allocate(capacity: 1)
        crashContext.initialize(to: sh_crash_context(text: strdup(record), len: record.utf8.count))

        // A declared schema is checked before any plugin code sees the settings.
        if let problem = Self.schemaProblem(id: id, library: library, settings: settings, hook: "create") {
            destroyed = true  // nothing to destroy: create never ran
            throw problem
        }
        if policy.isolated && start {
            guard library.kind != .processor else {
                throw PluginCreateError(component: "\(id)", hook: "create",
                                        message: "isolation: process is supported on exporters and notifiers, not processors", key: "isolation")
            }
            do {
                isolated = try IsolatedPlugin(library: library, component: id, settings: settings, counters: counters, gauges: gauges, logger: logger)
            } catch {
                destroyed = true
                throw PluginCreateError(component: "\(id)", hook: "create", message: "\(error)", key: nil)
            }
            return
        }
        var newState: UnsafeMutableRawPointer?
        let handle = OpaquePointer(Unmanaged.passUnretained(self).toOpaque())
        let created = call(.create) { _, status in
            library.descriptor.create(config.opaque, handle, &newState, status)
        }
        guard created == .ok else {
            destroyed = true  // nothing to destroy: create failed
            throw PluginCreateError(component: "\(id)", hook: "create", message: created.message, key: nil)
        }
        state = newState
        library.instanceCreated()
        if let problem = Self.unaskedKey(id: id, library: library, config: config, hook: "create") {
            destroy()
            throw problem
        }
        if start, library.descriptor.start != nil {
            let started = call(.start) { state, status in library.descriptor.start(state, status) }
            if started != .ok {
                destroy()
                throw PluginCreateError(component: "\(id)", hook: "start", message: started.message, key: nil)
            }
        }
    }

    /// Checks `settings` with the plugin's side-effect-free `validate` hook (ABI 1.8), as
    /// create would check them, keys never read included. For plugins without the hook,
    /// validation creates and destroys an instance instead.
    public static func validate(id: ComponentID, library: PluginLibrary, settings: ConfigValue) throws(PluginCreateError) {
        if let problem = schemaProblem(id: id, library: library, settings: settings, hook: "validate") { throw problem }
        guard let hook = library.descriptor.validate else { return }
        let config = ConfigHandle(settings)
        var message = [CChar](repeating: 0, count: 1024)
        let code = message.withUnsafeMutableBufferPointer { buffer in
            var status = spanhost_status(struct_size: UInt32(MemoryLayout<spanhost_status>.size), retry_after_ms: 0,
                                         message: buffer.baseAddress, message_cap: buffer.count)
            return hook(config.opaque, &status)
        }
        guard code == SPANHOST_OK else {
            let reason = String(nulTerminated: message)
            throw PluginCreateError(component: "\(id)", hook: "validate", message: reason.isEmpty ? "validate failed (code \(code))" : reason, key: nil)
        }
        if let problem = unaskedKey(id: id, library: library, config: config, hook: "validate") { throw problem }
    }

    /// What the plugin's declared schema refuses in `settings`, before any plugin code runs.
    private static func schemaProblem(id: ComponentID, library: PluginLibrary, settings: ConfigValue, hook: String) -> PluginCreateError? {
        guard let problem = library.schema?.check(settings, hostKeys: library.kind.hostKeys) else { return nil }
        return PluginCreateError(component: "\(id)", hook: hook,
                                 message: library.kind.collectorNote(id: id, key: problem.key) ?? problem.message, key: problem.key)
    }

    /// A key the plugin never read while checking its config (create or validate): a typo, for
    /// plugins without a schema and inside the free-form parts of one (tail_sampling's
    /// policies). So a plugin reads every key it declares.
    private static func unaskedKey(id: ComponentID, library: PluginLibrary, config: ConfigHandle, hook: String) -> PluginCreateError? {
        let (unasked, known) = config.unaskedKeys(ignoring: library.kind.hostKeys)
        guard let first = unasked.first else { return nil }
        return PluginCreateError(component: "\(id)", hook: hook,
                                 message: library.kind.collectorNote(id: id, key: first)
                                     ?? "unknown key; plugin '\(library.name)' reads \(known.joined(separator: ", "))", key: first)
    }

    deinit {
        destroy()
        free(UnsafeMutableRawPointer(mutating: crashContext.pointee.text))
        crashContext.deallocate()
    }

    static func from(_ handle: OpaquePointer?) -> PluginInstance? {
        guard let handle else { return nil }
        return Unmanaged<PluginInstance>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// Processors: transforms the batch in place.
    public func process(_ batch: SpanBatch) -> CallResult {
        call(.process) { state, status in library.descriptor.process(state, batch.pointer, status) }
    }

    /// Calls into this instance's data hook return without waiting: its plugin declares
    /// SPANHOST_PLUGIN_NONBLOCKING, runs in this process (an isolated one is a round trip) and
    /// has kept its word: a call that took longer than `nonBlockingBudget` demotes it.
    public var neverBlocks: Bool { library.isNonBlocking && isolated == nil && !demoted.load(ordering: .relaxed) }

    /// How long one data call of a plugin that declares SPANHOST_PLUGIN_NONBLOCKING may take.
    /// Past it the instance runs on the pipeline pool from then on (logged once, and
    /// `nonblocking: demoted` at /status): it would otherwise stall an event loop and every
    /// other request on it.
    public static let nonBlockingBudget: Duration = .milliseconds(50)

    /// "declared", "demoted", or nil when the plugin does not declare SPANHOST_PLUGIN_NONBLOCKING.
    public var nonBlocking: String? {
        guard library.isNonBlocking, isolated == nil else { return nil }
        return demoted.load(ordering: .relaxed) ? "demoted" : "declared"
    }

    /// Exporters: delivers the (read-only) batch.
    public func export(_ batch: SpanBatch) -> CallResult {
        if let isolated { return call(.export_batch) { _, status in isolated.export(batch, status: status) } }
        return call(.export_batch) { state, status in library.descriptor.export_batch(state, batch.pointer, status) }
    }

    /// Notifiers: delivers one notification.
    public func notify(_ notification: UnsafePointer<spanhost_notification>) -> CallResult {
        if let isolated { return call(.notify) { _, status in isolated.notify(notification, status: status) } }
        return call(.notify) { state, status in library.descriptor.notify(state, notification, status) }
    }

    public func flush() -> CallResult {
        guard library.descriptor.flush != nil, isolated == nil else { return .ok }
        return call(.flush) { state, status in library.descriptor.flush(state, status) }
    }

    /// Frees the plugin's state. Idempotent; no hook is called afterwards.
    public func destroy() {
        // A hung call holds the lock: give up after the call timeout rather than hang too.
        guard callLock.lock(before: guardState.deadline()) else {
            logger.error("instance not destroyed: a call into it is still running")
            return
        }
        defer { callLock.unlock() }
        guard !destroyed else { return }
        destroyed = true
        if let isolated {
            isolated.stop()
            emitHandler = nil
            raiseHandler = nil
            releaseHandler = nil
            return
        }
        let previous = sh_crash_enter(crashContext, Hook.destroy.cName)
        library.descriptor.destroy(state)
        sh_crash_leave(previous)
        state = nil
        library.instanceDestroyed()
        emitHandler = nil
        raiseHandler = nil
        releaseHandler = nil
    }

    /// "healthy", "unhealthy" (a call is hung) or "circuit_open".
    public var health: String { guardState.state }

    private func checkNonBlocking(_ hook: Hook, took: Duration) {
        guard took > Self.nonBlockingBudget, !demoted.exchange(true, ordering: .relaxed) else { return }
        counters.add("nonblocking_demoted", 1)
        logger.warning("plugin declares SPANHOST_PLUGIN_NONBLOCKING but a call took too long; it runs on the pipeline pool from now on",
                       metadata: ["hook": "\(hook)", "took": "\(took)", "budget": "\(Self.nonBlockingBudget)"])
    }

    func reportHung(_ hook: String) {
        counters.add("hung_calls", 1)
        logger.error("plugin call is hung; instance marked unhealthy", metadata: ["hook": "\(hook)", "timeout": "\(guardState.policy.timeout)"])
    }

    /// The plugin's hooks, as logs and crash records name them.
    enum Hook: String {
        case create, start, process, export_batch, notify, flush, destroy

        /// Data hooks fail fast while the instance is hung or its breaker is open, and count
        /// towards the breaker; lifecycle hooks always run.
        var isGuarded: Bool { self == .process || self == .export_batch || self == .notify }

        /// The name for the crash record: a literal's bytes, NUL-terminated and never freed.
        var cName: UnsafePointer<CChar> {
            let literal: StaticString
            switch self {
            case .create: literal = "create"
            case .start: literal = "start"
            case .process: literal = "process"
            case .export_batch: literal = "export_batch"
            case .notify: literal = "notify"
            case .flush: literal = "flush"
            case .destroy: literal = "destroy"
            }
            return UnsafeRawPointer(literal.utf8Start).assumingMemoryBound(to: CChar.self)
        }
    }

    /// The one place that calls plugin hooks.
    private func call(_ hook: Hook, _ body: (UnsafeMutableRawPointer?, UnsafeMutablePointer<spanhost_status>) -> Int32) -> CallResult {
        // Data hooks are guarded: they fail fast while the instance is hung or its breaker is
        // open, and count towards the breaker. Lifecycle hooks always run.
        let guarded = hook.isGuarded
        if guarded, let reason = guardState.refusal() { return .unavailable(message: "\(id) \(reason)") }
        let serialize = !library.isConcurrent
        // Waiting behind a hung call gives up after the call timeout, for every hook.
        if serialize, !callLock.lock(before: guardState.deadline()) {
            return .unavailable(message: "\(id): timed out waiting for a call in progress")
        }
        if destroyed && hook != .create {
            if serialize { callLock.unlock() }
            return .unavailable(message: "instance \(id) has been shut down")
        }
        let token = guardState.begin(hook.rawValue)
        if !watched.exchange(true, ordering: .sequentiallyConsistent) { Watchdog.shared.watch(self) }
        let messageCapacity = 512
        let (code, text, retryAfter) = withUnsafeTemporaryAllocation(of: CChar.self, capacity: messageCapacity) { message in
            message[0] = 0
            message[messageCapacity - 1] = 0
            var status = spanhost_status(struct_size: UInt32(MemoryLayout<spanhost_status>.size), retry_after_ms: 0,
                                         message: message.baseAddress, message_cap: messageCapacity)
            let timed = guarded && neverBlocks
            let started = timed ? ContinuousClock.now : nil
            let previous = sh_crash_enter(crashContext, hook.cName)
            let code = body(state, &status)
            sh_crash_leave(previous)
            if let started { checkNonBlocking(hook, took: .now - started) }
            if serialize { callLock.unlock() }
            message[messageCapacity - 1] = 0
            return (code, message[0] == 0 ? "" : String(cString: message.baseAddress!), status.retry_after_ms)
        }
        let result: CallResult
        switch code {
        case SPANHOST_OK: result = .ok
        case SPANHOST_CONSUMED where library.kind == .processor: result = .consumed
        case SPANHOST_RETRYABLE:
            let after: Duration? = retryAfter > 0 ? .milliseconds(Int64(retryAfter)) : nil
            result = .retryable(retryAfter: after, message: text.isEmpty ? "\(hook) failed (retryable)" : text)
        case SPANHOST_PERMANENT:
            result = .permanent(message: text.isEmpty ? "\(hook) failed" : text)
        default:
            result = .permanent(message: "\(hook) returned unknown result code \(code)" + (text.isEmpty ? "" : ": \(text)"))
        }
        let (recovered, opened) = guardState.end(token, success: guarded ? (result == .ok || result == .consumed) : nil)
        if recovered { logger.warning("hung plugin call returned; instance healthy again", metadata: ["hook": "\(hook)"]) }
        if opened {
            counters.add("circuit_opened", 1)
            logger.error("circuit breaker opened: calls stop for the cool-down",
                         metadata: ["failures": "\(guardState.policy.failureThreshold)", "cool_down": "\(guardState.policy.coolDown)"])
        }
        return result
    }
}
