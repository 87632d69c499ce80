import ArgumentParser
import CSpanhost
import Foundation

/// `spanhost abi --json`: the plugin ABI's layout as this host was compiled, for authors who
/// mirror spanhost.h in another language and check their mirror against it.
struct ABI: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prints the plugin ABI's version, every struct's size, alignment and field offsets, and the host table's order.")

    @Flag(name: .long, help: "Print JSON (the only form).")
    var json = false

    func run() throws {
        var out = spanhost_buffer()
        guard sh_abi_layout_json(&out) == 0 else { throw ValidationError("out of memory") }
        defer { sh_buffer_free(&out) }
        print(String(decoding: UnsafeRawBufferPointer(start: out.data, count: out.len), as: UTF8.self))
    }
}
