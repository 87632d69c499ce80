/// How long the supervisor waits before starting the next worker: 100 ms after a worker that
/// ran a minute or more, then doubling with each worker that died sooner, up to 30 s.
struct RestartBackoff {
    /// Workers in a row that died within a minute of starting.
    private var quickDeaths = 0

    /// Notes that a worker ended after running `ranFor`; the wait before the next one.
    mutating func delay(afterRunning ranFor: Duration) -> Duration {
        quickDeaths = ranFor > .seconds(60) ? 1 : quickDeaths + 1
        return min(.milliseconds(100) * (1 << min(quickDeaths - 1, 9)), .seconds(30))
    }
}

/// Crashes by plugin image (its sha256): one that crashed the worker `limit` times within
/// `window` is to be quarantined.
struct CrashLedger {
    let limit: Int
    let window: Duration
    private var times: [String: [ContinuousClock.Instant]] = [:]

    init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    /// Notes a crash in image `sha256` at `now`. When that makes `limit` within the window,
    /// returns how many (and counting starts again); nil otherwise.
    mutating func note(_ sha256: String, at now: ContinuousClock.Instant) -> Int? {
        let recent = (times[sha256] ?? []).filter { now - $0 < window } + [now]
        guard recent.count >= limit else {
            times[sha256] = recent
            return nil
        }
        times[sha256] = []
        return recent.count
    }

    /// Starts every count again (the quarantine was cleared).
    mutating func forgetAll() { times.removeAll() }
}
