/// Typed settings that the host itself reads from a component's section, beside the keys its
/// plugin reads. Each type parses one block, refuses keys it does not know, and checks ranges,
/// so a runner or receiver takes settings and never parses.

/// Keys of a component's section that belong to the host, by component kind. Every other key
/// is the plugin's, and must be read by its `create` (see PluginInstance).
public enum HostKeys {
    public static let processor = ["call_timeout", "circuit_breaker", "on_quarantine", "isolation"]
    public static let exporter = ["sending_queue", "retry_on_failure", "call_timeout", "circuit_breaker", "on_quarantine", "isolation"]
    public static let notifier = ["sending_queue", "retry_on_failure", "call_timeout", "circuit_breaker", "on_quarantine", "isolation"]
}

extension ConfigValue {
    /// Refuses any key of this map that is not in `known`, naming it and the valid ones.
    public func requireKnownKeys(_ known: [String], path: String) throws {
        if self == .null { return }
        guard let entries = mapEntries else { throw ConfigError(path, "must be a map, not \(kindName)") }
        for entry in entries where !known.contains(entry.key) {
            let key = path.isEmpty ? entry.key : "\(path).\(entry.key)"
            throw ConfigError(key, CollectorKeys.note(for: key) ?? "unknown key; valid keys: \(known.joined(separator: ", "))")
        }
    }
}

/// A whole number within `range`.
public func parseCount(_ value: ConfigValue, path: String, in range: ClosedRange<Int64>) throws -> Int {
    guard let n = value.intValue else { throw ConfigError(path, "must be an integer, not \(value.kindName)") }
    guard range.contains(n) else { throw ConfigError(path, "must be from \(range.lowerBound) to \(range.upperBound), not \(n)") }
    return Int(n)
}

/// A positive size in MiB (fractions allowed), as bytes; at most 1 TiB.
public func parseMiB(_ value: ConfigValue, path: String) throws -> Int {
    guard let mib = value.doubleValue, mib.isFinite else { throw ConfigError(path, "must be a number of MiB, not \(value.kindName)") }
    guard mib > 0, mib <= 1_048_576 else { throw ConfigError(path, "must be more than 0 and at most 1048576 MiB (1 TiB)") }
    return Int(mib * 1024 * 1024)
}

/// A boolean, or a string that spells one.
public func parseNumber(_ value: ConfigValue, path: String) throws -> Double {
    if let d = value.doubleValue, d.isFinite { return d }
    if let i = value.intValue { return Double(i) }
    throw ConfigError(path, "must be a number, not \(value.kindName)")
}

public func parseBool(_ value: ConfigValue, path: String) throws -> Bool {
    guard let b = value.boolValue else { throw ConfigError(path, "must be true or false, not \(value.kindName)") }
    return b
}

/// `retry_on_failure`, as the Collector's exporter helper reads it: exponential backoff whose
/// interval grows by `multiplier` up to `maxInterval`, each wait drawn at random within
/// ±`randomizationFactor` of it (jitter, so clients that failed together do not retry together).
public struct RetryPolicy: Sendable, Equatable {
    public var enabled = true
    public var initialInterval: Duration = .seconds(5)
    public var maxInterval: Duration = .seconds(30)
    public var maxElapsedTime: Duration = .seconds(300)
    public var randomizationFactor = 0.5
    public var multiplier = 1.5

    public init() {}

