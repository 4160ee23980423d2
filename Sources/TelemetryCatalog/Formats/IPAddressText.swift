/// IPv4 and IPv6 address text, checked as JSON Schema's `ipv4` and `ipv6` formats check it.
enum IPAddressText {
    /// Dotted quad, four decimal octets 0-255 without leading zeros.
    static func isIPv4(_ bytes: UnsafeRawBufferPointer, from start: Int = 0, to end: Int? = nil) -> Bool {
        let end = end ?? bytes.count
        var i = start
        for part in 0..<4 {
            if part > 0 {
                guard i < end, bytes[i] == UInt8(ascii: ".") else { return false }
                i += 1
            }
            let digitsStart = i
            var value = 0
            while i < end, bytes[i] &- UInt8(ascii: "0") < 10, i - digitsStart < 3 {
                value = value * 10 + Int(bytes[i] - UInt8(ascii: "0"))
                i += 1
            }
            let length = i - digitsStart
            guard length > 0, value <= 255, !(length > 1 && bytes[digitsStart] == UInt8(ascii: "0")) else { return false }
        }
        return i == end
    }

    /// RFC 4291 text: eight groups of 1-4 hex digits, one `::` for a run of zero groups, an optional
    /// trailing dotted quad for the last 32 bits. Zone ids (`%eth0`) are refused.
    static func isIPv6(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        guard n >= 2, n <= 45 else { return false }
        var groups = 0
        var sawDoubleColon = false
        var i = 0
        if bytes[0] == UInt8(ascii: ":") {
            guard bytes[1] == UInt8(ascii: ":") else { return false }
            sawDoubleColon = true
            i = 2
            if i == n { return true }
        }
        while i < n {
            // A group, or an embedded IPv4 address at the end.
            let groupStart = i
            var length = 0
            while i < n, hexValue(bytes[i]) != nil {
                i += 1
                length += 1
            }
            if i < n, bytes[i] == UInt8(ascii: ".") {
                guard groups + 2 <= 8, isIPv4(bytes, from: groupStart, to: n) else { return false }
                groups += 2
                i = n
                break
            }
            guard length >= 1, length <= 4 else { return false }
            groups += 1
            if i == n { break }
            guard bytes[i] == UInt8(ascii: ":") else { return false }
            i += 1
            if i < n, bytes[i] == UInt8(ascii: ":") {
                guard !sawDoubleColon else { return false }
                sawDoubleColon = true
                i += 1
                if i == n { break }
            } else if i == n {
                return false  // a single trailing colon
            }
        }
        return sawDoubleColon ? groups < 8 : groups == 8
    }
}
