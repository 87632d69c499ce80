import Foundation
import SpanhostConfig

/// What a supervisor hands the worker it starts (see SpanhostSupervisor), through inherited
/// file descriptors and environment variables. A server started without it binds its own
/// sockets and keeps no crash record.
public struct WorkerHandoff: Sendable, Equatable {
    /// Listening sockets the supervisor bound and keeps, by endpoint: connections wait in their
    /// backlog while a worker restarts.
    public var listeners: [Endpoint: CInt] = [:]
    /// The worker serves its admin endpoint here; the supervisor answers the public one.
    public var adminSocket: String?
    /// Where the crash handler writes which plugin was running.
    public var crashRecordFD: CInt?
    /// Plugin images the supervisor quarantined (see Quarantine).
    public var quarantineFile: String?
    /// The component whose plugin call was running when the previous worker crashed; nil
    /// when it did not crash in a plugin call (or was killed). Persistent queues count a
    /// crash only against that component's batches (see ExportAttempts).
    public var crashedComponent: String?

    public init() {}

    static let listenersVariable = "SPANHOST_LISTEN_FDS"
    static let adminVariable = "SPANHOST_WORKER_ADMIN"
    static let crashVariable = "SPANHOST_CRASH_FD"
    static let quarantineVariable = "SPANHOST_QUARANTINE_FILE"
    static let crashedComponentVariable = "SPANHOST_CRASHED_COMPONENT"

    /// The environment a worker is started with.
    public var environment: [String: String] {
        var env: [String: String] = [:]
        env[Self.listenersVariable] = listeners.sorted { $0.value < $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        env[Self.adminVariable] = adminSocket
        env[Self.crashVariable] = crashRecordFD.map(String.init)
        env[Self.quarantineVariable] = quarantineFile
        env[Self.crashedComponentVariable] = crashedComponent
        return env
    }

    /// Read back in the worker; nil when this process was not started by a supervisor.
    public static func fromEnvironment(_ env: [String: String]) -> WorkerHandoff? {
        guard let admin = env[adminVariable] else { return nil }
        var handoff = WorkerHandoff()
        handoff.adminSocket = admin
        handoff.crashRecordFD = env[crashVariable].flatMap { CInt($0) }
        handoff.quarantineFile = env[quarantineVariable]
        handoff.crashedComponent = env[crashedComponentVariable]
        for item in (env[listenersVariable] ?? "").split(separator: ",") {
            guard let eq = item.lastIndex(of: "="), let fd = CInt(item[item.index(after: eq)...]),
                  let endpoint = try? Endpoint(parsing: String(item[..<eq]), path: listenersVariable) else { continue }
            handoff.listeners[endpoint] = fd
        }
        return handoff
    }
}
