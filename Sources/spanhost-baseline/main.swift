// The benchmark's ceiling: the same HTTP server as spanhostd's receiver, answering every
// POST /v1/traces with 200 after reading the body, without decoding it.
import NIOCore
import NIOPosix
import SpanhostReceivers

let port = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 4319
let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
let server = try await HTTPServer.start(host: "127.0.0.1", port: port, maxBodyBytes: 20 << 20, group: group) { request in
    _ = request  // the whole body has been read by the server before this runs
    return HTTPResponse(status: .ok, headers: ["Content-Type": "application/x-protobuf"])
}
print("baseline listening on 127.0.0.1:\(server.localPort)")
while true { try await Task.sleep(for: .seconds(3600)) }
