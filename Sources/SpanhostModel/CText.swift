extension String {
    /// The text a C function wrote into `buffer` and ended with a NUL (a message, a hex digest):
    /// the bytes before the first NUL, read as UTF-8 (a byte that is not becomes U+FFFD).
    public init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
