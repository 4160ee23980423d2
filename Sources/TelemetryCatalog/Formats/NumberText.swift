#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Exact conversions of JSON number text (already checked against RFC 8259's grammar).
enum NumberText {
    /// The result of reading a number as an integer.
    enum IntegerResult {
        case value(Int64)
        case notIntegral
        case outOfRange
    }

    /// Reads a JSON number exactly as a signed 64-bit integer, without going through a `Double`.
    ///
    /// `12`, `1.0`, `1.5e1` and `1e3` are integers; `1.5` is not; anything beyond ±2^63 is out of
    /// range however it is written.
    static func integer(_ bytes: UnsafeRawBufferPointer, integral: Bool) -> IntegerResult {
        var i = 0
        let n = bytes.count
        let negative = bytes[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        if integral {
            // Fast path: plain digits; accumulate as a negative number so Int64.min fits.
            var value: Int64 = 0
            while i < n {
                let d = Int64(bytes[i] - UInt8(ascii: "0"))
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.subtractingReportingOverflow(d)
                if o1 || o2 { return .outOfRange }
                value = s
                i += 1
            }
            if negative { return .value(value) }
            if value == Int64.min { return .outOfRange }
            return .value(-value)
        }
        // Significant digits and a decimal exponent: value = digits × 10^exponent.
        var digits: [UInt8] = []
        var exponent = 0
        var inFraction = false
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: ".") {
                inFraction = true
            } else if b | 0x20 == UInt8(ascii: "e") {
                break
            } else {
                if !(digits.isEmpty && b == UInt8(ascii: "0")) { digits.append(b - UInt8(ascii: "0")) }
                if inFraction { exponent -= 1 }
            }
            i += 1
        }
        if i < n {  // exponent part
            i += 1
            var sign = 1
            if bytes[i] == UInt8(ascii: "+") {
                i += 1
            } else if bytes[i] == UInt8(ascii: "-") {
                sign = -1
                i += 1
            }
            var e = 0
            while i < n {
                e = min(e * 10 + Int(bytes[i] - UInt8(ascii: "0")), 1_000_000_000)
                i += 1
            }
            exponent += sign * e
        }
        while let last = digits.last, last == 0 {
            digits.removeLast()
            exponent += 1
        }
        if digits.isEmpty { return .value(0) }
        if exponent < 0 { return .notIntegral }
        if digits.count + exponent > 19 { return .outOfRange }
        var value: Int64 = 0
        for d in digits + [UInt8](repeating: 0, count: exponent) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int64(d))
            if o1 || o2 { return .outOfRange }
            value = s
        }
        if negative { return .value(value) }
        if value == Int64.min { return .outOfRange }
        return .value(-value)
    }

    /// Reads a JSON number as the nearest `Double`; `nil` when it overflows to infinity.
    ///
    /// `bytes` must be followed in memory by a byte that cannot continue a number (inside a JSON
    /// object there always is one: `,`, `}` or whitespace), since `strtod` reads up to it.
    static func double(_ bytes: UnsafeRawBufferPointer, integral: Bool) -> Double? {
        if integral && bytes.count <= 16 {
            if case .value(let v) = integer(bytes, integral: true) { return Double(v) }
        }
        let p = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let value = strtod(p, nil)
        return value.isFinite ? value : nil
    }
}
