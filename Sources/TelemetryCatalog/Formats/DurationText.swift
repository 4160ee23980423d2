/// Durations as people write them on command lines and in query strings: a whole number and a
/// unit, `s`, `m`, `h` or `d` (`90s`, `5m`, `12h`, `30d`).
public enum DurationText {
    /// The number of seconds `text` stands for, or `nil` when it is no positive duration.
    public static func seconds(_ text: String) -> Int64? {
        guard let unit = text.last, let value = Int64(text.dropLast()), value > 0, value < 1 << 40 else { return nil }
        switch unit {
        case "d": return value * 86_400
        case "h": return value * 3600
        case "m": return value * 60
        case "s": return value
        default: return nil
        }
    }
}
