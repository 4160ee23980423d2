/// A validating JSON scanner that works on raw UTF-8 bytes and never builds an object tree.
///
/// The validator needs, for each top-level member of an event, where its key and value lie in the
/// input and what kind of value it is; nested objects are checked for well-formedness (and depth) and
/// then treated as opaque spans. Working on spans is what makes validation several times faster than
/// `JSONSerialization`, which allocates a dictionary, strings and boxed numbers for every event.
///
/// Grammar: RFC 8259, strictly. Strings must be valid UTF-8 (no overlong forms, no surrogates), with
/// no raw control characters and no lone `\u` surrogate escapes; numbers have no leading zeros,
/// `NaN` or `Infinity`. Nesting deeper than `maxDepth` is an error rather than a deep recursion.
package struct JSONScanner {
    /// The kind of a scanned JSON value.
    package enum Kind: UInt8 {
        case string, number, object, array, `true`, `false`, null

        /// The JSON name of the kind, as used in error messages.
        var name: String {
            switch self {
            case .string: "a string"
            case .number: "a number"
            case .object: "an object"
            case .array: "an array"
            case .true, .false: "a bool"
            case .null: "null"
            }
        }
    }

    /// A scanned value: its kind and byte range in the input.
    ///
    /// For strings the range excludes the quotes. `escaped` is set when a string contains a backslash
    /// escape (so its bytes must be decoded before use); `integral` is set when a number has neither
    /// fraction nor exponent.
    package struct Token {
        package var kind: Kind
        package var start: Int
        package var end: Int
        package var escaped: Bool = false
        package var integral: Bool = false
    }

    /// Why the bytes are not JSON, and where.
    package struct Failure: Error {
        package enum Reason {
            case malformed(String)
            case tooDeep
        }
        package var reason: Reason
        package var offset: Int
    }

    package let base: UnsafePointer<UInt8>
    package let count: Int
    package let maxDepth: Int
    package var position: Int = 0

    package init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        // An empty buffer may have no base address; any valid pointer works since count is 0.
        self.base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        self.count = bytes.count
        self.maxDepth = maxDepth
    }

    @inline(__always)
    func byte(at index: Int) -> UInt8 { base[index] }

    @inline(__always)
    package var atEnd: Bool { position >= count }

    @inline(__always)
    package var current: UInt8? { position < count ? base[position] : nil }

    package func fail(_ message: String, at offset: Int? = nil) -> Failure {
        Failure(reason: .malformed(message), offset: offset ?? position)
    }

    @inline(__always)
    package mutating func skipWhitespace() {
        while position < count {
            let b = base[position]
            // space, \t, \n, \r
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D {
                position += 1
            } else {
                return
            }
        }
    }

    /// Consumes `expected` (after whitespace) or fails with a message naming what was wanted.
    @inline(__always)
    mutating func expect(_ expected: UInt8, _ what: String) throws(Failure) {
        skipWhitespace()
        guard position < count else { throw fail("unexpected end of input, expected \(what)") }
        guard base[position] == expected else { throw fail("expected \(what), found \(describeByte(base[position]))") }
        position += 1
    }

    package func describeByte(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    /// Scans one value starting at the current position (after whitespace).
    ///
    /// - Parameter depth: the nesting depth of the value's container; objects and arrays at a depth
    ///   beyond `maxDepth` fail with `.tooDeep`.
    package mutating func scanValue(depth: Int) throws(Failure) -> Token {
        skipWhitespace()
        guard position < count else { throw fail("unexpected end of input, expected a value") }
        let start = position
        switch base[position] {
        case UInt8(ascii: "\""):
            return try scanString()
        case UInt8(ascii: "{"):
            try scanObject(depth: depth + 1)
            return Token(kind: .object, start: start, end: position)
        case UInt8(ascii: "["):
            try scanArray(depth: depth + 1)
            return Token(kind: .array, start: start, end: position)
        case UInt8(ascii: "t"):
            try scanLiteral("true")
            return Token(kind: .true, start: start, end: position)
        case UInt8(ascii: "f"):
            try scanLiteral("false")
            return Token(kind: .false, start: start, end: position)
        case UInt8(ascii: "n"):
            try scanLiteral("null")
            return Token(kind: .null, start: start, end: position)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try scanNumber()
        case let b:
            throw fail("expected a value, found \(describeByte(b))")
        }
    }

    private mutating func scanLiteral(_ literal: StaticString) throws(Failure) {
        let n = literal.utf8CodeUnitCount
        guard position + n <= count else { throw fail("truncated literal, expected \(literal)") }
        let lit = literal.utf8Start
        for i in 0..<n where base[position + i] != lit[i] {
            throw fail("invalid literal, expected \(literal)")
        }
        position += n
    }

    /// Scans an object whose `{` is at the current position, checking every member.
    mutating func scanObject(depth: Int) throws(Failure) {
        guard depth <= maxDepth else { throw Failure(reason: .tooDeep, offset: position) }
        position += 1  // {
        skipWhitespace()
        if position < count && base[position] == UInt8(ascii: "}") {
            position += 1
            return
        }
        while true {
            skipWhitespace()
            guard position < count, base[position] == UInt8(ascii: "\"") else {
                throw atEnd ? fail("unexpected end of input inside an object") : fail("expected a member name in quotes")
            }
            _ = try scanString()
            try expect(UInt8(ascii: ":"), "':' after a member name")
            _ = try scanValue(depth: depth)
            skipWhitespace()
            guard position < count else { throw fail("unexpected end of input inside an object") }
            let b = base[position]
            position += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "}") { return }
            throw fail("expected ',' or '}' in an object, found \(describeByte(b))", at: position - 1)
        }
    }

    /// Scans an array whose `[` is at the current position, checking every element.
    mutating func scanArray(depth: Int) throws(Failure) {
        guard depth <= maxDepth else { throw Failure(reason: .tooDeep, offset: position) }
        position += 1  // [
        skipWhitespace()
        if position < count && base[position] == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            _ = try scanValue(depth: depth)
            skipWhitespace()
            guard position < count else { throw fail("unexpected end of input inside an array") }
            let b = base[position]
            position += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "]") { return }
            throw fail("expected ',' or ']' in an array, found \(describeByte(b))", at: position - 1)
        }
    }

    /// Scans a string whose opening quote is at the current position; validates UTF-8 and escapes.
    mutating func scanString() throws(Failure) -> Token {
        position += 1  // opening quote
        let start = position
        var escaped = false
        while true {
            // Fastest path: eight bytes at a time while none is a quote, a backslash, a control
            // character or non-ASCII (each test is exact for the word as a whole).
            while position &+ 8 <= count {
                let word = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let high: UInt64 = 0x8080_8080_8080_8080
                let quote = word ^ (ones &* 0x22)
                let backslash = word ^ (ones &* 0x5C)
                let below20 = (word &- ones &* 0x20) & ~word
                let isQuote = (quote &- ones) & ~quote
                let isBackslash = (backslash &- ones) & ~backslash
                if (word | below20 | isQuote | isBackslash) & high != 0 { break }
                position &+= 8
            }
            // Fast path: plain printable ASCII.
            while position < count {
                let b = base[position]
                if b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                    position += 1
                } else {
                    break
                }
            }
            guard position < count else { throw fail("unterminated string", at: start - 1) }
            let b = base[position]
            if b == UInt8(ascii: "\"") {
                let token = Token(kind: .string, start: start, end: position, escaped: escaped)
                position += 1
                return token
            } else if b == UInt8(ascii: "\\") {
                escaped = true
                try scanEscape()
            } else if b < 0x20 {
                throw fail("raw control character \(describeByte(b)) in a string (escape it)")
            } else {
                try scanUTF8Sequence()
            }
        }
    }

    private mutating func scanEscape() throws(Failure) {
        guard position + 1 < count else { throw fail("unterminated escape in a string") }
        let e = base[position + 1]
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
            UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            let unit = try hex4(at: position + 2)
            position += 6
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard position + 1 < count, base[position] == UInt8(ascii: "\\"), base[position + 1] == UInt8(ascii: "u")
                else { throw fail("unpaired high surrogate escape \\u\(String(unit, radix: 16, uppercase: true))") }
                let low = try hex4(at: position + 2)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw fail("high surrogate escape not followed by a low surrogate")
                }
                position += 6
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw fail("unpaired low surrogate escape \\u\(String(unit, radix: 16, uppercase: true))")
            }
        default:
            throw fail("invalid escape '\\\(describeByte(e))' in a string")
        }
    }

    private func hex4(at index: Int) throws(Failure) -> UInt16 {
        guard index + 4 <= count else { throw fail("truncated \\u escape") }
        var value: UInt16 = 0
        for i in 0..<4 {
            guard let digit = hexValue(base[index + i]) else { throw fail("invalid \\u escape", at: index) }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence (Unicode 15, table 3-7) at the current position.
    private mutating func scanUTF8Sequence() throws(Failure) {
        let b0 = base[position]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw fail("invalid UTF-8 byte 0x\(String(b0, radix: 16, uppercase: true)) in a string")
        }
        guard position + length <= count else { throw fail("truncated UTF-8 sequence in a string") }
        let b1 = base[position + 1]
        guard b1 >= lower && b1 <= upper else { throw fail("invalid UTF-8 sequence in a string") }
        for i in 2..<length where base[position + i] & 0xC0 != 0x80 {
            throw fail("invalid UTF-8 sequence in a string")
        }
        position += length
    }

    /// Scans a number per RFC 8259's grammar.
    mutating func scanNumber() throws(Failure) -> Token {
        let start = position
        if base[position] == UInt8(ascii: "-") { position += 1 }
        guard position < count, isDigit(base[position]) else { throw fail("invalid number: expected a digit") }
        if base[position] == UInt8(ascii: "0") {
            position += 1
            if position < count && isDigit(base[position]) { throw fail("invalid number: leading zero") }
        } else {
            while position < count && isDigit(base[position]) { position += 1 }
        }
        var integral = true
        if position < count && base[position] == UInt8(ascii: ".") {
            integral = false
            position += 1
            guard position < count, isDigit(base[position]) else { throw fail("invalid number: expected a digit after '.'") }
            while position < count && isDigit(base[position]) { position += 1 }
        }
        if position < count && (base[position] | 0x20) == UInt8(ascii: "e") {
            integral = false
            position += 1
            if position < count && (base[position] == UInt8(ascii: "+") || base[position] == UInt8(ascii: "-")) { position += 1 }
            guard position < count, isDigit(base[position]) else { throw fail("invalid number: expected a digit in the exponent") }
            while position < count && isDigit(base[position]) { position += 1 }
        }
        return Token(kind: .number, start: start, end: position, integral: integral)
    }
}

