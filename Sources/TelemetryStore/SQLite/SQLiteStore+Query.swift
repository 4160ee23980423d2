import Foundation
import GRDB
import GRDBSQLite
public import TelemetryCatalog

extension SQLiteStore {
    public func events(_ query: EventQuery) async throws -> EventPage {
        var conditions: [String] = []
        var arguments: [DatabaseValue] = []
        func add(_ condition: String, _ value: any DatabaseValueConvertible) {
            conditions.append(condition)
            arguments.append(value.databaseValue)
        }
        if let eventType = query.eventType { add("event_type = ?", eventType) }
        if let topic = query.topic {
            // The topic follows from the event type; the store keeps only the type.
            let types = catalog.events.filter { $0.topic.name == topic }.map(\.eventType)
            conditions.append(types.isEmpty ? "0" : "event_type IN (\(Array(repeating: "?", count: types.count).joined(separator: ", ")))")
            arguments += types.map(\.databaseValue)
        }
        if let tenant = query.tenantID { add("tenant_id = ?", Self.uuidValue(tenant)) }
        if let source = query.source { add("source = ?", source) }
        if let since = query.since { add("\"timestamp\" >= ?", since) }
        if let until = query.until { add("\"timestamp\" < ?", until) }
        // An event_id filter is a lookup in the id index (the events table has no index on it).
        for filter in query.fields {
            if catalog.canonicalFieldName(filter.field) == "event_id" {
                guard let id = UUIDValue(filter.value) else {
                    throw StoreError(.badQuery, "event_id is a UUID; got \"\(filter.value)\"")
                }
                add("_seq = ?", try await sequence(of: id) ?? -1)
                continue
            }
            let (column, value) = try columnValue(filter)
            add("\(column) = ?", value)
        }
        if let before = query.before { add("_seq < ?", before) }
        if let after = query.after { add("_seq > ?", after) }
        let limit = max(1, min(query.limit, 10_000))
        let ascending = query.after != nil
        // Every column, in table order: the JSON is put back together from them (StoredForm).
        let sql = """
            SELECT * FROM events
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            ORDER BY _seq \(ascending ? "ASC" : "DESC") LIMIT \(limit + 1)
            """
        let finalArguments = arguments
        let form = storedForm
        let rows = try await read { db in
            let statement = try db.makeStatement(sql: sql)
            try statement.setArguments(StatementArguments(finalArguments))
            let cursor = try Row.fetchCursor(statement)
            var events: [StoredEvent] = []
            while try cursor.next() != nil {
                events.append(form.storedEvent(statement.sqliteStatement))
            }
            return events
        }
        let events = Array(rows.prefix(limit))
        let more = rows.count > limit
        return EventPage(events: events, nextBefore: more && !ascending ? events.last?.sequence : nil)
    }

    public func event(id: UUIDValue, tenant: UUIDValue?) async throws -> StoredEvent? {
        // One read for the lookup and the row (two reads measured 0.6-0.8 ms against 0.3).
        let form = storedForm
        let found = try await sequence(of: id) { db, sequence -> (StoredEvent, Data)? in
            let statement = try db.cachedStatement(sql: "SELECT * FROM events WHERE _seq = ?")
            try statement.setArguments([sequence])
            let cursor = try Row.fetchCursor(statement)
            guard try cursor.next() != nil else { return nil }
            let stmt = statement.sqliteStatement
            let tenant = Data(
                bytes: sqlite3_column_blob(stmt, form.tenantColumn), count: Int(sqlite3_column_bytes(stmt, form.tenantColumn)))
            return (form.storedEvent(stmt), tenant)
        }
        guard let found = found ?? nil else { return nil }
        if let tenant, UUIDValue(bytes: found.1) != tenant { return nil }
        return found.0
    }

    /// The sequence number of the event with `id`, if it is stored: in the id index's memory, in
    /// its table, or among the events another process wrote to these files since the index last
    /// read them (a `consume` beside a collector; the writer is then asked to read them).
    func sequence(of id: UUIDValue) async throws -> Int64? {
        try await sequence(of: id) { _, sequence in sequence }
    }