    /// Reads `retry_on_failure` from a component's settings; what is not set keeps `defaults`.
    public init(settings: ConfigValue, path: String, defaults: RetryPolicy = RetryPolicy()) throws {
        self = defaults
        guard let retry = settings["retry_on_failure"], retry != .null else { return }
        let p = "\(path).retry_on_failure"
        try retry.requireKnownKeys(["enabled", "initial_interval", "max_interval", "max_elapsed_time", "randomization_factor", "multiplier"],
                                   path: p)
        if let v = retry["enabled"] { enabled = try parseBool(v, path: "\(p).enabled") }
        if let v = retry["initial_interval"] { initialInterval = try parseDuration(v, path: "\(p).initial_interval") }
        if let v = retry["max_interval"] { maxInterval = try parseDuration(v, path: "\(p).max_interval") }
        if let v = retry["max_elapsed_time"] { maxElapsedTime = try parseDuration(v, path: "\(p).max_elapsed_time") }
        if let v = retry["randomization_factor"] { randomizationFactor = try parseNumber(v, path: "\(p).randomization_factor") }
        if let v = retry["multiplier"] { multiplier = try parseNumber(v, path: "\(p).multiplier") }
        if !(0...1).contains(randomizationFactor) { throw ConfigError("\(p).randomization_factor", "must be within [0, 1]") }
        if !(multiplier >= 1 && multiplier <= 100) { throw ConfigError("\(p).multiplier", "must be at least 1 (and at most 100)") }
        if initialInterval <= .zero { throw ConfigError("\(p).initial_interval", "must be greater than zero") }
        if maxInterval < initialInterval { throw ConfigError("\(p).max_interval", "must not be less than initial_interval") }
    }
}

/// How often a disk queue forces its writes to the device.
public enum FsyncPolicy: Sendable, Equatable {
    /// fsync after every batch, before the receiver answers: survives power loss.
    case always
    /// fsync from a background thread this often: survives a crash of spanhostd (the data is in
    /// the page cache), loses at most this long of accepted data on power loss.
    case interval(Duration)
    /// leave it to the operating system.
    case never
}

/// `sending_queue` of an exporter.
public struct SendingQueueSettings: Sendable, Equatable {
    /// What an exporter does with a batch when its queue is full.
    public enum OnFull: String, Sendable, Equatable {
        /// Refuse the batch for the whole pipeline: the client gets 503 and retries.
        case refuse
        /// Drop it for this exporter only, counted as `dropped_on_full`; the others still get it.
        case drop
    }

    /// False: no queue; each batch is exported on the caller's thread before it is answered.
    public var enabled = true
    public var queueSize = 1000
    /// Bytes of queued batches: in memory for a memory queue, on disk for a disk queue.
    public var maxBytes = Int.max
    /// Consumer threads; nil picks by plugin (4 for concurrent plugins, else 1).
    public var consumers: Int?
    /// A directory: the queue is kept on disk there (one folder per exporter).
    public var storage: String?
    public var fsync = FsyncPolicy.interval(.seconds(1))
    public var onFull = OnFull.refuse
    /// With storage: a batch that was being exported this many times when the process died is
    /// dead-lettered at the next start instead of exported again (a poison batch).
    public var deadLetterAfterCrashes = 2
    /// Requests gathered into one export as they leave the queue (nil: one export a request).
    public var batch: QueueBatchSettings?

    public init() {}

    public init(settings: ConfigValue?, path: String) throws {
        guard let settings, settings != .null else { return }
        try settings.requireKnownKeys(["enabled", "queue_size", "num_consumers", "max_size_mib", "storage", "fsync", "on_full",
                                       "dead_letter_after_crashes", "batch"], path: path)
        if let v = settings["batch"], v != .null { batch = try QueueBatchSettings(settings: v, path: "\(path).batch") }
        if let v = settings["enabled"] { enabled = try parseBool(v, path: "\(path).enabled") }
        if let v = settings["queue_size"] { queueSize = try parseCount(v, path: "\(path).queue_size", in: 1...10_000_000) }
        if let v = settings["num_consumers"] { consumers = try parseCount(v, path: "\(path).num_consumers", in: 1...64) }
        if let v = settings["storage"] {
            storage = try requireString(v, "\(path).storage")
            maxBytes = 1 << 30
        }
        if let v = settings["max_size_mib"] { maxBytes = try parseMiB(v, path: "\(path).max_size_mib") }
        if let v = settings["fsync"] {
            guard storage != nil else { throw ConfigError("\(path).fsync", "applies only with storage") }
            switch v.stringValue {
            case "always": fsync = .always
            case "never": fsync = .never
            default:
                let every = try parseDuration(v, path: "\(path).fsync")
                guard every > .zero else { throw ConfigError("\(path).fsync", "must be always, never or an interval like 1s") }
                // A background fsync every few nanoseconds would keep a core busy while idle.
                guard every >= .milliseconds(10) else {
                    throw ConfigError("\(path).fsync", "an interval of at least 10ms (or always, to fsync before every answer)")
                }
                fsync = .interval(every)
            }
        }
        if let v = settings["on_full"] {
            guard let mode = v.stringValue.flatMap(OnFull.init(rawValue:)) else {
                throw ConfigError("\(path).on_full", "must be refuse or drop")
            }
            onFull = mode
        }
        if let v = settings["dead_letter_after_crashes"] {
            guard storage != nil else { throw ConfigError("\(path).dead_letter_after_crashes", "applies only with storage") }
            deadLetterAfterCrashes = try parseCount(v, path: "\(path).dead_letter_after_crashes", in: 1...1000)
        }
        if !enabled && storage != nil { throw ConfigError("\(path).storage", "needs the queue enabled") }
        if !enabled && batch != nil { throw ConfigError("\(path).batch", "needs the queue enabled") }
    }
}

