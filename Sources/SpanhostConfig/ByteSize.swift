import Foundation

/// A size in bytes from the config: an integer, or a number and a unit ("512KiB", "64MiB",
/// "1.5GB"). KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024; B is bytes.
public func parseBytes(_ value: ConfigValue, path: String) throws -> Int64 {
    if case .int(let n) = value {
        guard n >= 0 else { throw ConfigError(path, "must not be negative") }
        return n
    }
    guard let text = value.stringValue?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
        throw ConfigError(path, "must be a size like 1048576, 512KiB or 64MiB")
    }
    let digits = text.prefix { $0.isNumber || $0 == "." }
    let unit = text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
    let units: [String: Double] = ["": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
                                   "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824, "TiB": 1_099_511_627_776]
    guard let number = Double(digits), let scale = units[unit] else {
        throw ConfigError(path, "'\(text)' is not a size like 1048576, 512KiB or 64MiB")
    }
    let bytes = (number * scale).rounded()
    guard bytes.isFinite, bytes < 9.2e18 else { throw ConfigError(path, "'\(text)' is too large") }
    return Int64(bytes)
}