    /// Finds the sequence number of the event with `id` (see ``sequence(of:)``) and, when it is
    /// stored, runs `body` with it in the same read; nil when it is not stored.
    private func sequence<T: Sendable>(
        of id: UUIDValue, then body: @Sendable @escaping (Database, Int64) throws -> T
    ) async throws -> T? {
        // Memory first, the table in a read that begins after (see EventIDIndex.recentSequence).
        let (recent, known) = idIndex.recentSequence(of: id)
        let blob = id.withBytes { Data($0) }
        let (found, foreign) = try await read { db -> (T?, Bool) in
            if let recent { return (try body(db, recent), false) }
            if let merged = try EventIDIndex.mergedSequence(of: id, db) { return (try body(db, merged), false) }
            let newest = try Int64.fetchOne(db, sql: "SELECT max(_seq) FROM events") ?? 0
            guard newest > known else { return (nil, false) }
            let sequence = try Int64.fetchOne(
                db, sql: "SELECT _seq FROM events WHERE _seq > ? AND event_id = ?", arguments: [known, blob])
            return (try sequence.map { try body(db, $0) }, true)
        }
        if foreign, idIndex.claimRefresh() {
            let idIndex = self.idIndex
            let pool = self.pool
            Task { try? await pool.write { db in try idIndex.prepare(db) } }
        }
        return found
    }

