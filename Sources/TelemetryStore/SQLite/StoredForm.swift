import Foundation
import GRDB
import GRDBSQLite
import TelemetryCatalog

/// How the events table keeps an event's JSON without writing its fields twice.
///
/// Every catalog field of an event is in a typed column. The `_json` column keeps the rest: the
/// normalised JSON with each member whose column gives back its exact text left out, and a mark of
/// two bytes in its place (the value's kind, then the column's position in the table). The JSON
/// is put back together when it is read: each mark becomes `"name":value`, the name from the column
/// and the value rendered from it. About two thirds of a typical event's bytes then stand once in
/// the row instead of twice, and every byte of a row is written to the WAL and again at checkpoint:
/// the file measured 45% smaller (see docs/collector.md, "What a row holds").
///
/// A member stays in the JSON, as sent, when its column would not give back the same text: a string
/// with escapes, a UUID in capitals, a number such as `1.0`, `1e3` or `-0.0`, a timestamp that is not UTC
/// with six decimals (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), or a value whose column has another type.
/// Objects have no column and always stay. What is read back is byte for byte the normalised JSON
/// (the tests check it for sampled events and for every one of these cases).
///
/// A row with at least one mark keeps `_json` as a BLOB; rows written before this form, and events
/// with nothing left out, keep it as TEXT, which is read as it is. Marks are bytes 0x01-0x07, which
/// the JSON the validator writes never holds (raw control characters are refused, and whitespace
/// inside an object is 0x09, 0x0A, 0x0D or 0x20).
struct StoredForm: Sendable {
    /// What a mark renders, and from which storage class.
    enum Kind: UInt8 {
        /// The column's text in quotes.
        case text = 1
        /// The column's integer in decimal.
        case integer = 2
        /// The column's real as Swift's shortest round-trip text.
        case number = 3
        /// `true` or `false` from the column's integer.
        case bool = 4
        /// The column's 16 bytes as a lower-case UUID in quotes.
        case uuid = 5
        /// The column's UTC microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in quotes.
        case timestamp = 6
        /// `null` (the column holds NULL).
        case null = 7
    }

    /// A field that can be left out of the JSON: its column's position and its kind.
    struct Slot: Sendable {
        let column: UInt8
        let kind: Kind
        /// `"name":` is this long in the JSON.
        let prefix: Int32
    }

    /// For each compiled event, for each field slot: where its value is kept, or nil when the
    /// member always stays in the JSON.
    let slots: [[Slot?]]
    /// Positions of `_seq`, `_json` and `tenant_id` in the table (and in `SELECT *`).
    let sequenceColumn: Int32
    let jsonColumn: Int32
    let tenantColumn: Int32

    /// - Parameter columns: the events table's columns in table order, with their declared types
    ///   (`PRAGMA table_info`).
    init(catalog: Catalog, columns: [(name: String, type: String)]) {
        var position: [String: Int] = [:]
        var declared: [String: String] = [:]
        for (i, column) in columns.enumerated() where position[column.name] == nil {
            position[column.name] = i
            declared[column.name] = column.type.uppercased()
        }
        sequenceColumn = Int32(position["_seq"] ?? 0)
        jsonColumn = Int32(position["_json"] ?? 4)
        tenantColumn = Int32(position["tenant_id"] ?? 8)
        slots = catalog.compiled.map { compiled in
            compiled.fields.map { field -> Slot? in
                // A column declared with another type keeps a converted value: the name's first
                // definition types it (`speed`), or it was made when the catalog typed the field
                // otherwise.
                guard let column = position[field.name], column < 256,
                    declared[field.name] == ColumnLayout.sqlType(field.type), let kind = Self.kind(of: field.type)
                else { return nil }
                return Slot(column: UInt8(column), kind: kind, prefix: Int32(field.name.utf8.count + 3))
            }
        }
    }

    private static func kind(of type: FieldType) -> Kind? {
        switch type {
        case .string, .ipAddress: .text
        case .integer: .integer
        case .number: .number
        case .bool: .bool
        case .uuid: .uuid
        case .timestamp: .timestamp
        default: nil
        }
    }

    // MARK: writing

    /// A member to leave out: its bytes in the JSON and its mark.
    struct Hole {
        var start: Int32
        var end: Int32
        var kind: Kind
        var column: UInt8
    }

    /// Writes into `out` (replacing what it held, keeping its capacity) the JSON `event` keeps in its
    /// row; false, with `out` untouched, when no member can be left out (the JSON is then kept whole).
    /// Nothing is allocated once `out` has grown to an event's size.
    func compact(_ event: NormalizedEvent, into out: inout [UInt8]) -> Bool {
        withUnsafePointer(to: event) { compact($0, into: &out) }
    }

