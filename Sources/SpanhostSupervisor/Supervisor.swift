import CSpanhost
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SpanhostConfig
import SpanhostModel
import SpanhostPluginHost
import SpanhostReceivers
import SpanhostServer
import SpanhostSync

/// `spanhostd` by default: a small process that owns the receivers' listening sockets and the
/// admin endpoint, and runs the server in one worker process (`spanhostd --worker`). When a
/// plugin crashes the worker, the supervisor reads the crash record the worker's signal handler
/// wrote, logs it by plugin, restarts the worker (the first time within 100 ms, then with
/// doubling backoff), and quarantines a plugin image that crashed too often. Requests arriving
/// during the gap are answered 503 with Retry-After by the supervisor (StandInResponder); the
/// admin endpoint answers throughout (`/healthz` 503 "worker restarting", `/status` with the
/// crashes).
public final class Supervisor: Sendable {
    private let config: ServiceConfig
    private let workerArguments: [String]
    private let stateDir: String
    private let quarantineFile: String
    private let crashFile: String
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    /// Proxied admin calls block on the worker's socket: never on the event loop.
    /// Admin calls wait for the worker on these threads. Health, status and metrics (answered in
    /// seconds) have threads of their own, so reloads that wait up to minutes never hold them.
    private let quickPool = NIOThreadPool(numberOfThreads: 2)
    private let slowPool = NIOThreadPool(numberOfThreads: 2)

    /// The crash record file a worker's crash handler appends to (descriptor 3 in the worker).
    private let crashFD: CInt
    private let admin = NIOLockedValueBox<AdminListeners?>(nil)

    private struct State {
        var listeners: [Endpoint: CInt] = [:]
        /// Listeners without TLS: the stand-in answers on these while no worker runs.
        var plainListeners: [CInt] = []
        var standInAnswers = 0
        var workerPID: pid_t = 0
        var workerStarted = ContinuousClock.now
        var workerState = "starting"
        var restarts = 0
        var crashes: [CrashRecord] = []
        var ledger: CrashLedger
        /// The component the last worker crashed in, for the next worker (nil: not in a plugin call).
        var crashedComponent: String?
        var stopping = false
        /// Set to start a worker now instead of waiting out the backoff (reload, quarantine cleared).
        var restartNow = false
    }
    private let state: Guarded<State>

    /// `workerArguments`: what makes `spanhostd --worker` read the same config.
    /// `stateDir`: this instance's own, already checked by `StateDirectory.prepare`.
    public init(config: ServiceConfig, stateDir: String, workerArguments: [String], logger: Logger) throws {
        self.config = config
        self.workerArguments = workerArguments
        self.logger = logger
        self.stateDir = stateDir
        state = Guarded(State(ledger: CrashLedger(limit: config.supervisor.quarantineAfterCrashes,
                                                  window: config.supervisor.quarantineWindow)))
        quarantineFile = "\(stateDir)/quarantine.json"
        crashFile = "\(stateDir)/crash-\(getpid()).log"
        try StateDirectory.prepare(stateDir, key: "service.supervisor.state_dir")
        crashFD = try StateDirectory.createFile(crashFile)
    }

