/// A 128-bit UUID held as two integers: parsing one allocates nothing.
public struct UUIDValue: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The first 8 bytes, big-endian.
    public var high: UInt64
    /// The last 8 bytes, big-endian.
    public var low: UInt64

    /// Creates a UUID from its two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses RFC 9562 text: 8-4-4-4-12 hex digits, either case.
    public init?(_ text: String) {
        var text = text
        guard let value = text.withUTF8({ UUIDValue(parsing: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = value
    }

    /// Parses RFC 9562 text from raw bytes.
    package init?(parsing bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 36, let p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let dash = UInt8(ascii: "-")
        guard p[8] == dash, p[13] == dash, p[18] == dash, p[23] == dash else { return nil }
        // Accumulate nibbles; any non-hex byte sets the table's 0x10 bit, checked once at the end.
        var high: UInt64 = 0
        var low: UInt64 = 0
        var bad: UInt8 = 0
        Self.hexTable.withUnsafeBufferPointer { table in
            @inline(__always) func run(_ start: Int, _ count: Int, _ word: inout UInt64) {
                for i in start..<(start + count) {
                    let v = table[Int(p[i])]
                    bad |= v
                    word = word << 4 | UInt64(v & 0x0F)
                }
            }
            run(0, 8, &high)
            run(9, 4, &high)
            run(14, 4, &high)
            run(19, 4, &low)
            run(24, 12, &low)
        }
        guard bad & 0x10 == 0 else { return nil }
        self.high = high
        self.low = low
    }

    /// Hex digit values; 0x10 marks a byte that is not a hex digit.
    private static let hexTable: [UInt8] = (0..<256).map { b in hexValue(UInt8(b)) ?? 0x10 }

    /// The version nibble (4 for random, 7 for time-ordered).
    public var version: Int { Int(high >> 12 & 0xF) }

    /// The 16 bytes, big-endian.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var bytes = (high.bigEndian, low.bigEndian)
        return try withUnsafeBytes(of: &bytes) { try body($0) }
    }

    /// Reads 16 big-endian bytes.
    ///
    /// Inlinable, so that it is specialised where it is called: unspecialised, each call looked up
    /// generic metadata (~2 µs, measured reading operations back).
    @inlinable
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        if let value = bytes.withContiguousStorageIfAvailable({ UUIDValue(contiguous: UnsafeRawBufferPointer($0)) }) {
            self = value
            return
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(b) } else { low = low << 8 | UInt64(b) }
        }
        self.high = high
        self.low = low
    }

    /// Reads 16 big-endian bytes in place.
    @usableFromInline
    init(contiguous raw: UnsafeRawBufferPointer) {
        high = UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self))
        low = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    private func write(into buffer: UnsafeMutableBufferPointer<UInt8>) {
        let digits: StaticString = "0123456789abcdef"
        let table = digits.utf8Start
        var n = 0
        for i in 0..<32 {
            if i == 8 || i == 12 || i == 16 || i == 20 {
                buffer[n] = UInt8(ascii: "-")
                n += 1
            }
            let word = i < 16 ? high : low
            let shift = UInt64(60 - (i % 16) * 4)
            buffer[n] = table[Int(word >> shift & 0xF)]
            n += 1
        }
    }

    /// Appends the lower-case 8-4-4-4-12 text to `out`, allocating nothing of its own.
    package func appendText(to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { buffer in
            write(into: buffer)
            out.append(contentsOf: buffer)
        }
    }

    /// Lower-case 8-4-4-4-12 text as UTF-8 bytes (36 of them), without making a `String` first.
    public var textBytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 36) { buffer, count in
            write(into: buffer)
            count = 36
        }
    }

    /// Lower-case 8-4-4-4-12 text.
    public var description: String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            write(into: buffer)
            return 36
        }
    }

    public static func < (lhs: UUIDValue, rhs: UUIDValue) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}
