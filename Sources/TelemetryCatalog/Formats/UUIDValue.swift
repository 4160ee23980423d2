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
    init?(parsing bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 36 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        var nibbles = 0
        for i in 0..<36 {
            let b = bytes[i]
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard b == UInt8(ascii: "-") else { return nil }
                continue
            }
            guard let v = hexValue(b) else { return nil }
            if nibbles < 16 { high = high << 4 | UInt64(v) } else { low = low << 4 | UInt64(v) }
            nibbles += 1
        }
        self.high = high
        self.low = low
    }

    /// The version nibble (4 for random, 7 for time-ordered).
    public var version: Int { Int(high >> 12 & 0xF) }

    /// Lower-case 8-4-4-4-12 text.
    public var description: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var n = 0
            for i in 0..<32 {
                if i == 8 || i == 12 || i == 16 || i == 20 {
                    buffer[n] = UInt8(ascii: "-")
                    n += 1
                }
                let word = i < 16 ? high : low
                let shift = UInt64(60 - (i % 16) * 4)
                buffer[n] = digits[Int(word >> shift & 0xF)]
                n += 1
            }
            return n
        }
    }

    public static func < (lhs: UUIDValue, rhs: UUIDValue) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}
