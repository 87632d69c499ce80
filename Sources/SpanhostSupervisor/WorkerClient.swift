import Foundation
import NIOHTTP1
import SpanhostPluginHost
import SpanhostReceivers

/// A blocking HTTP/1.0 client for the worker's admin socket: one request per connection, the
/// worker closes it after answering. Called on the supervisor's thread pool only.
enum WorkerClient {
    struct Response {
        var status: Int
        var contentType: String?
        var body: [UInt8]

        var http: HTTPResponse {
            var headers = HTTPHeaders()
            if let contentType { headers.add(name: "Content-Type", value: contentType) }
            return HTTPResponse(status: HTTPResponseStatus(statusCode: status), headers: headers, body: body)
        }
    }

    /// Nil when the worker is not there (not started, restarting) or did not answer in time.
    static func call(socket path: String, method: String, path target: String, body: [UInt8] = [], timeout: Int) -> Response? {
        let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var time = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        let head = "\(method) \(target) HTTP/1.0\r\nHost: worker\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        guard ChildProcess.send(fd, Array(head.utf8) + body) else { return nil }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { return nil }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        return parse(received)
    }

    private static func parse(_ bytes: [UInt8]) -> Response? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else { return nil }
        let head = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.split(separator: " ").count >= 2,
              let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
        var contentType: String?
        for line in head.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-type" { contentType = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return Response(status: status, contentType: contentType, body: Array(bytes[(end + 4)...]))
    }
}
