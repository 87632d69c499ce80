/// A config that cannot be used. `path` names the key in dotted form, so the message points
/// at the line to fix. Errors of independent parts of a config (receivers, pipelines,
/// exporters' auth) are reported together, as the Collector joins them: the first is the error,
/// the rest ride along in `more`, one line each.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var more: [ConfigError] = []

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    /// All of `errors` as one; nil when there are none.
    public static func all(_ errors: [ConfigError]) -> ConfigError? {
        let flat = errors.flatMap { [ConfigError($0.path, $0.message)] + $0.more }
        guard var first = flat.first else { return nil }
        first.more = Array(flat.dropFirst())
        return first
    }

    public var description: String {
        let line = path.isEmpty ? message : "\(path): \(message)"
        return more.isEmpty ? line : ([line] + more.map(\.description)).joined(separator: "\n")
    }
}

/// Runs `body`, keeping a ConfigError it throws in `errors` instead of stopping.
func collecting<T>(_ errors: inout [ConfigError], _ body: () throws -> T) rethrows -> T? {
    do {
        return try body()
    } catch let error as ConfigError {
        errors.append(error)
        return nil
    }
}
