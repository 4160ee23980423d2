/// RFC 3339 / ISO 8601 timestamps as the catalog reads them, for code outside the validator.
public enum ISO8601Timestamp {
    /// UTC microseconds since the Unix epoch of an RFC 3339 date-time with a zone, or `nil`.
    public static func microseconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { TimestampText.parseMicroseconds(UnsafeRawBufferPointer($0)) }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for UTC microseconds since the Unix epoch.
    public static func string(fromMicroseconds micros: Int64) -> String {
        TimestampText.format(microseconds: micros)
    }

    /// The length of the text ``write(microseconds:to:)`` writes.
    package static var canonicalLength: Int { TimestampText.canonicalLength }

    /// Writes ``string(fromMicroseconds:)``'s text as UTF-8 to `out` (``canonicalLength`` bytes);
    /// false, with nothing written, for a year outside 0001-9999.
    package static func write(microseconds: Int64, to out: UnsafeMutablePointer<UInt8>) -> Bool {
        TimestampText.write(microseconds: microseconds, to: out)
    }
}

/// RFC 3339 date-times (the profile of ISO 8601 that JSON Schema's `date-time` means), parsed to
/// UTC microseconds since the Unix epoch without Foundation's formatters.
enum TimestampText {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `T` and `Z` may be lower case.
    ///
    /// Years 0001-9999; seconds 00-59 (leap seconds are refused, as JSON Schema validators do);
    /// fractions of any length, truncated to microseconds. Returns `nil` when the text is not such a
    /// date-time or names a day that does not exist.
    static func parseMicroseconds(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        let n = bytes.count
        guard n >= 20 else { return nil }
        func digits(_ at: Int, _ count: Int) -> Int? {
            var value = 0
            for i in at..<(at + count) {
                let d = bytes[i] &- UInt8(ascii: "0")
                guard d < 10 else { return nil }
                value = value * 10 + Int(d)
            }
            return value
        }
        guard let year = digits(0, 4), bytes[4] == UInt8(ascii: "-"),
            let month = digits(5, 2), bytes[7] == UInt8(ascii: "-"),
            let day = digits(8, 2), bytes[10] | 0x20 == UInt8(ascii: "t"),
            let hour = digits(11, 2), bytes[13] == UInt8(ascii: ":"),
            let minute = digits(14, 2), bytes[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return nil }
        guard year >= 1, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour <= 23, minute <= 59, second <= 59
        else { return nil }

        var i = 19
        var micros = 0
        if bytes[i] == UInt8(ascii: ".") {
            i += 1
            let fractionStart = i
            var scale = 100_000
            while i < n, bytes[i] &- UInt8(ascii: "0") < 10 {
                micros += Int(bytes[i] - UInt8(ascii: "0")) * scale
                scale /= 10
                i += 1
            }
            guard i > fractionStart else { return nil }
        }
        guard i < n else { return nil }
        var offsetMinutes = 0
        if bytes[i] | 0x20 == UInt8(ascii: "z") {
            i += 1
        } else if bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
            guard i + 6 == n, let oh = digits(i + 1, 2), bytes[i + 3] == UInt8(ascii: ":"), let om = digits(i + 4, 2),
                oh <= 23, om <= 59
            else { return nil }
            offsetMinutes = (oh * 60 + om) * (bytes[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == n else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetMinutes * 60)
        return seconds * 1_000_000 + Int64(micros)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The length of ``write(microseconds:to:)``'s text.
    static let canonicalLength = 27

    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` (``canonicalLength`` bytes) for UTC microseconds since
    /// the epoch; false, with nothing written, for a year outside 0001-9999.
    static func write(microseconds: Int64, to out: UnsafeMutablePointer<UInt8>) -> Bool {
        let micros = ((microseconds % 1_000_000) + 1_000_000) % 1_000_000
        let totalSeconds = (microseconds - micros) / 1_000_000
        let secondsOfDay = ((totalSeconds % 86_400) + 86_400) % 86_400
        let (year, month, day) = civil(days: Int((totalSeconds - secondsOfDay) / 86_400))
        guard (1...9999).contains(year) else { return false }
        func put(_ value: Int, _ width: Int, at offset: Int) {
            var v = value
            for i in stride(from: offset + width - 1, through: offset, by: -1) {
                out[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
        }
        let s = Int(secondsOfDay)
        put(year, 4, at: 0)
        out[4] = UInt8(ascii: "-")
        put(month, 2, at: 5)
        out[7] = UInt8(ascii: "-")
        put(day, 2, at: 8)
        out[10] = UInt8(ascii: "T")
        put(s / 3600, 2, at: 11)
        out[13] = UInt8(ascii: ":")
        put(s / 60 % 60, 2, at: 14)
        out[16] = UInt8(ascii: ":")
        put(s % 60, 2, at: 17)
        out[19] = UInt8(ascii: ".")
        put(Int(micros), 6, at: 20)
        out[26] = UInt8(ascii: "Z")
        return true
    }

    /// Year, month and day of a count of days since 1970-01-01 (civil_from_days).
    private static func civil(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for UTC microseconds since the epoch.
    static func format(microseconds: Int64) -> String {
        let text = String(unsafeUninitializedCapacity: canonicalLength) { buffer in
            write(microseconds: microseconds, to: buffer.baseAddress!) ? canonicalLength : 0
        }
        if !text.isEmpty { return text }
        // A year outside 0001-9999 (never parsed, only computed): as many digits as it takes.
        let micros = ((microseconds % 1_000_000) + 1_000_000) % 1_000_000
        let totalSeconds = (microseconds - micros) / 1_000_000
        let secondsOfDay = ((totalSeconds % 86_400) + 86_400) % 86_400
        let (year, month, day) = civil(days: Int((totalSeconds - secondsOfDay) / 86_400))
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let s = Int(secondsOfDay)
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(s / 3600, 2)):\(pad(s / 60 % 60, 2)):\(pad(s % 60, 2)).\(pad(Int(micros), 6))Z"
    }
}