@inline(__always)
func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

@inline(__always)
func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
    default: nil
    }
}

extension JSONScanner {
    /// Decodes the content of a string token (escapes resolved) as UTF-8 bytes.
    ///
    /// Only valid for tokens produced by `scanString`, whose escapes are known to be well-formed.
    func decodeString(_ token: Token) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.end - token.start)
        decodeString(from: token.start, to: token.end, into: &out)
        return out
    }

    package func decodeString(from start: Int, to end: Int, into out: inout [UInt8]) {
        var i = start
        while i < end {
            let b = base[i]
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                i += 1
                continue
            }
            let e = base[i + 1]
            switch e {
            case UInt8(ascii: "b"): out.append(0x08); i += 2
            case UInt8(ascii: "f"): out.append(0x0C); i += 2
            case UInt8(ascii: "n"): out.append(0x0A); i += 2
            case UInt8(ascii: "r"): out.append(0x0D); i += 2
            case UInt8(ascii: "t"): out.append(0x09); i += 2
            case UInt8(ascii: "u"):
                var scalar = UInt32(unsafeHex4(at: i + 2))
                i += 6
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    let low = UInt32(unsafeHex4(at: i + 2))
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                appendUTF8(scalar, to: &out)
            default: out.append(e); i += 2  // \" \\ \/
            }
        }
    }

    private func unsafeHex4(at index: Int) -> UInt16 {
        var value: UInt16 = 0
        for k in 0..<4 { value = value << 4 | UInt16(hexValue(base[index + k]) ?? 0) }
        return value
    }
}

func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | scalar >> 6))
        out.append(UInt8(0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | scalar >> 12))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    default:
        out.append(UInt8(0xF0 | scalar >> 18))
        out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    }
}
