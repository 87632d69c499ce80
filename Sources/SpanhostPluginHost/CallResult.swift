import SpanhostConfig

/// What one plugin call came to, mapped from the `SPANHOST_*` result code.
public enum CallResult: Sendable, Equatable {
    case ok
    /// Processors only: the batch stops here (the plugin emits what follows itself).
    case consumed
    case retryable(retryAfter: Duration?, message: String)
    case permanent(message: String)
    /// The plugin was not called: the instance is hung in another call or its circuit
    /// breaker is open.
    case unavailable(message: String)
}

/// Why an instance could not be made.
public struct PluginCreateError: Error, CustomStringConvertible {
    public var component: String
    public var hook: String
    public var message: String
    /// The settings key at fault, when the host found it (not the plugin).
    public var key: String?
    public var description: String {
        if let key { return "\(component).\(key): \(message)" }
        return "\(component): \(hook) failed: \(message)"
    }
}

extension CallResult {
    public var message: String {
        switch self {
        case .ok, .consumed: return ""
        case .retryable(_, let message), .permanent(let message), .unavailable(let message): return message
        }
    }
}
