import CSpanhost
import Foundation
import SpanhostConfig
import Synchronization

/// The `spanhost_config *` a plugin reads its settings through. Strings handed out are copied
/// into C memory owned by the handle, so they live as long as the instance.
final class ConfigHandle: Sendable {
    let value: ConfigValue
    private struct Record {
        /// Paths the plugin asked for (found or not), and maps whose keys it listed.
        var asked: Set<String> = []
        var listed: Set<String> = []
        /// Addresses of the C copies handed out, freed with the handle.
        var allocations: [UInt] = []
    }
    private let record = Mutex(Record())

    init(_ value: ConfigValue) { self.value = value }

    /// Looks up `path` and remembers that the plugin knows it.
    func lookup(_ path: String, listing: Bool = false) -> ConfigValue? {
        let canonical = path.split(separator: ".", omittingEmptySubsequences: true).joined(separator: ".")
        record.withLock { record in
            record.asked.insert(canonical)
            if listing { record.listed.insert(canonical) }
        }
        return value.lookup(path)
    }

    /// Map keys of the settings that the plugin never asked for, as dotted paths (keys in
    /// `ignoring` at the top are the host's). A key counts as asked when it, or anything below
    /// it, was looked up, or when a map above it had its keys listed (free-form maps such as
    /// headers).
    func unaskedKeys(ignoring hostKeys: [String]) -> (unasked: [String], known: [String]) {
        let (asked, listed) = record.withLock { ($0.asked, $0.listed) }
        func isAsked(_ path: String) -> Bool {
            if asked.contains(path) || listed.contains(where: { path.hasPrefix($0 + ".") || $0.isEmpty }) { return true }
            return asked.contains { $0.hasPrefix(path + ".") }
        }
        var unasked: [String] = []
        func walk(_ value: ConfigValue, _ prefix: String) {
            switch value {
            case .map(let entries):
                for entry in entries {
                    let path = prefix.isEmpty ? entry.key : "\(prefix).\(entry.key)"
                    if prefix.isEmpty && hostKeys.contains(entry.key) { continue }
                    if isAsked(path) { walk(entry.value, path) } else { unasked.append(path) }
                }
            case .list(let items):
                for (index, item) in items.enumerated() { walk(item, "\(prefix).\(index)") }
            default:
                break
            }
        }
        walk(value, "")
        let known = Set(asked.compactMap { $0.split(separator: ".").first.map(String.init) }).union(hostKeys).sorted()
        return (unasked, known)
    }

    deinit {
        for address in record.withLock({ $0.allocations }) { free(UnsafeMutableRawPointer(bitPattern: address)) }
    }

    /// A C array of copies of `items` that lives as long as this handle.
    func keep(_ items: [String]) -> UnsafePointer<spanhost_str> {
        let array = malloc(max(items.count, 1) * MemoryLayout<spanhost_str>.stride)!.bindMemory(to: spanhost_str.self, capacity: max(items.count, 1))
        for (index, item) in items.enumerated() { (array + index).initialize(to: keep(item)) }
        let address = UInt(bitPattern: array)
        record.withLock { $0.allocations.append(address) }
        return UnsafePointer(array)
    }

    /// A C copy of `s` that lives as long as this handle.
    func keep(_ s: String) -> spanhost_str {
        let utf8 = Array(s.utf8) + [0] // NUL-terminated as a courtesy; len excludes it
        let buffer = malloc(max(utf8.count, 1))!.assumingMemoryBound(to: CChar.self)
        utf8.withUnsafeBytes { source in UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress!, byteCount: utf8.count) }
        let address = UInt(bitPattern: buffer)
        record.withLock { $0.allocations.append(address) }
        return spanhost_str(ptr: UnsafePointer(buffer), len: utf8.count - 1)
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) -> ConfigHandle? {
        guard let pointer else { return nil }
        return Unmanaged<ConfigHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
