import GRDBSQLite
import TelemetryCatalog

/// Reads a stored lifecycle event back for pairing from its typed columns alone.
///
/// Pairing reads events back from the table when they were not handed to it in memory (it lagged
/// past ``OperationPairer/maxQueuedEvents``, or the collector restarted). Rebuilding each event's
/// JSON from its row and validating it again took about a third of pairing's time under `bench
/// emitter`, and a fifth at 200 connections of `bench ingest`. But pairing reads only some values
/// of an event by slot (its keys, attributes, instants, condition and result, and the envelope's
/// id, tenant and timestamp), and every one of them is a typed column. So an event type whose
/// roles read only fields kept in columns of their own type (``StoredForm/slots``) is put back
/// together from those columns (``NormalizedEvent/init(compiled:storedValues:bytes:eventID:tenantID:timestampMicros:)``),
/// and any other, or a row whose column holds an unexpected storage class, is read the full way.
struct StoredLifecycleEvents: Sendable {
    /// One value to read: the event's slot, the column (in `SELECT *`) and how it is kept.
    struct Read: Sendable {
        let slot: Int
        let column: Int32
        let kind: StoredForm.Kind
    }

    /// How to read events of one compiled type.
    struct Plan: Sendable {
        let compiled: CompiledEvent
        let reads: [Read]
        let eventIDSlot: Int
        let tenantIDSlot: Int
        let timestampSlot: Int
    }

    /// By `"event_type version"`; types read the full way have none.
    private let plans: [String: Plan]
    /// The event types (`"event_type version"`) read from their columns.
    var readableTypes: Set<String> { Set(plans.keys) }
    /// The columns of `event_type` and `version`, the same for every type.
    private let typeColumn: Int32?
    private let versionColumn: Int32?

    init(catalog: Catalog, layout: OperationLayout, storedForm: StoredForm) {
        func column(_ name: String, in compiled: CompiledEvent) -> Int32? {
            guard let slot = compiled.fields.firstIndex(where: { $0.name == name }) else { return nil }
            return storedForm.slots[compiled.index][slot].map { Int32($0.column) }
        }
        let first = catalog.compiled.first { $0.definition != nil }
        typeColumn = first.flatMap { column("event_type", in: $0) }
        versionColumn = first.flatMap { column("version", in: $0) }
        var plans: [String: Plan] = [:]
        for compiled in catalog.compiled where compiled.definition != nil && !layout.roles[compiled.index].isEmpty {
            let fields = compiled.fields
            guard let eventID = fields.firstIndex(where: { $0.name == "event_id" }),
                let tenantID = fields.firstIndex(where: { $0.name == "tenant_id" }),
                let timestamp = fields.firstIndex(where: { $0.name == "timestamp" })
            else { continue }
            var needed: Set<Int> = [eventID, tenantID, timestamp]
            for role in layout.roles[compiled.index] {
                needed.formUnion(role.keySlots.filter { $0 >= 0 })
                if let slot = role.conditionSlot { needed.insert(slot) }
                if let slot = role.resultSlot { needed.insert(slot) }
                needed.formUnion(role.attributes.map(\.slot))
                needed.formUnion(role.ownInstants.map(\.slot))
                for span in role.spans {
                    for instant in [span.from, span.to] {
                        if case .here(let slot) = instant { needed.insert(slot) }
                    }
                }
            }
            let slots = storedForm.slots[compiled.index]
            let reads = needed.sorted().compactMap { slot in slots[slot].map { Read(slot: slot, column: Int32($0.column), kind: $0.kind) } }
            guard reads.count == needed.count else { continue }
            plans[compiled.definition!.eventType + " " + compiled.definition!.version] = Plan(
                compiled: compiled, reads: reads, eventIDSlot: eventID, tenantIDSlot: tenantID, timestampSlot: timestamp)
        }
        self.plans = plans
    }

    /// The event of the row `statement` stands on, from its columns; nil when it must be read the
    /// full way (its type reads a field kept in the JSON, or a column holds what its field's type
    /// does not say).
    func event(_ statement: OpaquePointer) -> NormalizedEvent? {
        guard let typeColumn, let versionColumn,
            let type = Self.text(statement, typeColumn), let version = Self.text(statement, versionColumn),
            let plan = plans[type + " " + version]
        else { return nil }
        var values = [StoredValue](repeating: .absent, count: plan.compiled.fields.count)
        var bytes: [UInt8] = []
        for read in plan.reads {
            let column = read.column
            let storage = sqlite3_column_type(statement, column)
            if storage == SQLITE_NULL {
                values[read.slot] = .null
                continue
            }
            switch read.kind {
            case .text:
                guard storage == SQLITE_TEXT else { return nil }
                let count = Int(sqlite3_column_bytes(statement, column))
                let start = bytes.count
                if count > 0, let text = sqlite3_column_text(statement, column) {
                    bytes.append(contentsOf: UnsafeBufferPointer(start: text, count: count))
                }
                values[read.slot] = .text(start: Int32(start), end: Int32(bytes.count), escaped: false)
            case .integer:
                guard storage == SQLITE_INTEGER else { return nil }
                values[read.slot] = .integer(sqlite3_column_int64(statement, column))
            case .number:
                guard storage == SQLITE_FLOAT || storage == SQLITE_INTEGER else { return nil }
                values[read.slot] = .number(sqlite3_column_double(statement, column))
            case .bool:
                guard storage == SQLITE_INTEGER else { return nil }
                values[read.slot] = .bool(sqlite3_column_int64(statement, column) != 0)
            case .uuid:
                guard storage == SQLITE_BLOB, sqlite3_column_bytes(statement, column) == 16,
                    let blob = sqlite3_column_blob(statement, column),
                    let uuid = UUIDValue(bytes: UnsafeRawBufferPointer(start: blob, count: 16))
                else { return nil }
                values[read.slot] = .uuid(uuid)
            case .timestamp:
                guard storage == SQLITE_INTEGER else { return nil }
                values[read.slot] = .timestamp(micros: sqlite3_column_int64(statement, column), start: 0, end: 0, escaped: false)
            case .null:
                return nil
            }
        }
        guard case .uuid(let eventID) = values[plan.eventIDSlot], case .uuid(let tenantID) = values[plan.tenantIDSlot],
            case .timestamp(let micros, _, _, _) = values[plan.timestampSlot]
        else { return nil }
        return NormalizedEvent(
            compiled: plan.compiled, storedValues: values, bytes: bytes, eventID: eventID, tenantID: tenantID, timestampMicros: micros)
    }

    private static func text(_ statement: OpaquePointer, _ column: Int32) -> String? {
        guard sqlite3_column_type(statement, column) == SQLITE_TEXT, let text = sqlite3_column_text(statement, column) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(statement, column))), as: UTF8.self)
    }
}
