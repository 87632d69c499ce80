import Foundation
import Synchronization

/// Answers `503 Service Unavailable` with `Retry-After` on the receivers' listening sockets while
/// no worker runs (between a crash and the restart's backoff), so clients retry at once instead
/// of hanging in the backlog until their timeout. It accepts only in that gap: while a worker
/// runs, the sockets are the worker's. TLS endpoints are left alone (a plain answer would be
/// garbage to a TLS client); their connections wait for the next worker.
///
/// One thread, one connection at a time, each bounded: the request head is read for at most
/// 100 ms, the answer written, and the connection closed.
final class StandInResponder: Sendable {
    private let listeners: [CInt]
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Connections answered, for /status.
    let answered = Atomic<Int>(0)

    private static let response = Array((
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + "Content-Length: 48\r\n\r\nspanhost is restarting its worker; retry shortly"
    ).utf8)

    /// `listeners` must be non-blocking.
    init(listeners: [CInt]) {
        self.listeners = listeners
    }

    func start() {
        let thread = Thread { [self] in
            defer { finished.signal() }
            var fds = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            while !stopped.load(ordering: .acquiring) {
                guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
                for entry in fds where entry.revents & Int16(POLLIN) != 0 {
                    guard !stopped.load(ordering: .acquiring) else { break }
                    // Linux: the accepted socket is blocking (it does not inherit O_NONBLOCK).
                    let connection = accept(entry.fd, nil, nil)
                    guard connection >= 0 else { continue }  // the client left
                    _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                    answer(connection)
                }
            }
        }
        thread.name = "stand-in 503"
        thread.start()
    }

    /// Stops accepting; returns once the thread has let go of the sockets.
    func stop() {
        stopped.store(true, ordering: .releasing)
        finished.wait()
    }

    private func answer(_ connection: CInt) {
        defer { close(connection) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Read what the client sends first (its head, some body), so closing does not reset
        // the connection before it reads the answer.
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        var seen = Data()
        let endOfHead = Data("\r\n\r\n".utf8)
        while seen.count < 64 << 10 {
            let n = read(connection, &buffer, buffer.count)
            guard n > 0 else { break }
            seen.append(contentsOf: buffer[0..<n])
            if seen.range(of: endOfHead) != nil { break }
        }
        _ = Self.response.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(connection, Int32(SHUT_WR))
        for _ in 0..<16 where read(connection, &buffer, buffer.count) > 0 {}
        answered.add(1, ordering: .relaxed)
    }
}