    /// ``compact(_:into:)`` of the event at `incoming`, read in place: the writer reads its events
    /// through pointers, since a call given an event loaded from memory was given a copy (a retain
    /// and a release of each of its five buffers).
    func compact(_ incoming: UnsafePointer<IncomingEvent>, into out: inout [UInt8]) -> Bool {
        let offset = MemoryLayout<IncomingEvent>.offset(of: \.event)!
        return compact((UnsafeRawPointer(incoming) + offset).assumingMemoryBound(to: NormalizedEvent.self), into: &out)
    }

    private func compact(_ event: UnsafePointer<NormalizedEvent>, into out: inout [UInt8]) -> Bool {
        let slots = self.slots[event.pointee.compiled.index]
        let values = event.pointee.values
        return withUnsafeTemporaryAllocation(of: Hole.self, capacity: max(1, values.count)) { holes -> Bool in
            event.pointee.json.withUnsafeBufferPointer { json -> Bool in
                var count = 0
                event.pointee.memberStarts.withUnsafeBufferPointer { starts in
                    for index in 0..<values.count {
                        let start = starts[index]
                        guard start >= 0, let slot = slots[index] else { continue }
                        guard let (end, kind) = Self.member(values[index], slot, json, valueStart: Int(start + slot.prefix)) else { continue }
                        // Members mostly arrive in catalog order: insert in place, by start.
                        var at = count
                        while at > 0, holes[at - 1].start > start {
                            holes[at] = holes[at - 1]
                            at -= 1
                        }
                        holes[at] = Hole(start: start, end: Int32(end), kind: kind, column: slot.column)
                        count += 1
                    }
                }
                guard count > 0 else { return false }
                out.removeAll(keepingCapacity: true)
                var cursor = 0
                for hole in holes[0..<count] {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: json[cursor..<Int(hole.start)]))
                    out.append(hole.kind.rawValue)
                    out.append(hole.column)
                    cursor = Int(hole.end)
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: json[cursor...]))
                return true
            }
        }
    }

    /// Where the member of `value` (starting `slot.prefix` bytes before `valueStart`) ends, and the
    /// kind of its mark, when its column gives back its exact text; nil when it must stay.
    private static func member(
        _ value: StoredValue, _ slot: Slot, _ json: UnsafeBufferPointer<UInt8>, valueStart: Int
    ) -> (end: Int, kind: Kind)? {
        switch value {
        case .absent, .object:
            return nil
        case .null:
            return (valueStart + 4, .null)
        case .text(_, let contentEnd, let escaped):
            return slot.kind == .text && !escaped ? (Int(contentEnd) + 1, .text) : nil
        case .bool(let v):
            return slot.kind == .bool ? (valueStart + (v ? 4 : 5), .bool) : nil
        case .uuid:
            return slot.kind == .uuid && isCanonicalUUID(json, at: valueStart) ? (valueStart + 38, .uuid) : nil
        case .timestamp(let micros, let contentStart, let contentEnd, let escaped):
            guard slot.kind == .timestamp, !escaped, isCanonicalTimestamp(micros, json, Int(contentStart), Int(contentEnd)) else {
                return nil
            }
            return (Int(contentEnd) + 1, .timestamp)
        case .integer(let v):
            guard slot.kind == .integer else { return nil }
            let valueEnd = scalarEnd(json, from: valueStart)
            return isCanonical(v, json, valueStart, valueEnd) ? (valueEnd, .integer) : nil
        case .number(let v):
            guard slot.kind == .number else { return nil }
            let valueEnd = scalarEnd(json, from: valueStart)
            return isCanonical(v, json, valueStart, valueEnd) ? (valueEnd, .number) : nil
        }
    }

    /// Where a number or literal that starts at `start` ends: at the `,` or `}` after it.
    private static func scalarEnd(_ json: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var i = start
        while i < json.count, json[i] != UInt8(ascii: ","), json[i] != UInt8(ascii: "}") { i += 1 }
        return i
    }

    /// The validator parsed this text to the UUID already (so it is hex digits, dashed 8-4-4-4-12,
    /// when it is 36 bytes between quotes): it is the canonical text when no hex digit is a capital.
    private static func isCanonicalUUID(_ json: UnsafeBufferPointer<UInt8>, at start: Int) -> Bool {
        guard start + 38 <= json.count, json[start] == UInt8(ascii: "\""), json[start + 37] == UInt8(ascii: "\"") else {
            return false
        }
        // Of the bytes a UUID's text holds (0-9, a-f, A-F, -), only A-F have 0x40 set and 0x20 clear.
        let raw = UnsafeRawPointer(json.baseAddress! + start + 1)
        var capitals: UInt64 = 0
        for offset in stride(from: 0, to: 32, by: 8) {
            let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            capitals |= word & ~(word << 1)
        }
        let tail = UInt64(raw.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        capitals |= tail & ~(tail << 1)
        return capitals & 0x4040_4040_4040_4040 == 0
    }

    private static func isCanonicalTimestamp(_ micros: Int64, _ json: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        let length = ISO8601Timestamp.canonicalLength
        guard end - start == length else { return false }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { buffer in
            ISO8601Timestamp.write(microseconds: micros, to: buffer.baseAddress!)
                && memcmp(buffer.baseAddress!, json.baseAddress! + start, length) == 0
        }
    }

    /// Whether `json[start..<end]` is `v` in decimal, as `String(v)` writes it.
    private static func isCanonical(_ v: Int64, _ json: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var i = end - 1
        var rest = v.magnitude
        repeat {
            guard i >= start, json[i] == UInt8(ascii: "0") + UInt8(rest % 10) else { return false }
            rest /= 10
            i -= 1
        } while rest > 0
        if v < 0 {
            guard i >= start, json[i] == UInt8(ascii: "-") else { return false }
            i -= 1
        }
        return i == start - 1
    }

    private static func isCanonical(_ v: Double, _ json: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        // SQLite keeps a REAL that is a whole number as an integer on disk: -0.0 comes back as 0.0.
        if v == 0, v.sign == .minus { return false }
        var text = v.description
        return text.withUTF8 { $0.count == end - start && memcmp($0.baseAddress!, json.baseAddress! + start, end - start) == 0 }
    }

    // MARK: reading

    /// The event of the row `statement` stands on; see ``json(_:column:)``.
    func storedEvent(_ statement: OpaquePointer) -> StoredEvent {
        StoredEvent(
            sequence: sqlite3_column_int64(statement, sequenceColumn),
            json: String(decoding: Self.json(statement, column: jsonColumn), as: UTF8.self))
    }

    /// The normalised JSON of the row `statement` stands on, whose `_json` is its column `json`;
    /// the statement must select every column of `events` in table order (`SELECT *`), so that a
    /// mark's column is the statement's column of the same position.
    static func json(_ statement: OpaquePointer, column json: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, json))
        guard sqlite3_column_type(statement, json) == SQLITE_BLOB else {
            guard count > 0, let text = sqlite3_column_text(statement, json) else { return [] }
            return Array(UnsafeBufferPointer(start: text, count: count))
        }
        guard count > 0, let blob = sqlite3_column_blob(statement, json) else { return [] }
        let stored = UnsafeRawBufferPointer(start: blob, count: count)
        var out: [UInt8] = []
        out.reserveCapacity(count * 3)
        var i = 0
        while i < count {
            let byte = stored[i]
            guard byte >= 1, byte <= 7, i + 1 < count, let kind = Kind(rawValue: byte) else {
                out.append(byte)
                i += 1
                continue
            }
            let column = Int32(stored[i + 1])
            i += 2
            out.append(UInt8(ascii: "\""))
            if let name = sqlite3_column_name(statement, column) {
                out.append(contentsOf: UnsafeRawBufferPointer(start: name, count: strlen(name)))
            }
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
            render(kind, statement, column, into: &out)
        }
        return out
    }

    private static func render(_ kind: Kind, _ statement: OpaquePointer, _ column: Int32, into out: inout [UInt8]) {
        guard kind != .null, sqlite3_column_type(statement, column) != SQLITE_NULL else {
            out.append(contentsOf: "null".utf8)
            return
        }
        switch kind {
        case .text:
            out.append(UInt8(ascii: "\""))
            if let text = sqlite3_column_text(statement, column) {
                out.append(contentsOf: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(statement, column))))
            }
            out.append(UInt8(ascii: "\""))
        case .integer:
            out.append(contentsOf: String(sqlite3_column_int64(statement, column)).utf8)
        case .number:
            out.append(contentsOf: sqlite3_column_double(statement, column).description.utf8)
        case .bool:
            out.append(contentsOf: (sqlite3_column_int64(statement, column) != 0 ? "true" : "false").utf8)
        case .uuid:
            out.append(UInt8(ascii: "\""))
            if sqlite3_column_bytes(statement, column) == 16, let bytes = sqlite3_column_blob(statement, column) {
                let uuid = UUIDValue(
                    high: UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)),
                    low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
                uuid.appendText(to: &out)
            }
            out.append(UInt8(ascii: "\""))
        case .timestamp:
            let length = ISO8601Timestamp.canonicalLength
            out.append(UInt8(ascii: "\""))
            let at = out.count
            out.append(contentsOf: repeatElement(0, count: length))
            let micros = sqlite3_column_int64(statement, column)
            let written = out.withUnsafeMutableBufferPointer { ISO8601Timestamp.write(microseconds: micros, to: $0.baseAddress! + at) }
            if !written {
                out.removeSubrange(at...)
                out.append(contentsOf: ISO8601Timestamp.string(fromMicroseconds: micros).utf8)
            }
            out.append(UInt8(ascii: "\""))
        case .null:
            out.append(contentsOf: "null".utf8)
        }
    }
}
