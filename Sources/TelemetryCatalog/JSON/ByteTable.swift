import Foundation

/// An immutable open-addressing hash table from byte strings to small integers.
///
/// The validator looks up every member name of every event; hashing the raw bytes here avoids
/// creating a `String` (and its Unicode-aware hashing) per key.
struct ByteTable: Sendable {
    private var blob: [UInt8] = []
    private var offsets: [Int] = [0]
    private var values: [Int32] = []
    private var slots: [Int32]
    private let mask: Int

    /// Builds a table of `entries`; later duplicates of a key are ignored.
    init(_ entries: [(key: [UInt8], value: Int)]) {
        var capacity = 16
        while capacity < entries.count * 4 { capacity <<= 1 }
        slots = Array(repeating: -1, count: capacity)
        mask = capacity - 1
        for (key, value) in entries {
            let found = key.withUnsafeBufferPointer { lookup($0.baseAddress, $0.count) }
            guard found == nil else { continue }
            let index = values.count
            blob.append(contentsOf: key)
            offsets.append(blob.count)
            values.append(Int32(value))
            var slot = Self.hash(key.withUnsafeBufferPointer { $0.baseAddress }, key.count) & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index)
        }
    }

    /// A hash of the `n` bytes at `p`, eight at a time (a byte-at-a-time FNV-1a, one multiply a
    /// byte, was a quarter of the validator's own time: every member name of every event is
    /// looked up).
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>?, _ n: Int) -> Int {
        let multiplier: UInt64 = 0xFF51_AFD7_ED55_8CCD
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: n)
        if let p {
            let raw = UnsafeRawPointer(p)
            var i = 0
            while i &+ 8 <= n {
                h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* multiplier
                h ^= h >> 32
                i &+= 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(p[i]) << shift
                shift &+= 8
                i &+= 1
            }
            h = (h ^ tail) &* multiplier
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The value stored for the `n` bytes at `p`, if any.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>?, _ n: Int) -> Int? {
        var slot = Self.hash(p, n) & mask
        return blob.withUnsafeBufferPointer { blobBytes -> Int? in
            while true {
                let index = Int(slots[slot])
                if index < 0 { return nil }
                let start = offsets[index]
                if offsets[index + 1] - start == n {
                    if n == 0 || memcmp(blobBytes.baseAddress! + start, p!, n) == 0 { return Int(values[index]) }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    /// The value stored for the bytes of `raw`, if any.
    @inline(__always)
    func lookup(_ raw: UnsafeRawBufferPointer) -> Int? {
        lookup(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
    }

    /// The value stored for `key`, if any.
    func lookup(_ key: some Collection<UInt8>) -> Int? {
        let bytes = Array(key)
        return bytes.withUnsafeBufferPointer { lookup($0.baseAddress, $0.count) }
    }
}
