import Foundation
import GRDB
import GRDBSQLite
import TelemetryCatalog

extension SQLiteStore {
    /// Pairs the events a transaction just stored into operations, in the same transaction, so that
    /// operations are exactly as durable as the events they come from.
    ///
    /// Only newly stored events pair (a duplicate has no sequence number), which makes pairing
    /// idempotent; halves pair whatever order they arrive in, and never across tenants. This runs in
    /// the writer's critical section for every lifecycle event, so it binds values straight from
    /// the normalised event into prepared statements, like the event insert does.
    func pairOperations(_ events: [IncomingEvent], _ sequences: [Int64?], _ db: Database) throws {
        for (index, incoming) in events.enumerated() {
            guard let sequence = sequences[index] else { continue }
            let roles = operationLayout.roles[incoming.event.compiled.index]
            if roles.isEmpty { continue }
            let event = incoming.event
            try event.json.withUnsafeBufferPointer { json in
                for role in roles { try pair(event, sequence, role, json.baseAddress!, db) }
            }
        }
    }

    private func pair(
        _ event: NormalizedEvent, _ sequence: Int64, _ role: OperationLayout.Role, _ base: UnsafePointer<UInt8>, _ db: Database
    ) throws {
        if let condition = role.conditionSlot {
            guard case .bool(true) = event.values[condition] else { return }
        }
        func present(_ slot: Int) -> Bool {
            guard slot >= 0 else { return false }
            switch event.values[slot] {
            case .absent, .null: return false
            default: return true
            }
        }
        func bindKind(_ stmt: SQLiteStatement, _ parameter: Int32) {
            role.kind.withCString { _ = sqlite3_bind_text(stmt, parameter, $0, -1, transient) }
        }
        func bindField(_ stmt: SQLiteStatement, _ parameter: Int32, _ slot: Int) {
            if slot < 0 {
                sqlite3_bind_null(stmt, parameter)
            } else {
                Self.bind(event.values[slot], of: event, slot: slot, to: stmt, parameter, base: base, asUUID: false)
            }
        }
        func step(_ stmt: SQLiteStatement) throws {
            let rc = sqlite3_step(stmt)
            sqlite3_reset(stmt)
            guard rc == SQLITE_DONE || rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
        }

        // Find the other half: a completion pairs by the first key it carries; a start by any key
        // under which a completion waits.
        var operation: Int64? = nil
        var otherSequence: Int64? = nil
        for (i, slot) in role.keySlots.enumerated() where present(slot) {
            let stmt = try db.cachedStatement(sql: role.matchSQL[i]).sqliteStatement
            bindKind(stmt, 1)
            event.tenantID.withBytes { _ = sqlite3_bind_blob(stmt, 2, $0.baseAddress, 16, transient) }
            bindField(stmt, 3, slot)
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_ROW {
                operation = sqlite3_column_int64(stmt, 0)
                let column: Int32 = role.isCompletion ? 3 : 4
                if sqlite3_column_type(stmt, column) != SQLITE_NULL { otherSequence = sqlite3_column_int64(stmt, column) }
            }
            sqlite3_reset(stmt)
            guard rc == SQLITE_ROW || rc == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
            if operation != nil || role.isCompletion { break }
        }

        var status: StaticString = "running"
        if role.isCompletion {
            var succeeded = true
            if let result = role.resultSlot, case .bool(let value) = event.values[result] { succeeded = value }
            status = succeeded ? "succeeded" : "failed"
        }
        let spans = try spanValues(event, role, otherSequence: otherSequence, db)
        let time = event.timestampMicros
        func bindCommon(_ stmt: SQLiteStatement, _ p: inout Int32) {
            event.eventID.withBytes { _ = sqlite3_bind_blob(stmt, p, $0.baseAddress, 16, transient) }
            sqlite3_bind_int64(stmt, p + 1, sequence)
            p += 2
        }
        func bindRest(_ stmt: SQLiteStatement, _ p: inout Int32) {
            for attribute in role.attributes {
                bindField(stmt, p, attribute.slot)
                p += 1
            }
            for span in spans {
                if let span { sqlite3_bind_double(stmt, p, span) } else { sqlite3_bind_null(stmt, p) }
                p += 1
            }
        }

        guard let operation else {
            // The first half to arrive: a new operation.
            let stmt = try db.cachedStatement(sql: role.insertSQL).sqliteStatement
            bindKind(stmt, 1)
            event.tenantID.withBytes { _ = sqlite3_bind_blob(stmt, 2, $0.baseAddress, 16, transient) }
            var p: Int32 = 3
            for slot in role.keySlots {
                bindField(stmt, p, slot)
                p += 1
            }
            sqlite3_bind_text(stmt, p, status.utf8Start, Int32(status.utf8CodeUnitCount), nil)
            sqlite3_bind_int64(stmt, p + 1, time)
            sqlite3_bind_int64(stmt, p + 2, time)
            p += 3
            bindCommon(stmt, &p)
            bindRest(stmt, &p)
            try step(stmt)
            return
        }
        let stmt = try db.cachedStatement(sql: role.updateSQL).sqliteStatement
        var p: Int32 = 1
        if role.isCompletion {
            sqlite3_bind_text(stmt, 1, status.utf8Start, Int32(status.utf8CodeUnitCount), nil)
            p = 2
        } else {
            sqlite3_bind_int64(stmt, p, time)  // _at_us becomes the start
            p += 1
        }
        sqlite3_bind_int64(stmt, p, time)
        sqlite3_bind_int64(stmt, p + 1, time)
        p += 2
        bindCommon(stmt, &p)
        if !role.isCompletion {
            for slot in role.keySlots {
                bindField(stmt, p, slot)
                p += 1
            }
        }
        bindRest(stmt, &p)
        sqlite3_bind_int64(stmt, p, operation)
        try step(stmt)
    }

    /// Each span of the role's lifecycle in milliseconds, or `nil` while an instant is unknown.
    private func spanValues(_ event: NormalizedEvent, _ role: OperationLayout.Role, otherSequence: Int64?, _ db: Database)
        throws -> [Double?]
    {
        guard !role.spans.isEmpty else { return [] }
        var other: [Int64?] = []
        if let otherSequence, !role.otherSQL.isEmpty {
            let stmt = try db.cachedStatement(sql: role.otherSQL).sqliteStatement
            sqlite3_bind_int64(stmt, 1, otherSequence)
            if sqlite3_step(stmt) == SQLITE_ROW {
                other = (0..<Int32(role.otherColumns.count)).map { column in
                    sqlite3_column_type(stmt, column) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, column)
                }
            }
            sqlite3_reset(stmt)
        }
        func micros(_ instant: OperationLayout.Instant) -> Int64? {
            switch instant {
            case .here(let slot):
                if case .timestamp(let micros, _, _, _) = event.values[slot] { return micros }
                return nil
            case .other(let index):
                return index < other.count ? other[index] : nil
            }
        }
        return role.spans.map { span in
            guard let from = micros(span.from), let to = micros(span.to) else { return nil }
            return Double(to - from) / 1000
        }
    }
}
