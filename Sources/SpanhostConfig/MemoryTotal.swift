import Foundation

/// The memory this process may use, as the Collector's memory_limiter measures it for
/// `limit_percentage`: the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) when
/// there is one, else the machine's physical memory.
enum MemoryTotal {
    static var bytes: UInt64 {
        let physical = UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        for file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let limit = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            // "max", or v1's "no limit" (a number near 2^63): the machine's memory.
            if limit > 0 && limit < physical { return limit }
        }
        return physical
    }
}
