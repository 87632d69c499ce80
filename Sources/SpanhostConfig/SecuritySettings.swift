import Foundation

/// `extensions.bearertokenauth[/name]`, in the Collector's shape: the tokens a server accepts in
/// `<header>: <scheme> <token>` (header Authorization by default), and the one a client sends.
/// With `filename`, the file is read when a config is loaded (start and every reload); each
/// non-empty line is one accepted token, the first the one sent. As in the Collector,
/// `filename` wins over `token` when both are given.
///
/// The Collector's `basicauth` is the same check with scheme `Basic`: a server's `htpasswd`
/// users (inline or in a file, `user:password` lines) are the accepted tokens, base64-encoded;
/// a client's `client_auth` user is the token it sends.
public struct BearerTokenAuthSettings: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case tokens([String])
        case file(String)
        /// basicauth's users: inline lines, then the file's, each `user:password`.
        case htpasswd(inline: [String], file: String?)
    }

    public var scheme = "Bearer"
    public var header = "Authorization"
    public var source: Source

    public init(source: Source, scheme: String = "Bearer") {
        self.source = source
        self.scheme = scheme
    }

    init(settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["scheme", "token", "tokens", "filename", "header"], path: path)
        if let v = settings["scheme"] { scheme = try requireString(v, "\(path).scheme") }
        if let v = settings["header"] {
            header = try requireString(v, "\(path).header")
            guard !header.isEmpty, header.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw ConfigError("\(path).header", "'\(header)' is not a header name")
            }
        }
        let token = try settings["token"].map { try requireString($0, "\(path).token") }
        var tokens: [String]?
        if let v = settings["tokens"] {
            guard case .list(let items) = v else { throw ConfigError("\(path).tokens", "must be a list of tokens") }
            tokens = try items.enumerated().map { try requireString($1, "\(path).tokens.\($0)") }
        }
        if let file = try settings["filename"].map({ try requireString($0, "\(path).filename") }) {
            source = .file(file)
        } else if let list = tokens {
            guard token == nil else { throw ConfigError(path, "set token or tokens, not both") }
            source = .tokens(list)
        } else if let token {
            source = .tokens([token])
        } else {
            throw ConfigError(path, "set one of token, tokens or filename")
        }
        if case .tokens(let list) = source, list.isEmpty || list.contains(where: \.isEmpty) {
            throw ConfigError(path, "tokens must not be empty")
        }
    }

    /// The Collector's `basicauth` extension: `htpasswd: {file, inline}` for servers, or
    /// `client_auth: {username, password}` for clients.
    init(basicAuth settings: ConfigValue, path: String) throws {
        try settings.requireKnownKeys(["htpasswd", "client_auth"], path: path)
        scheme = "Basic"
        switch (settings["htpasswd"], settings["client_auth"]) {
        case (let htpasswd?, nil):
            try htpasswd.requireKnownKeys(["file", "inline"], path: "\(path).htpasswd")
            let inline = try htpasswd["inline"].map { try requireString($0, "\(path).htpasswd.inline") } ?? ""
            let lines = inline.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for (index, line) in lines.enumerated() { try Self.checkUser(line, path: "\(path).htpasswd.inline line \(index + 1)") }
            let file = try htpasswd["file"].map { try requireString($0, "\(path).htpasswd.file") }
            guard !lines.isEmpty || file != nil else { throw ConfigError("\(path).htpasswd", "set file or inline: user:password lines") }
            source = .htpasswd(inline: lines, file: file)
        case (nil, let client?):
            try client.requireKnownKeys(["username", "password"], path: "\(path).client_auth")
            let user = try client["username"].map { try requireString($0, "\(path).client_auth.username") } ?? ""
            let password = try client["password"].map { try requireString($0, "\(path).client_auth.password") } ?? ""
            guard !user.isEmpty, !user.contains(":") else { throw ConfigError("\(path).client_auth.username", "required, without ':'") }
            source = .tokens([Data("\(user):\(password)".utf8).base64EncodedString()])
        case (nil, nil): throw ConfigError(path, "set htpasswd (a server's users) or client_auth (what a client sends)")
        default: throw ConfigError(path, "set htpasswd or client_auth, not both: define one basicauth extension for each")
        }
    }

    /// A `user:password` line; hashed htpasswd entries (bcrypt, {SHA}, apr1) cannot be matched here.
    static func checkUser(_ line: String, path: String) throws {
        guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
            throw ConfigError(path, "must be user:password")
        }
        let secret = line[line.index(after: colon)...]
        if secret.hasPrefix("$2") || secret.hasPrefix("$apr1$") || secret.hasPrefix("{SHA}") || secret.hasPrefix("$1$") || secret.hasPrefix("$5$") || secret.hasPrefix("$6$") {
            throw ConfigError(path, "hashed htpasswd passwords are not supported by spanhost; write user:password (keep the file private)")
        }
    }

    /// The tokens a server accepts: the token lines, or basicauth's users base64-encoded.
    public static func tokens(fromLines lines: [String], basic: Bool, path: String) throws -> [String] {
        guard basic else { return lines }
        return try lines.map { line in
            try checkUser(line, path: path)
            return Data(line.utf8).base64EncodedString()
        }
    }
}

