import ArgumentParser
import Foundation
import TelemetryClient

/// The collector's address, as `--url http://HOST:PORT`.
struct CollectorURL: ExpressibleByArgument {
    var host: String
    var port: Int

    init?(argument: String) {
        guard argument.hasPrefix("http://") else { return nil }
        var rest = argument.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if rest.hasPrefix("[") {  // [::1]:8080
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : 80
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = Int(rest[rest.index(after: colon)...]) ?? -1
        } else {
            host = String(rest)
            port = 80
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
    }

    /// How `--help` shows a default: the URL itself.
    var defaultValueDescription: String { host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)" }

    /// A connection to the collector, with the API key of `TELEMETRY_API_KEY` when it is set (a key
    /// is read from the environment rather than an option, so that it does not show in `ps`).
    /// `expectsContinue` for posting batches (see ``HTTPConnection/expectContinueBytes``).
    func connection(expectsContinue: Bool = false) -> HTTPConnection {
        HTTPConnection(
            host: host, port: port, apiKey: ProcessInfo.processInfo.environment["TELEMETRY_API_KEY"].flatMap { $0.isEmpty ? nil : $0 },
            expectsContinue: expectsContinue)
    }
}

/// Percent-encodes a query parameter value.
func percentEncode(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            out += "%" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return out
}
