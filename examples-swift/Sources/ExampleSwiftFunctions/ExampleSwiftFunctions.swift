// Functions for expressions, written in Swift: word_count(string) -> int, for conditions like
// `word_count(attributes["db.statement"]) > 50`. A missing attribute ({NULL, 0}) counts 0.
import SpanhostPluginKit

let wordCount: @convention(c) (spanhost_str, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<spanhost_status>?) -> Int32 = { text, result, _ in
    var words: Int64 = 0
    var inWord = false
    for byte in UnsafeRawBufferPointer(start: text.ptr, count: text.ptr == nil ? 0 : text.len) {
        let space = byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
        if !space && !inWord { words += 1 }
        inWord = !space
    }
    result?.pointee = words
    return Int32(SPANHOST_OK)
}

@_cdecl("spanhost_plugin_entry")
public func spanhostPluginEntry(_ host: UnsafePointer<spanhost_host_api>?) -> UnsafePointer<spanhost_plugin>? {
    SpanhostPlugin.functions([PluginFunction("word_count", [.string], returns: .int, description: "words in a text", wordCount)],
                             name: "example_swift_functions", version: "0.1.0", description: "word_count for expressions", host: host)
}