/// `sending_queue.batch`, in the Collector's exporterhelper shape: requests stay in the queue
/// (on disk with storage) until they leave it together, so a batch being gathered is never
/// only in memory. A consumer takes requests until `min_size` spans are gathered or
/// `flush_timeout` has passed since the first, and stops taking at `max_size` (0: no limit).
/// With `metadata_keys` (the batch processor's), what was gathered leaves as one export per
/// combination of those request headers' values, so no export mixes, say, two tenants.
public struct QueueBatchSettings: Sendable, Equatable {
    public var flushTimeout: Duration = .milliseconds(200)
    public var minSize = 8192
    public var maxSize = 0
    /// Request headers (lowercased; a receiver's `include_metadata` passes them on) whose
    /// values partition the exports.
    public var metadataKeys: [String] = []
    /// Distinct combinations of `metadataKeys` values batched; past it, a request is exported alone.
    public var metadataCardinalityLimit = 1000

    public init() {}

    /// The key names of these settings: the exporterhelper's, or the batch processor's.
    public struct Keys: Sendable {
        public var flushTimeout, minSize, maxSize: String
        public var others: [String]
        public static let sendingQueue = Keys(flushTimeout: "flush_timeout", minSize: "min_size", maxSize: "max_size",
                                              others: ["sizer", "metadata_keys", "metadata_cardinality_limit"])
        public static let batchProcessor = Keys(flushTimeout: "timeout", minSize: "send_batch_size", maxSize: "send_batch_max_size",
                                                others: ["metadata_keys", "metadata_cardinality_limit"])

        /// Settings written with these keys, rewritten with `other`'s.
        public func rename(_ settings: ConfigValue, to other: Keys) -> ConfigValue {
            let names = [flushTimeout: other.flushTimeout, minSize: other.minSize, maxSize: other.maxSize]
            return .map((settings.mapEntries ?? []).map { .init(key: names[$0.key] ?? $0.key, value: $0.value) })
        }
    }

    public init(settings: ConfigValue, path: String, keys: Keys = .sendingQueue) throws {
        guard settings == .null || settings.mapEntries != nil else { throw ConfigError(path, "must be a map of settings") }
        try settings.requireKnownKeys([keys.flushTimeout, keys.minSize, keys.maxSize] + keys.others, path: path)
        if let v = settings[keys.flushTimeout] {
            flushTimeout = try parseDuration(v, path: "\(path).\(keys.flushTimeout)")
            guard flushTimeout > .zero else { throw ConfigError("\(path).\(keys.flushTimeout)", "must be greater than zero") }
        }
        if let v = settings[keys.minSize] { minSize = try parseCount(v, path: "\(path).\(keys.minSize)", in: 0...100_000_000) }
        if let v = settings[keys.maxSize] { maxSize = try parseCount(v, path: "\(path).\(keys.maxSize)", in: 0...100_000_000) }
        if let v = settings["metadata_keys"] {
            metadataKeys = try requireStringList(v, "\(path).metadata_keys").map { $0.lowercased() }
        }
        if let v = settings["metadata_cardinality_limit"] {
            metadataCardinalityLimit = try parseCount(v, path: "\(path).metadata_cardinality_limit", in: 0...10_000_000)
        }
        if let v = settings["sizer"], v.stringValue != "items" {
            throw ConfigError("\(path).sizer", "only items (spans) is supported by spanhost")
        }
        if maxSize > 0 && maxSize < minSize {
            throw ConfigError("\(path).\(keys.maxSize)", "must be 0 (no limit) or at least \(keys.minSize)")
        }
    }
}

