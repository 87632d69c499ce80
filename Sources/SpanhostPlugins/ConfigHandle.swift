import CSpanhost
import Foundation
import SpanhostConfig

/// The `spanhost_config *` a plugin reads its settings through. Strings handed out are copied
/// into C memory owned by the handle, so they live as long as the instance.
final class ConfigHandle: @unchecked Sendable {
    let value: ConfigValue
    private let lock = NSLock()
    private var strings: [UnsafeMutablePointer<CChar>] = []

    init(_ value: ConfigValue) { self.value = value }

    deinit { strings.forEach { free($0) } }

    /// A C copy of `s` that lives as long as this handle.
    func keep(_ s: String) -> spanhost_str {
        let utf8 = Array(s.utf8) + [0] // NUL-terminated as a courtesy; len excludes it
        let buffer = malloc(max(utf8.count, 1))!.assumingMemoryBound(to: CChar.self)
        utf8.withUnsafeBytes { source in UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress!, byteCount: utf8.count) }
        lock.withLock { strings.append(buffer) }
        return spanhost_str(ptr: UnsafePointer(buffer), len: utf8.count - 1)
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) -> ConfigHandle? {
        guard let pointer else { return nil }
        return Unmanaged<ConfigHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
