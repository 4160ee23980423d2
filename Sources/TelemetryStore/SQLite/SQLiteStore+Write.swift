import GRDB
import GRDBSQLite
import Logging
import TelemetryCatalog
import Foundation

/// SQLite's "copy the bytes now" destructor.
let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension SQLiteStore {
    public func write(_ batch: WriteBatch) async throws -> WriteOutcome {
        // Insert in event_id order: the id table's pages are then walked forwards once per batch.
        // Ties keep arrival order, so the first copy of an id in a batch is the one stored.
        let order = batch.events.indices.sorted { a, b in
            let (x, y) = (batch.events[a].event.eventID, batch.events[b].event.eventID)
            return x == y ? a < b : x < y
        }
        let layout = self.layout
        let pairer = self.pairer
        let idIndex = self.idIndex
        let storedForm = self.storedForm
        do {
            let (outcome, handover) = try await pool.write { db -> (WriteOutcome, OperationPairer.Handover?) in
                var sequences = [Int64?](repeating: nil, count: batch.events.count)
                var handover: OperationPairer.Handover? = nil
                if !batch.events.isEmpty {
                    // Where this transaction's sequences start. Rowids are the largest + 1; after
                    // retention deleted the newest events, the first insert gives its own.
                    let bounds = try Row.fetchOne(
                        db.cachedStatement(sql: "SELECT (SELECT max(_seq) FROM events), (SELECT seq FROM sequence_floor)"))
                    let newest: Int64 = bounds?[0] ?? 0
                    let after = max(newest, bounds?[1] ?? 0)
                    var givenSequence: Int64? = newest < after ? after + 1 : nil
                    // Each event type's insert, looked up once a transaction.
                    var statements = [Statement?](repeating: nil, count: layout.inserts.count)
                    let connection = db.sqliteConnection
                    // Request ids are UUIDs stored in 16 bytes, parsed once per request: a batch
                    // holds few requests, each a run of events (hashing the text per event cost
                    // the writer ~2%).
                    var requestUUIDs: [(text: String, uuid: UUIDValue?)] = []
                    var requestOf = [Int](repeating: 0, count: batch.events.count)
                    // By index: iterating the events copied each (six retains) to read one field.
                    for index in batch.events.indices {
                        let requestID = batch.events[index].requestID
                        if requestUUIDs.last?.text != requestID {
                            requestUUIDs.append((requestID, UUIDValue(requestID)))
                        }
                        requestOf[index] = requestUUIDs.count - 1
                    }
                    // Dedupe: a repeat within the batch follows its first copy (sorted); an id
                    // stored before is in the id index.
                    try idIndex.prepare(db)
                    let probe = try db.cachedStatement(sql: "SELECT 1 FROM event_ids WHERE event_id = ?").sqliteStatement
                    var stored: [(id: UUIDValue, sequence: Int64)] = []
                    stored.reserveCapacity(order.count)
                    var previous: UUIDValue? = nil
                    // The JSON each row keeps, written into one buffer reused for every event.
                    var compacted: [UInt8] = []
                    // Through a pointer, each event is read where it lies; through the captured
                    // array (or a buffer's subscript), calls were given copies (six retains and
                    // releases an event).
                    try batch.events.withUnsafeBufferPointer { events in
                        for index in order {
                            let incoming = events.baseAddress! + index
                            let id = incoming.pointee.event.eventID
                            defer { previous = id }
                            if id == previous { continue }
                            if try idIndex.isStored(id, probe) { continue }
                            let type = incoming.pointee.event.compiled.index
                            let insert = layout.inserts[type]
                            let stmt: SQLiteStatement
                            if givenSequence != nil {
                                stmt = try db.cachedStatement(sql: insert.sqlWithSequence).sqliteStatement
                            } else if let known = statements[type] {
                                stmt = known.sqliteStatement
                            } else {
                                let made = try db.cachedStatement(sql: insert.sql)
                                statements[type] = made
                                stmt = made.sqliteStatement
                            }
                            let isCompact = storedForm.compact(incoming, into: &compacted)
                            if try Self.insert(
                                incoming, requestUUIDs[requestOf[index]].uuid, stmt, insert,
                                stored: isCompact ? compacted : nil, sequence: givenSequence)
                            {
                                let sequence = sqlite3_last_insert_rowid(connection)
                                sequences[index] = sequence
                                stored.append((id, sequence))
                                givenSequence = nil
                            }
                        }
                    }
                    try idIndex.record(stored, db)
                    if pairer != nil {
                        // The pairing thread picks out the lifecycle events: here, only references.
                        let through = sequences.reduce(after) { max($0, $1 ?? $0) }
                        if through > after {
                            handover = OperationPairer.Handover(
                                after: after, through: through, events: .init(events: batch.events, sequences: sequences))
                        }
                    }
                }
                if !batch.rejected.isEmpty {
                    let statement = try db.cachedStatement(
                        sql: """
                            INSERT INTO rejected (_received_us, _request_id, _index, tenant_id, event_type, event_id, codes, errors, raw)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """)
                    for rejected in batch.rejected {
                        let codes = "," + rejected.issues.map(\.code.rawValue).joined(separator: ",") + ","
                        try statement.execute(arguments: [
                            rejected.receivedMicros, rejected.requestID, rejected.index, rejected.tenantID, rejected.eventType,
                            rejected.eventID, codes, StoreSupport.issuesJSON(rejected.issues), Data(rejected.raw),
                        ])
                    }
                }
                return (WriteOutcome(sequences: sequences), handover)
            }
            idIndex.committed()
            // Committed: the pairer takes it from here. (Not a GRDB commit hook: any transaction
            // observer makes GRDB watch every statement, which cost the writer ~40% more per commit.)
            if let pairer, let handover { pairer.committed(handover) }
            checkpointer?.committed(events: batch.events.count + batch.rejected.count)
            return outcome
        } catch {
            // Memory may hold ids of events that were not stored: read it again from the tables.
            idIndex.invalidate()
            let mapped = mapError(error)
            logger.error("store.write.failed", metadata: ["error.code": "\(mapped.code)", "error.message": "\(mapped.message)"])
            throw mapped
        }
    }


    /// Binds `value` (a field of the event whose normalised JSON is `json`) to `parameter`. Text and
    /// objects are bound in place from `json`, so the statement must be stepped and reset while it
    /// is valid. With `asUUID`, a string that holds a UUID is bound as its 16 bytes, like every
    /// other UUID. Takes the JSON, not the event: a call given an event loaded from memory was
    /// given a copy of it.
    static func bind(
        _ value: StoredValue, to stmt: SQLiteStatement, _ parameter: Int32, json: UnsafeBufferPointer<UInt8>, asUUID: Bool
    ) {
        let base = json.baseAddress!
        switch value {
        case .absent, .null:
            sqlite3_bind_null(stmt, parameter)
        case .integer(let v):
            sqlite3_bind_int64(stmt, parameter, v)
        case .number(let v):
            sqlite3_bind_double(stmt, parameter, v)
        case .bool(let v):
            sqlite3_bind_int64(stmt, parameter, v ? 1 : 0)
        case .timestamp(let micros, _, _, _):
            sqlite3_bind_int64(stmt, parameter, micros)
        case .uuid(let uuid):
            uuid.withBytes { _ = sqlite3_bind_blob(stmt, parameter, $0.baseAddress, 16, transient) }
        case .object(let start, let end):
            sqlite3_bind_text(
                stmt, parameter, UnsafeRawPointer(base + Int(start)).assumingMemoryBound(to: CChar.self), end - start, nil)
        case .text(let start, let end, let escaped):
            if escaped {
                // Escapes resolved (rare: the member then stays whole in the row's JSON too).
                var decoded: [UInt8] = []
                JSONScanner(UnsafeRawBufferPointer(json), maxDepth: 0).decodeString(from: Int(start), to: Int(end), into: &decoded)
                decoded.withUnsafeBytes { bytes in
                    if asUUID, let uuid = UUIDValue(parsing: bytes) {
                        uuid.withBytes { _ = sqlite3_bind_blob(stmt, parameter, $0.baseAddress, 16, transient) }
                    } else {
                        sqlite3_bind_text(
                            stmt, parameter, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count), transient)
                    }
                }
            } else if asUUID, let uuid = UUIDValue(parsing: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: json[Int(start)..<Int(end)]))) {
                uuid.withBytes { _ = sqlite3_bind_blob(stmt, parameter, $0.baseAddress, 16, transient) }
            } else {
                sqlite3_bind_text(
                    stmt, parameter, UnsafeRawPointer(base + Int(start)).assumingMemoryBound(to: CChar.self), end - start, nil)
            }
        }
    }

    /// Binds and steps one event; returns whether it was inserted (false: a duplicate id). `stored`
    /// is the event's ``StoredForm`` for `_json`, or nil to keep its JSON whole.
    /// Every parameter of the event type's insert is bound (absent fields as NULL), so no binding
    /// of an earlier event is left to clear.
    private static func insert(
        _ incoming: UnsafePointer<IncomingEvent>, _ requestUUID: UUIDValue?, _ stmt: SQLiteStatement, _ insert: ColumnLayout.Insert,
        stored: [UInt8]?, sequence: Int64?
    ) throws -> Bool {
        sqlite3_reset(stmt)
        let parameters = insert.parameters
        let values = incoming.pointee.event.values
        let rc: Int32 = incoming.pointee.event.json.withUnsafeBufferPointer { json -> Int32 in
            let base = json.baseAddress!
            sqlite3_bind_int64(stmt, 1, incoming.pointee.receivedMicros)
            if let requestID = requestUUID {
                requestID.withBytes { _ = sqlite3_bind_blob(stmt, 2, $0.baseAddress, 16, transient) }
            } else {
                incoming.pointee.requestID.withCString { _ = sqlite3_bind_text(stmt, 2, $0, -1, transient) }
            }
            if let stored {
                stored.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, 3, $0.baseAddress, Int32($0.count), transient) }
            } else {
                sqlite3_bind_text(stmt, 3, UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self), Int32(json.count), nil)
            }
            if incoming.pointee.event.unknownFields.isEmpty {
                sqlite3_bind_null(stmt, 4)
            } else {
                let list = JSONValue.array(incoming.pointee.event.unknownFields.map { .string($0) }).render()
                list.withCString { _ = sqlite3_bind_text(stmt, 4, $0, -1, transient) }
            }
            incoming.pointee.event.eventID.withBytes { _ = sqlite3_bind_blob(stmt, 5, $0.baseAddress, 16, transient) }
            if let sequence { sqlite3_bind_int64(stmt, insert.sequenceParameter, sequence) }
            for slot in values.indices {
                let parameter = parameters[slot]
                guard parameter > 0 else { continue }
                bind(values[slot], to: stmt, parameter, json: json, asUUID: insert.isUUIDParameter[Int(parameter)])
            }
            return sqlite3_step(stmt)
        }
        // The JSON buffer is only valid inside the closure above; drop the static bindings now.
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errstr(rc)))
        }
        return sqlite3_changes(sqlite3_db_handle(stmt)) == 1
    }
}
