import Foundation

/// Time-ordered UUIDs (RFC 9562 version 7): 48 bits of Unix milliseconds, then a 12-bit counter
/// that keeps ids from one generator increasing within a millisecond, then 62 random bits.
struct UUIDv7Generator: Sendable {
    private var lastMillis: Int64 = 0
    private var counter: UInt16 = 0
    private var random: UInt64

    init() {
        var seed: UInt64 = 0
        while seed == 0 { seed = UInt64.random(in: 1...UInt64.max) }
        random = seed
    }

    private mutating func nextRandom() -> UInt64 {
        // xorshift64*: fast, and enough for the 62 random bits of an id (not for secrets).
        random ^= random >> 12
        random ^= random << 25
        random ^= random >> 27
        return random &* 0x2545_F491_4F6C_DD1D
    }

    mutating func next(_ now: Date) -> UUID {
        var millis = Int64(now.timeIntervalSince1970 * 1000)
        if millis <= lastMillis {
            millis = lastMillis
            counter &+= 1
            if counter > 0xFFF {
                // More than 4096 ids in one millisecond: borrow the next one.
                millis += 1
                counter = 0
            }
        } else {
            counter = UInt16(truncatingIfNeeded: nextRandom() & 0x3FF)
        }
        lastMillis = millis
        let tail = nextRandom()
        let m = UInt64(bitPattern: millis)
        return UUID(
            uuid: (
                UInt8(truncatingIfNeeded: m >> 40), UInt8(truncatingIfNeeded: m >> 32), UInt8(truncatingIfNeeded: m >> 24),
                UInt8(truncatingIfNeeded: m >> 16), UInt8(truncatingIfNeeded: m >> 8), UInt8(truncatingIfNeeded: m),
                0x70 | UInt8(counter >> 8), UInt8(truncatingIfNeeded: counter),
                0x80 | UInt8(truncatingIfNeeded: tail >> 58), UInt8(truncatingIfNeeded: tail >> 48),
                UInt8(truncatingIfNeeded: tail >> 40), UInt8(truncatingIfNeeded: tail >> 32), UInt8(truncatingIfNeeded: tail >> 24),
                UInt8(truncatingIfNeeded: tail >> 16), UInt8(truncatingIfNeeded: tail >> 8), UInt8(truncatingIfNeeded: tail)
            ))
    }
}