    public func rejected(_ query: RejectedQuery) async throws -> RejectedPage {
        var conditions: [String] = []
        var arguments: [DatabaseValue] = []
        if let tenant = query.tenantID {
            conditions.append("tenant_id = ?")
            arguments.append(StoreSupport.canonicalUUIDText(tenant).databaseValue)
        }
        if let eventType = query.eventType {
            conditions.append("event_type = ?")
            arguments.append(eventType.databaseValue)
        }
        if let code = query.code {
            conditions.append("instr(codes, ?) > 0")
            arguments.append(("," + code + ",").databaseValue)
        }
        if let before = query.before {
            conditions.append("_seq < ?")
            arguments.append(before.databaseValue)
        }
        let limit = max(1, min(query.limit, 10_000))
        let sql = """
            SELECT _seq, _received_us, _request_id, _index, tenant_id, event_type, event_id, errors, raw FROM rejected
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            ORDER BY _seq DESC LIMIT \(limit + 1)
            """
        let finalArguments = arguments
        let rows = try await read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(finalArguments)).map { row -> RejectedEvent in
                let errors: String = row[7]
                var event = RejectedEvent(
                    raw: [UInt8](row[8] as Data), issues: StoreSupport.parseIssues(errors), eventType: row[5], eventID: row[6],
                    tenantID: row[4], index: row[3], receivedMicros: row[1], requestID: row[2])
                event.sequence = row[0]
                return event
            }
        }
        let rejected = Array(rows.prefix(limit))
        return RejectedPage(rejected: rejected, nextBefore: rows.count > limit ? rejected.last?.sequence : nil)
    }

    public func deleteEvents(before micros: Int64, limit: Int) async throws -> Int {
        // Operations go with their events: let pairing catch up first, so that it does not
        // create operations for events this pass deletes (the next pass would remove them).
        await waitForPairing()
        let types = typesList
        let kinds = Self.sqlList(catalog.lifecycles.map(\.kind))
        let idIndex = self.idIndex
        do {
            let events = try await pool.write { db in
                let newest = try Int64.fetchOne(db, sql: "SELECT max(_seq) FROM events") ?? 0
                // Their ids leave the id index too, so that an id sent again is stored again.
                let doomed = try Row.fetchAll(
                    db, sql: """
                        SELECT _seq, event_id FROM events WHERE event_type IN (\(types)) AND "timestamp" < ? LIMIT ?
                        """, arguments: [micros, limit])
                let delete = try db.cachedStatement(sql: "DELETE FROM events WHERE _seq = ?")
                for row in doomed { try delete.execute(arguments: [row[0] as Int64]) }
                try idIndex.remove(doomed.compactMap { UUIDValue(bytes: [UInt8]($0[1] as Data)) }, db)
                let deleted = doomed.count
                if deleted > 0 {
                    try db.execute(sql: "UPDATE sequence_floor SET deleted = deleted + ?", arguments: [deleted])
                }
                if try Int64.fetchOne(db, sql: "SELECT max(_seq) FROM events") ?? 0 < newest {
                    // The newest went: its sequence number must not be given again.
                    try db.execute(sql: "UPDATE sequence_floor SET seq = max(seq, ?)", arguments: [newest])
                }
                return deleted
            }
            guard !kinds.isEmpty else { return events }
            // Operations go with their start's time, through the (kind, _at_us) index.
            let operations = try await operationsDatabase.write { db in
                try db.execute(
                    sql: """
                        DELETE FROM operations WHERE _seq IN
                        (SELECT _seq FROM operations WHERE kind IN (\(kinds)) AND _at_us < ? LIMIT ?)
                        """, arguments: [micros, limit])
                return db.changesCount
            }
            return max(events, operations)
        } catch {
            idIndex.invalidate()
            throw mapError(error)
        }
    }

    public func latestSequence() async throws -> Int64 {
        try await read { db in try Self.newestSequence(db) }
    }

    /// Events per event type whose timestamp is in `since..<until` (UTC microseconds).
    public func countsByEventType(since: Int64, until: Int64) async throws -> [String: Int] {
        let types = typesList
        let rows = try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT event_type, count(*) FROM events
                    WHERE event_type IN (\(types)) AND "timestamp" >= ? AND "timestamp" < ? GROUP BY event_type
                    """,
                arguments: [since, until]
            ).map { ($0[0] as String, $0[1] as Int) }
        }
        return Dictionary(uniqueKeysWithValues: rows)
    }

    /// The catalog's event types as an SQL list. Time-range scans go through the
    /// `(event_type, timestamp)` index one type at a time, which needs the types named: a day's
    /// counts are then read in index order, with no sort.
    var typesList: String {
        Self.sqlList(catalog.eventTypes)
    }

    /// `values` as a list of SQL string literals, for `IN (…)`.
    static func sqlList(_ values: [String]) -> String {
        values.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" }.joined(separator: ", ")
    }

    /// Counts stored events and rejections (for tests and status).
    public func counts() async throws -> (events: Int, rejected: Int) {
        let counts = try await read { db in
            [try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM rejected") ?? 0]
        }
        return (counts[0], counts[1])
    }

    /// Runs `body` on a reader connection, mapping errors to ``StoreError``.
    func read<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch {
            throw mapError(error)
        }
    }

    /// The column and typed value for a `field=value` filter.
    func columnValue(_ filter: FieldFilter) throws -> (String, any DatabaseValueConvertible) {
        let name = catalog.canonicalFieldName(filter.field) ?? filter.field
        guard let type = layout.typeByName[name] else {
            throw StoreError(.badQuery, "\(filter.field) is not a catalog field; `telemetry catalog` lists them")
        }
        return try columnValue(FieldFilter(field: name, value: filter.value), type: type)
    }

    /// The column and typed value for a filter on a column named `filter.field` of type `type`.
    func columnValue(_ filter: FieldFilter, type: FieldType) throws -> (String, any DatabaseValueConvertible) {
        let column = "\"\(filter.field)\""
        switch try StoreSupport.filterValue(filter, type: type) {
        case .integer(let v): return (column, v)
        case .number(let v): return (column, v)
        case .text(let v): return (column, v)
        case .uuid(let v): return (column, Self.uuidValue(v))
        }
    }

    /// How a UUID field's value is stored: 16 bytes when it is a UUID, else the text as sent.
    static func uuidValue(_ text: String) -> any DatabaseValueConvertible {
        guard let uuid = UUIDValue(text) else { return text }
        return uuid.withBytes { Data($0) }
    }

}
