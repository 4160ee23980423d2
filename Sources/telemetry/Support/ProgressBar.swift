#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-line progress bar on standard error, drawn only when standard error is a terminal.
struct ProgressBar {
    let total: Int?
    let enabled: Bool
    /// What the amounts count: bytes, or items named by this word (e.g. "events").
    let items: String?
    private let started = MonotonicClock.now()
    private var lastDraw: UInt64 = 0

    /// - Parameters:
    ///   - total: the expected number of bytes, when known.
    ///   - minimumTotal: below this many bytes no bar is drawn (the work ends too soon to need one).
    ///   - items: when set, the amounts are counts of these (e.g. "events") rather than bytes.
    init(total: Int?, minimumTotal: Int = 8 << 20, items: String? = nil) {
        self.total = total
        self.items = items
        self.enabled = isatty(STDERR_FILENO) != 0 && (total ?? Int.max) >= minimumTotal
    }

    /// Redraws the bar at most ten times a second.
    mutating func update(bytes: Int, items: Int) {
        guard enabled else { return }
        let now = MonotonicClock.now()
        guard now - lastDraw >= 100_000_000 else { return }
        lastDraw = now
        let seconds = Double(now - started) / 1e9
        let rate = seconds > 0 ? Double(items) / seconds : 0
        var line = "\r"
        if let total, total > 0 {
            let fraction = min(1, Double(bytes) / Double(total))
            let width = 30
            let filled = Int(fraction * Double(width))
            line += "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "] "
            line += "\(Int(fraction * 100))%  \(format(bytes)) / \(format(total))"
        } else {
            line += format(bytes)
        }
        line += "  \(formatCount(Int(rate)))/s  "
        writeStandardError(line)
    }

    private func format(_ amount: Int) -> String {
        items.map { "\(formatCount(amount)) \($0)" } ?? formatBytes(amount)
    }

    /// Erases the bar.
    func finish() {
        guard enabled else { return }
        writeStandardError("\r" + String(repeating: " ", count: 79) + "\r")
    }
}

/// Nanoseconds from a monotonic clock.
enum MonotonicClock {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format1: value) + " " + units[unit]
}

func formatCount(_ n: Int) -> String {
    if n >= 1_000_000 { return String(format1: Double(n) / 1e6) + "M" }
    if n >= 10_000 { return "\(n / 1000)k" }
    return "\(n)"
}

extension String {
    /// A number with one decimal.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}

/// The process's peak resident memory (VmHWM), where /proc tells it.
func peakResidentBytes() -> Int? {
    guard let file = fopen("/proc/self/status", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmHWM:") {
            let digits = text.dropFirst(6).filter { $0.isNumber }
            return Int(digits).map { $0 * 1024 }
        }
    }
    return nil
}
