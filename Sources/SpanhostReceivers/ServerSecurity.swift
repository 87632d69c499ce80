import Foundation
import NIOHTTP1
import NIOSSL
import SpanhostConfig
import Synchronization

/// The tokens a `bearertokenauth` extension accepts, read when it is made (a file: each
/// non-empty line is a token) and again on `reload`. Tokens are compared in constant time.
public final class BearerTokenAuthenticator: Sendable {
    public let settings: BearerTokenAuthSettings
    private let path: String
    private let tokens: Mutex<[[UInt8]]>

    /// `path`: where the extension is in the config, for errors.
    public init(_ settings: BearerTokenAuthSettings, path: String) throws {
        self.settings = settings
        self.path = path
        tokens = Mutex(try Self.read(settings, path: path))
    }

    /// Reads the token file again; on failure the tokens in use stay.
    public func reload() throws {
        let fresh = try Self.read(settings, path: path)
        tokens.withLock { $0 = fresh }
    }

    private static func read(_ settings: BearerTokenAuthSettings, path: String) throws -> [[UInt8]] {
        switch settings.source {
        case .tokens(let list): return list.map { Array($0.utf8) }
        case .file(let file):
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ConfigError("\(path).filename", "cannot read the token file \(file)")
            }
            let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !lines.isEmpty else { throw ConfigError("\(path).filename", "the token file \(file) holds no token") }
            return lines.map { Array($0.utf8) }
        case .htpasswd(let inline, let file):
            var lines = inline
            if let file {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw ConfigError("\(path).htpasswd.file", "cannot read the htpasswd file \(file)")
                }
                lines += String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
                    .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
            }
            return try BearerTokenAuthSettings.tokens(fromLines: lines, basic: true, path: "\(path).htpasswd").map { Array($0.utf8) }
        }
    }

    /// True when the request carries `<header>: <scheme> <token>` with an accepted token.
    public func accepts(_ headers: HTTPHeaders) -> Bool {
        guard let value = headers.first(name: settings.header) else { return false }
        let prefix = settings.scheme.isEmpty ? "" : settings.scheme + " "
        guard value.count > prefix.count, value.lowercased().hasPrefix(prefix.lowercased()) else { return false }
        let offered = Array(value.utf8.dropFirst(prefix.utf8.count))
        return tokens.withLock { accepted in
            // Every token is compared in full, so the time taken says nothing about which matched.
            accepted.reduce(false) { found, token in Self.equal(token, offered) || found }
        }
    }

    private static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }

    /// The 401 answer's header, naming the scheme expected.
    public var challenge: String { settings.scheme.isEmpty ? "Bearer" : settings.scheme }
}

/// TLS and authentication of one HTTP listener, with files read: made when a config is loaded
/// (at start and on every reload), so renewed certificates and rotated tokens take effect then.
public struct ServerSecurity: Sendable {
    public var tls: NIOSSLContext?
    public var authenticator: BearerTokenAuthenticator?

    public static let none = ServerSecurity()

    public init(tls: NIOSSLContext? = nil, authenticator: BearerTokenAuthenticator? = nil) {
        self.tls = tls
        self.authenticator = authenticator
    }

    /// What a request without an accepted token is answered: the message and the
    /// WWW-Authenticate value; nil when the request may go on (no authenticator, or accepted).
    public func refusal(_ headers: HTTPHeaders) -> (message: String, challenge: String)? {
        guard let authenticator, !authenticator.accepts(headers) else { return nil }
        return ("missing or wrong credentials: send \(authenticator.settings.header): \(authenticator.challenge) <token>", authenticator.challenge)
    }

    /// Loads what every HTTP receiver a pipeline uses needs, by endpoint: the files are read now.
    public static func load(for config: ServiceConfig) throws -> [Endpoint: ServerSecurity] {
        var result: [Endpoint: ServerSecurity] = [:]
        for (id, settings) in try ReceiverSettings.used(in: config) {
            guard let endpoint = settings.endpoint, let security = settings.security else { continue }
            result[endpoint] = try ServerSecurity(security, config: config, path: settings.securityPath("receivers.\(id)"))
        }
        return result
    }

    /// `path`: the config path of the server's settings, for errors.
    public init(_ settings: ServerSecuritySettings, config: ServiceConfig, path: String) throws {
        if let auth = try config.authenticator(settings.authenticator, path: path), let id = settings.authenticator {
            authenticator = try BearerTokenAuthenticator(auth, path: "extensions.\(id)")
        }
        if let tls = settings.tls { self.tls = try Self.context(tls, path: "\(path).tls") }
    }

    public static func context(_ settings: TLSServerSettings, path: String) throws -> NIOSSLContext {
        func load<T>(_ key: String, _ file: String, _ what: String, _ read: () throws -> T) throws -> T {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ConfigError("\(path).\(key)", "cannot read \(file)")
            }
            do { return try read() } catch {
                throw ConfigError("\(path).\(key)", "\(file) does not hold a PEM \(what) (\(error))")
            }
        }
        let chain = try load("cert_file", settings.certFile, "certificate") { try NIOSSLCertificate.fromPEMFile(settings.certFile) }
        guard !chain.isEmpty else { throw ConfigError("\(path).cert_file", "\(settings.certFile) holds no certificate") }
        let key = try load("key_file", settings.keyFile, "private key") { try NIOSSLPrivateKey(file: settings.keyFile, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = settings.minVersion == .tls13 ? .tlsv13 : .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        if let ca = settings.clientCAFile {
            let roots = try load("client_ca_file", ca, "certificate") { try NIOSSLCertificate.fromPEMFile(ca) }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        }
        do { return try NIOSSLContext(configuration: configuration) } catch {
            throw ConfigError(path, "cannot use \(settings.certFile) with \(settings.keyFile): \(error)")
        }
    }
}