/// `tls:` of a server (a receiver's HTTP listener): its certificate and key, and with
/// `client_ca_file` the CA that client certificates must chain to (mutual TLS). The files
/// are read when a config is loaded, so a reload picks up renewed certificates.
public struct TLSServerSettings: Sendable, Equatable {
    public enum Version: String, Sendable, Equatable { case tls12 = "1.2", tls13 = "1.3" }

    public var certFile: String
    public var keyFile: String
    public var clientCAFile: String?
    public var minVersion: Version = .tls12

    public init(certFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    init?(settings: ConfigValue?, path: String) throws {
        guard let settings, settings != .null else { return nil }
        // ca_file: the Collector's server config takes it and checks nothing with it (clients are
        // checked against client_ca_file); reload_interval: files are read again on every reload.
        try settings.requireKnownKeys(["cert_file", "key_file", "client_ca_file", "min_version", "ca_file", "reload_interval"], path: path)
        if let v = settings["reload_interval"] { _ = try parseDuration(v, path: "\(path).reload_interval") }
        guard let cert = settings["cert_file"], let key = settings["key_file"] else {
            throw ConfigError(path, "a server needs cert_file and key_file")
        }
        certFile = try requireString(cert, "\(path).cert_file")
        keyFile = try requireString(key, "\(path).key_file")
        clientCAFile = try settings["client_ca_file"].map { try requireString($0, "\(path).client_ca_file") }
        if let v = settings["min_version"] {
            let text = try requireString(v, "\(path).min_version")
            guard let version = Version(rawValue: text) else { throw ConfigError("\(path).min_version", "'\(text)' is not 1.2 or 1.3") }
            minVersion = version
        }
    }
}

/// `auth: {authenticator: <extension id>}` on a server.
func parseAuthenticatorReference(_ value: ConfigValue?, path: String) throws -> ComponentID? {
    guard let value, value != .null else { return nil }
    try value.requireKnownKeys(["authenticator"], path: path)
    guard let id = value["authenticator"] else { throw ConfigError("\(path).authenticator", "required: the id of an extension") }
    return try ComponentID(parsing: try requireString(id, "\(path).authenticator"), path: "\(path).authenticator")
}

/// The `extensions:` section: only authenticators are extensions here. An extension is on when
/// `service.extensions` lists it, as in the Collector.
enum ExtensionsSection {
    static let types = ["bearertokenauth", "basicauth", "health_check"]

