public import Foundation
import TelemetryCatalog

/// Writes events as compact JSON bytes, straight from their typed fields (no `Encoder`, no
/// intermediate strings): the emitter's hot path when it builds a batch.
public struct EventJSONWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8] = []
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)
    private var first = true

    public init(reservingCapacity capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    /// Starts over, keeping the buffer's capacity.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        first = true
    }

    /// Opens an event and writes its envelope; `skipping` names members the event itself defines.
    public mutating func begin(_ eventType: String, _ version: String, _ envelope: EventEnvelope, skipping: Set<String> = []) {
        bytes.append(UInt8(ascii: "{"))
        first = true
        member("event_id", envelope.eventID)
        member("event_type", eventType)
        member("timestamp", envelope.timestamp)
        member("tenant_id", envelope.tenantID)
        if !skipping.contains("user_id") { member("user_id", envelope.userID) }
        member("session_id", envelope.sessionID)
        member("source", envelope.source)
        member("version", version)
        member("metadata", envelope.metadata)
        member("tags", envelope.tags)
    }

    /// Closes the event.
    public mutating func end() { bytes.append(UInt8(ascii: "}")) }

    /// Ends a line (NDJSON).
    public mutating func newline() { bytes.append(UInt8(ascii: "\n")) }

    private mutating func key(_ name: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func member(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        key(name)
        string(value)
    }

    public mutating func member(_ name: StaticString, _ value: Int64?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func member(_ name: StaticString, _ value: Double?) {
        guard let value else { return }
        key(name)
        if value.isFinite {
            if value == value.rounded(), abs(value) < 1e15 {
                bytes.append(contentsOf: String(Int64(value)).utf8)
            } else {
                bytes.append(contentsOf: value.description.utf8)
            }
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
    }

    public mutating func member(_ name: StaticString, _ value: Bool?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func member(_ name: StaticString, _ value: UUID?) {
        guard let value else { return }
        key(name)
        // Written into a 38-byte buffer and appended once: an append a character checked the
        // array's storage 38 times.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 38) { text in
            text[0] = UInt8(ascii: "\"")
            var at = 1
            withUnsafeBytes(of: value.uuid) { raw in
                for (i, byte) in raw.enumerated() {
                    if i == 4 || i == 6 || i == 8 || i == 10 {
                        text[at] = UInt8(ascii: "-")
                        at += 1
                    }
                    text[at] = Self.hex[Int(byte >> 4)]
                    text[at + 1] = Self.hex[Int(byte & 0xF)]
                    at += 2
                }
            }
            text[37] = UInt8(ascii: "\"")
            bytes.append(contentsOf: UnsafeBufferPointer(text))
        }
    }

    public mutating func member(_ name: StaticString, _ value: Date?) {
        guard let value else { return }
        key(name)
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: ISO8601Micros.format(value).utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func member(_ name: StaticString, _ value: [String: String]?) {
        guard let value else { return }
        key(name)
        bytes.append(UInt8(ascii: "{"))
        for (i, (k, v)) in value.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            string(k)
            bytes.append(UInt8(ascii: ":"))
            string(v)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func member(_ name: StaticString, _ value: [String: EventJSON]?) {
        guard let value else { return }
        key(name)
        json(.object(value))
    }

    private mutating func json(_ value: EventJSON) {
        switch value {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let v): bytes.append(contentsOf: (v ? "true" : "false").utf8)
        case .integer(let v): bytes.append(contentsOf: String(v).utf8)
        case .number(let v): bytes.append(contentsOf: (v.isFinite ? v.description : "null").utf8)
        case .string(let v): string(v)
        case .array(let items):
            bytes.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                json(item)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (i, (k, v)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                string(k)
                bytes.append(UInt8(ascii: ":"))
                json(v)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string with the escapes RFC 8259 requires.
    /// `text` as a JSON string. The runs between characters that need escaping are appended
    /// whole (most strings are one run): an append a byte checked the array's storage each time.
    private mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for i in 0..<utf8.count {
                let byte = utf8[i]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if start < i { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i])) }
                start = i + 1
                switch byte {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    bytes.append(Self.hex[Int(byte >> 4)])
                    bytes.append(Self.hex[Int(byte & 0xF)])
                }
            }
            if start < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// RFC 3339 UTC timestamps with microseconds, through the catalog's own formatter and parser.
enum ISO8601Micros {
    static func format(_ date: Date) -> String {
        ISO8601Timestamp.string(fromMicroseconds: Int64((date.timeIntervalSince1970 * 1_000_000).rounded()))
    }

    static func parse(_ text: String) -> Int64? { ISO8601Timestamp.microseconds(text) }
}