    /// Binds, starts the admin endpoint, and keeps a worker running until `stop`. Returns the
    /// exit code for the process: the last worker's, or 1 if a worker ever crashed (spans its
    /// memory held were lost uncounted).
    public func run() async throws -> Int32 {
        defer {
            close(crashFD)
            unlink(crashFile)
        }
        quickPool.start()
        slowPool.start()
        for (_, settings) in try ReceiverSettings.used(in: config) {
            guard let endpoint = settings.endpoint else { continue }
            var err = [CChar](repeating: 0, count: 256)
            let fd = sh_listen_tcp(endpoint.host, Int32(endpoint.port), 256, &err, err.count)
            guard fd >= 0 else { throw ConfigError("receivers", String(nulTerminated: err)) }
            // Non-blocking, so the stand-in never waits in accept (the worker's event loops
            // set the same on the socket they inherit).
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            state.withLock { s in
                s.listeners[endpoint] = fd
                if settings.security?.tls == nil { s.plainListeners.append(fd) }
            }
        }
        let adminListeners = try await AdminListeners.start(config: config, group: group) { [self] request, loop in
            let quick = request.method == .GET && ["/healthz", "/status", "/metrics"].contains(request.path)
            return (quick ? quickPool : slowPool).runIfActive(eventLoop: loop) { self.answer(request) }
        }
        admin.withLockedValue { $0 = adminListeners }
        logger.info("supervisor listening", metadata: ["admin": "\(config.adminEndpoint)", "admin_socket": "\(config.adminUnixSocket ?? "none")",
                                                      "state_dir": "\(stateDir)"])
        let code = await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: self.superviseLoop()) }
            thread.name = "supervisor"
            thread.start()
        }
        await adminListeners.close()
        try? await group.shutdownGracefully()
        quickPool.shutdownGracefully { _ in }
        slowPool.shutdownGracefully { _ in }
        return code
    }

    /// Graceful stop: the worker gets SIGTERM, drains, and its exit code becomes ours.
    public func stop() {
        state.withLock(wake: .all) { s in
            s.stopping = true
            if s.workerPID > 0 { kill(s.workerPID, SIGTERM) }
        }
    }

    /// SIGHUP: the worker reloads; with no worker running (it failed to start), one starts now.
    /// The admin endpoint's token file is read again here.
    public func reload() {
        do { try admin.withLockedValue({ $0 })?.authenticator?.reload() } catch {
            logger.error("admin.auth: keeping the tokens in use", metadata: ["error": "\(error)"])
        }
        state.withLock(wake: .all) { s in
            if s.workerPID > 0 { kill(s.workerPID, SIGHUP) } else { s.restartNow = true }
        }
    }

    /// A Unix socket path must fit in 108 bytes; a deep state directory falls back to $TMPDIR.
    private var workerAdminSocket: String {
        let preferred = "\(stateDir)/worker-\(getpid()).sock"
        return preferred.utf8.count < 100 ? preferred : "\(NSTemporaryDirectory())spanhost-worker-\(getpid()).sock"
    }

    /// Runs on a thread of its own: start, wait, restart.
    private func superviseLoop() -> Int32 {
        var backoff = RestartBackoff()
        var everHealthy = false
        while true {
            if state.withLock({ s in s.stopping }) { return state.withLock { s in s.crashes.isEmpty } ? 0 : 1 }
            let (pid, since) = spawnWorker()
            guard pid > 0 else {
                logger.critical("cannot start the worker", metadata: ["error": "\(String(cString: strerror(errno)))"])
                return 2
            }
            let exit = ChildProcess.wait(pid)
            state.withLock { s in s.crashedComponent = nil }  // set again by recordCrash if it crashed in a plugin call
            let ranFor = ContinuousClock.now - since
            let (stop, healthyBefore) = state.withLock { s in (s.stopping, s.workerState == "running") }
            everHealthy = everHealthy || healthyBefore
            state.withLock { s in s.workerPID = 0 }
            switch exit {
            case .code(let code) where stop:
                return state.withLock { s in s.crashes.isEmpty } ? code : max(code, 1)
            case .code(let code) where !everHealthy && state.withLock({ s in s.crashes.isEmpty }):
                // The first worker could not start (an invalid config, a port in use): nothing to supervise.
                logger.critical("the worker exited while starting", metadata: ["code": "\(code)"])
                return code
            case .code(let code):
                logger.error("the worker exited by itself; starting another", metadata: ["code": "\(code)"])
                state.withLock { s in s.workerState = "exited \(code); restarting" }
            case .signal(let sig):
                if stop && sig == SIGKILL { return 1 }
                recordCrash(signal: sig)
            }
            let deadline = ContinuousClock.now + backoff.delay(afterRunning: ranFor)
            let standIn = StandInResponder(listeners: state.withLock { s in s.plainListeners })
            standIn.start()
            _ = state.wait(until: deadline) { $0.stopping || $0.restartNow ? true : nil }
            let stopNow: Bool = state.withLock { s in
                s.restartNow = false
                return s.stopping
            }
            standIn.stop()
            state.withLock { s in s.standInAnswers += standIn.answered.load(ordering: .relaxed) }
            if stopNow { return 1 }
            state.withLock { s in s.restarts += 1 }
        }
    }

    private func spawnWorker() -> (pid_t, ContinuousClock.Instant) {
        var handoff = WorkerHandoff()
        let fds = state.withLock { s in s.listeners.sorted { $0.value < $1.value } }
        // Descriptor 3 is the crash record; listeners follow in order.
        handoff.crashRecordFD = 3
        for (i, entry) in fds.enumerated() { handoff.listeners[entry.key] = CInt(4 + i) }
        handoff.adminSocket = workerAdminSocket
        handoff.quarantineFile = quarantineFile
        handoff.crashedComponent = state.withLock { s in s.crashedComponent }
        let pid = ChildProcess.spawnSelf(arguments: ["spanhostd", "--worker"] + workerArguments, environment: handoff.environment,
                                         descriptors: [crashFD] + fds.map(\.value))
        let now = ContinuousClock.now
        state.withLock { s in
            s.workerPID = pid
            s.workerStarted = now
            s.workerState = "starting"
            if s.stopping && pid > 0 { kill(pid, SIGTERM) }  // a stop that came while it was being started
        }
        if pid > 0 { logger.info("worker started", metadata: ["pid": "\(pid)"]) }
        watchHealth(pid)
        return (pid, now)
    }

    /// Marks the worker running once its admin answers, so the loop can tell a worker that
    /// never came up from one that crashed later.
    private func watchHealth(_ pid: pid_t) {
        let thread = Thread { [self] in
            for _ in 0..<600 {
                guard state.withLock({ s in s.workerPID == pid }) else { return }
                if let response = WorkerClient.call(socket: workerAdminSocket, method: "GET", path: "/healthz", timeout: 1),
                   response.status == 200 {
                    state.withLock { s in if s.workerPID == pid { s.workerState = "running" } }
                    return
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        thread.start()
    }

    private func recordCrash(signal: Int32) {
        // The record is the last block the handler appended; read the whole (small) file.
        let text = (try? String(contentsOfFile: crashFile, encoding: .utf8)) ?? ""
        var record = CrashRecord.parse(text) ?? CrashRecord(time: ISO8601DateFormatter().string(from: Date()), signal: signal)
        if record.signal != signal { record = CrashRecord(time: record.time, signal: signal) }  // a stale block
        _ = ftruncate(crashFD, 0)
        logger.error("worker crashed: \(record.summary); restarting it")
        var quarantined: Quarantine.Entry?
        state.withLock { s in
            s.crashedComponent = record.component
            s.crashes.append(record)
            if s.crashes.count > 100 { s.crashes.removeFirst(s.crashes.count - 100) }
            s.workerState = "restarting after \(CrashRecord.signalName(signal))"
            guard let sha = record.sha256, let plugin = record.plugin, let count = s.ledger.note(sha, at: .now) else { return }
            quarantined = Quarantine.Entry(
                sha256: sha, plugin: plugin, version: record.version ?? "", file: record.file ?? "",
                reason: "crashed the worker \(count) times within \(s.ledger.window), last with "
                    + "\(CrashRecord.signalName(signal)) in \(record.hook ?? "?") of \(record.component ?? "?")",
                since: record.time)
        }
        if let entry = quarantined {
            var list = Quarantine.read(quarantineFile)
            list.entries.removeAll { $0.sha256 == entry.sha256 }
            list.entries.append(entry)
            do {
                try list.write(quarantineFile)
                logger.critical("plugin quarantined: \(entry.plugin) \(entry.version) (\(entry.file), sha256 \(entry.sha256)): \(entry.reason)")
            } catch {
                logger.error("cannot write the quarantine list", metadata: ["file": "\(quarantineFile)", "error": "\(error)"])
            }
        }
    }

    // MARK: - The admin endpoint

    private func answer(_ request: HTTPRequest) -> HTTPResponse {
        switch (request.method, request.path) {
        case (.GET, "/healthz"):
            if let response = forward(request, timeout: 2), response.status == 200 {
                state.withLock { s in if s.workerPID > 0 { s.workerState = "running" } }
                return response.http
            }
            return .text(.serviceUnavailable, "worker \(state.withLock { s in s.workerState })")
        case (.GET, "/status"):
            var document: [String: Any] = [:]
            if let response = forward(request, timeout: 5), response.status == 200,
               let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
                document = object
            }
            document["supervisor"] = supervisorStatus()
            document["crashes"] = state.withLock { s in s.crashes }.map(Self.jsonObject)
            document["quarantined"] = Quarantine.read(quarantineFile).entries.map(Self.jsonObject)
            let body = (try? JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])) ?? Data()
            return HTTPResponse(status: .ok, headers: ["Content-Type": "application/json"], body: Array(body))
        case (.GET, "/metrics"):
            let worker = forward(request, timeout: 5).map { String(decoding: $0.body, as: UTF8.self) } ?? ""
            let (crashCount, restartCount) = state.withLock { s in (s.crashes.count, s.restarts) }
            let quarantined = Quarantine.read(quarantineFile).entries.count
            let text = worker + """
                # HELP spanhost_worker_crashes_total Workers killed by a signal.
                # TYPE spanhost_worker_crashes_total counter
                spanhost_worker_crashes_total \(crashCount)
                # HELP spanhost_worker_restarts_total Workers started again after one ended.
                # TYPE spanhost_worker_restarts_total counter
                spanhost_worker_restarts_total \(restartCount)
                # HELP spanhost_quarantined_plugins Plugin images not loaded because they crashed too often.
                # TYPE spanhost_quarantined_plugins gauge
                spanhost_quarantined_plugins \(quarantined)

                """
            return HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4"], body: Array(text.utf8))
        case (.POST, "/-/quarantine/clear"):
            let cleared = Quarantine.read(quarantineFile).entries.count
            do { try Quarantine().write(quarantineFile) } catch {
                return .text(.internalServerError, "cannot clear \(quarantineFile): \(error)")
            }
            state.withLock { s in s.ledger.forgetAll() }
            logger.warning("quarantine cleared by the admin endpoint", metadata: ["entries": "\(cleared)"])
            reload()
            return .text(.ok, "cleared \(cleared) quarantined plugin images; the worker reloads")
        case (.POST, "/-/reload"):
            do { try admin.withLockedValue({ $0 })?.authenticator?.reload() } catch {
                logger.error("admin.auth: keeping the tokens in use", metadata: ["error": "\(error)"])
            }
            if let response = forward(request, timeout: 120) { return response.http }
            return .text(.serviceUnavailable, "worker \(state.withLock { s in s.workerState }); try again shortly")
        default:
            if let response = forward(request, timeout: 120) { return response.http }
            return .text(.serviceUnavailable, "worker \(state.withLock { s in s.workerState }); try again shortly")
        }
    }

    private func forward(_ request: HTTPRequest, timeout: Int) -> WorkerClient.Response? {
        var body = request.body
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        return WorkerClient.call(socket: workerAdminSocket, method: request.method.rawValue, path: request.path,
                                 body: bytes, timeout: timeout)
    }

    private func supervisorStatus() -> [String: Any] {
        state.withLock { s in
            ["pid": Int(getpid()), "worker_pid": Int(s.workerPID), "worker": s.workerState, "restarts": s.restarts,
             "crashes": s.crashes.count, "state_dir": stateDir, "answered_503_without_worker": s.standInAnswers,
             "worker_uptime_seconds": s.workerPID > 0 ? (ContinuousClock.now - s.workerStarted).components.seconds : 0]
        }
    }

    private static func jsonObject<T: Encodable>(_ value: T) -> Any {
        (try? JSONEncoder().encode(value)).flatMap { try? JSONSerialization.jsonObject(with: $0) } ?? NSNull()
    }
}
