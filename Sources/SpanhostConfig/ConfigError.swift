/// A config that cannot be used. `path` names the key in dotted form, so the message points
/// at the line to fix.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}