    /// Every defined extension is checked; those `service.extensions` lists are returned.
    static func parse(_ root: ConfigValue, enabled service: ConfigValue?, admin: Endpoint) throws
        -> (authenticators: [ComponentID: BearerTokenAuthSettings], healthChecks: [HealthCheckSettings]) {
        var defined: [ComponentID: BearerTokenAuthSettings] = [:]
        var health: [ComponentID: HealthCheckSettings] = [:]
        if let section = root["extensions"], section != .null {
            guard let entries = section.mapEntries else { throw ConfigError("extensions", "must be a map of extension ids") }
            for entry in entries {
                let path = "extensions.\(entry.key)"
                let id = try ComponentID(parsing: entry.key, path: path)
                let settings = entry.value == .null ? ConfigValue.emptyMap : entry.value
                switch id.type {
                case "bearertokenauth": defined[id] = try BearerTokenAuthSettings(settings: settings, path: path)
                case "basicauth": defined[id] = try BearerTokenAuthSettings(basicAuth: settings, path: path)
                case "health_check": health[id] = try HealthCheckSettings(id: id, settings: settings, path: path, admin: admin)
                default:
                    let hint = ["zpages", "pprof"].contains(id.type)
                        ? "; the admin endpoint (admin.endpoint) serves /, /healthz, /status and /metrics" : ""
                    throw ConfigError(path, "extension type '\(id.type)' is not supported; supported: \(types.joined(separator: ", "))\(hint)")
                }
            }
        }
        var enabled: [ComponentID: BearerTokenAuthSettings] = [:]
        var healthChecks: [HealthCheckSettings] = []
        guard let list = service?["extensions"], list != .null else { return (enabled, []) }
        guard case .list(let items) = list else { throw ConfigError("service.extensions", "must be a list of extension ids") }
        for (index, item) in items.enumerated() {
            let path = "service.extensions.\(index)"
            let id = try ComponentID(parsing: try requireString(item, path), path: path)
            if let settings = health[id] {
                if let other = healthChecks.first(where: { $0.endpoint == settings.endpoint && ($0.path == settings.path || !$0.onAdminEndpoint) }) {
                    throw ConfigError(path, "'\(id)' is served where \(other.id) is (\(settings.endpoint)\(settings.path)): give it an endpoint or path of its own")
                }
                healthChecks.append(settings)
                continue
            }
            guard let settings = defined[id] else { throw ConfigError(path, "'\(id)' is not defined under extensions") }
            enabled[id] = settings
        }
        return (enabled, healthChecks)
    }
}

/// The Collector's `health_check` extension: a GET on `endpoint` + `path` answers 200 while the
/// pipelines run and 503 while they do not (starting, a worker restarting, shutting down), as
/// the admin endpoint's /healthz does. Without `endpoint` it is served on the admin endpoint;
/// there `path: /` is the admin page (200 while the pipelines answer), so give it an endpoint of
/// its own to get the bare answer at `/`.
public struct HealthCheckSettings: Sendable, Equatable {
    public var id: ComponentID
    public var endpoint: Endpoint
    /// HTTPS on its own endpoint.
    public var tls: TLSServerSettings?
    public var path: String
    /// True when it shares the admin endpoint's listener.
    public var onAdminEndpoint: Bool

    init(id: ComponentID, settings: ConfigValue, path configPath: String, admin: Endpoint) throws {
        self.id = id
        for entry in settings.mapEntries ?? [] where !["endpoint", "path", "check_collector_pipeline", "tls"].contains(entry.key) {
            let key = "\(configPath).\(entry.key)"
            throw ConfigError(key, CollectorKeys.note(for: key) ?? "unknown key; expected endpoint, path, tls, check_collector_pipeline")
        }
        tls = try TLSServerSettings(settings: settings["tls"], path: "\(configPath).tls")
        // The Collector's deprecated pipeline check: accepted; /healthz here reports the
        // pipelines' state (plugins down, quarantined) whatever it says.
        if let check = settings["check_collector_pipeline"], check != .null {
            try check.requireKnownKeys(["enabled", "interval", "exporter_failure_threshold"], path: "\(configPath).check_collector_pipeline")
        }
        endpoint = try settings["endpoint"].map { try Endpoint(parsing: try requireString($0, "\(configPath).endpoint"), path: "\(configPath).endpoint") } ?? admin
        path = try settings["path"].map { try requireString($0, "\(configPath).path") } ?? "/"
        guard path.hasPrefix("/") else { throw ConfigError("\(configPath).path", "must start with /") }
        onAdminEndpoint = endpoint == admin
        if tls != nil && onAdminEndpoint {
            throw ConfigError("\(configPath).tls", "serves HTTPS on an endpoint of its own: set endpoint (the admin endpoint is plain HTTP)")
        }
        if !onAdminEndpoint && endpoint.port == admin.port && (endpoint.host == "0.0.0.0" || admin.host == "0.0.0.0" || endpoint.host == admin.host) {
            throw ConfigError("\(configPath).endpoint", "\(endpoint) overlaps the admin endpoint \(admin); leave endpoint out to serve it there, or pick another port")
        }
    }
}

extension ServiceConfig {
    /// The settings of an authenticator a server names, which must be an enabled extension.
    public func authenticator(_ id: ComponentID?, path: String) throws -> BearerTokenAuthSettings? {
        guard let id else { return nil }
        guard let settings = authenticators[id] else {
            throw ConfigError("\(path).auth.authenticator", "'\(id)' is not an enabled extension: define it under extensions and list it in service.extensions")
        }
        return settings
    }
}

extension Endpoint {
    /// True for addresses only this machine reaches.
    public var isLoopback: Bool { Self.isLoopback(host) }

    /// `localhost`, an IPv4 literal in 127.0.0.0/8 or the IPv6 literal ::1, parsed as
    /// addresses: "127.0.0.1.rebind.example" is a DNS name that can point anywhere.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "localhost." { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, h, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, h, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        return false
    }
}