/// `sending_queue` of a notifier: events wait in memory; the oldest goes when it is full.
public struct NotifierQueueSettings: Sendable, Equatable {
    public var queueSize = 1000

    public init(settings: ConfigValue?, path: String) throws {
        guard let settings, settings != .null else { return }
        try settings.requireKnownKeys(["queue_size"], path: path)
        if let v = settings["queue_size"] { queueSize = try parseCount(v, path: "\(path).queue_size", in: 1...10_000_000) }
    }
}

/// Limits on calls into one plugin instance (`call_timeout`, `circuit_breaker`).
public struct CallPolicy: Sendable, Equatable {
    /// A call running longer than this is reported as hung and the instance marked unhealthy;
    /// further calls fail fast until it returns.
    public var timeout: Duration = .seconds(10)
    /// This many failed calls in a row open the circuit breaker...
    public var failureThreshold = 5
    /// ...and no call is made for this long.
    public var coolDown: Duration = .seconds(30)
    /// `isolation: process`: the plugin runs in a child process of its own (exporters).
    public var isolated = false

    public init() {}

    public init(settings: ConfigValue, path: String) throws {
        if let v = settings["isolation"] {
            switch try requireString(v, "\(path).isolation") {
            case "none": isolated = false
            case "process": isolated = true
            case let other: throw ConfigError("\(path).isolation", "'\(other)' is not none or process")
            }
        }
        if let v = settings["call_timeout"] {
            timeout = try parseDuration(v, path: "\(path).call_timeout")
            guard timeout > .zero else { throw ConfigError("\(path).call_timeout", "must be greater than zero") }
        }
        guard let breaker = settings["circuit_breaker"], breaker != .null else { return }
        let p = "\(path).circuit_breaker"
        try breaker.requireKnownKeys(["failure_threshold", "cool_down"], path: p)
        if let v = breaker["failure_threshold"] { failureThreshold = try parseCount(v, path: "\(p).failure_threshold", in: 1...1_000_000) }
        if let v = breaker["cool_down"] { coolDown = try parseDuration(v, path: "\(p).cool_down") }
    }
}

/// `service.supervisor`: how spanhostd supervises its worker process.
public struct SupervisorSettings: Sendable, Equatable {
    /// False: spanhostd runs the server in its own process, for those who restart it with
    /// systemd's `Restart=` instead (the same as `--no-supervise`).
    public var enabled = true
    /// A plugin image that crashed the worker this many times within `quarantineWindow` is
    /// quarantined: not loaded again until its file changes or an operator clears it.
    public var quarantineAfterCrashes = 3
    public var quarantineWindow: Duration = .seconds(600)
    /// Where the quarantine list and crash records are kept; nil: a directory under $TMPDIR.
    public var stateDir: String?

    public init() {}

    public init(settings: ConfigValue?, path: String) throws {
        guard let settings, settings != .null else { return }
        try settings.requireKnownKeys(["enabled", "quarantine_after_crashes", "quarantine_window", "state_dir"], path: path)
        if let v = settings["enabled"] { enabled = try parseBool(v, path: "\(path).enabled") }
        if let v = settings["quarantine_after_crashes"] {
            quarantineAfterCrashes = try parseCount(v, path: "\(path).quarantine_after_crashes", in: 1...1000)
        }
        if let v = settings["quarantine_window"] {
            quarantineWindow = try parseDuration(v, path: "\(path).quarantine_window")
            guard quarantineWindow > .zero else { throw ConfigError("\(path).quarantine_window", "must be greater than zero") }
        }
        if let v = settings["state_dir"] { stateDir = try requireString(v, "\(path).state_dir") }
    }
}
