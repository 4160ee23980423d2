import Foundation
import GRDB
import TelemetryCatalog

extension SQLiteStore {
    /// Operations newest first by when they started (or completed, while the start is unknown).
    ///
    /// Each kind is read through its `(kind, _at_us)` index (the open operations' partial index for
    /// `running` and `stuck`), newest first, and the kinds' pages are merged: no query sorts more
    /// than a page of rows, however many operations are stored.
    public func operations(_ query: OperationQuery) async throws -> OperationPage {
        await waitForPairing()
        var lifecycles = catalog.lifecycles
        if let kind = query.kind {
            guard let lifecycle = catalog.lifecycle(kind) else { throw unknownKind(kind) }
            lifecycles = [lifecycle]
        }
        var conditions: [String] = []
        var arguments: [DatabaseValue] = []
        if let tenant = query.tenantID {
            conditions.append("tenant_id = ?")
            arguments.append(Self.uuidValue(tenant).databaseValue)
        }
        if let key = query.key {
            let value = Self.uuidValue(key).databaseValue
            conditions.append("(key1 = ? OR key2 = ?)")
            arguments += [value, value]
        }
        if let since = query.since {
            conditions.append("_at_us >= ?")
            arguments.append(since.databaseValue)
        }
        if let until = query.until {
            conditions.append("_at_us < ?")
            arguments.append(until.databaseValue)
        }
        for filter in query.attributes {
            let (column, value) = try operationColumnValue(filter)
            conditions.append("\(column) = ?")
            arguments.append(value)
        }
        if let before = query.before {
            conditions.append("(_at_us < ? OR (_at_us = ? AND _seq < ?))")
            arguments += [before.atMicros.databaseValue, before.atMicros.databaseValue, before.sequence.databaseValue]
        }
        let limit = max(1, min(query.limit, 10_000))
        let columns = operationLayout.columns
        var statements: [(String, [DatabaseValue])] = []
        for lifecycle in lifecycles {
            var mine = ["kind = ?"] + conditions
            var values = [lifecycle.kind.databaseValue] + arguments
            if let status = query.status {
                let (condition, statusValues) = statusCondition(status, lifecycle, now: query.nowMicros)
                mine.append(condition)
                values += statusValues
            }
            let sql = """
                SELECT _seq, kind, tenant_id, key1, key2, status, started_us, completed_us, duration_ms, start_event_id,
                    complete_event_id, _at_us\(columns.map { ", " + $0.quoted }.joined()) FROM operations
                WHERE \(mine.joined(separator: " AND "))
                ORDER BY _at_us DESC, _seq DESC LIMIT \(limit + 1)
                """
            statements.append((sql, values))
        }
        let now = query.nowMicros
        let finalStatements = statements
        var rows = try await read { db in
            try finalStatements.flatMap { sql, values in
                try Row.fetchAll(db, sql: sql, arguments: StatementArguments(values)).map { self.operation($0, now: now) }
            }
        }
        rows.sort { ($0.atMicros, $0.sequence) > ($1.atMicros, $1.sequence) }
        let operations = Array(rows.prefix(limit))
        let next = rows.count > limit ? operations.last.map { OperationCursor(atMicros: $0.atMicros, sequence: $0.sequence) } : nil
        return OperationPage(operations: operations, next: next)
    }

    /// How many operations of each kind are stuck at `nowMicros` (kinds with none included, as 0).
    ///
    /// `/metrics` reads this at every scrape: it waits for pairing to catch up for at most 1 s,
    /// then counts what is paired (the pairing lag is exported next to it).
    public func stuckOperationCounts(nowMicros: Int64) async throws -> [String: Int] {
        await waitForPairing(timeout: .seconds(1))
        var result: [String: Int] = [:]
        for lifecycle in catalog.lifecycles { result[lifecycle.kind] = 0 }
        let timed = catalog.lifecycles.compactMap { lifecycle in
            stuckAfter(lifecycle).map { (lifecycle.kind, nowMicros - Int64($0) * 1_000_000) }
        }
        let counts = try await read { db in
            try timed.map { kind, threshold in
                let count =
                    try Int.fetchOne(
                        db, sql: "SELECT count(*) FROM operations WHERE kind = ? AND complete_seq IS NULL AND _at_us < ?",
                        arguments: [kind, threshold]) ?? 0
                return (kind, count)
            }
        }
        for (kind, count) in counts { result[kind] = count }
        return result
    }

    /// The stuck timeout of `lifecycle` in seconds, after configuration; `nil` when it never sticks.
    func stuckAfter(_ lifecycle: LifecycleDefinition) -> Int? {
        let seconds = configuration.stuckAfterSeconds[lifecycle.kind] ?? lifecycle.stuckAfterSeconds
        guard let seconds, seconds > 0 else { return nil }
        return seconds
    }

    /// The SQL for a status of one kind's operations, which for `running` and `stuck` depends on the
    /// time and the kind's timeout. Running operations are those still waiting for their completion
    /// (`complete_seq IS NULL`), which the small `operations_open` index holds by kind and time.
    func statusCondition(_ status: OperationStatus, _ lifecycle: LifecycleDefinition, now: Int64) -> (String, [DatabaseValue]) {
        guard status == .running || status == .stuck else { return ("status = ?", [status.rawValue.databaseValue]) }
        guard let seconds = stuckAfter(lifecycle) else { return (status == .running ? "complete_seq IS NULL" : "0", []) }
        let threshold = self.now(minus: seconds, from: now).databaseValue
        return ("complete_seq IS NULL AND _at_us \(status == .stuck ? "<" : ">=") ?", [threshold])
    }

    private func now(minus seconds: Int, from now: Int64) -> Int64 { now - Int64(seconds) * 1_000_000 }

    private func unknownKind(_ kind: String) -> StoreError {
        StoreError(.badQuery, "\(kind) is not an operation kind; kinds: \(catalog.lifecycles.map(\.kind).joined(separator: ", "))")
    }

    /// The column and typed value of an `attribute=value` filter on operations.
    func operationColumnValue(_ filter: FieldFilter) throws -> (String, DatabaseValue) {
        guard let index = operationLayout.columnIndex[filter.field] else {
            let names = operationLayout.columns.map(\.name).joined(separator: ", ")
            throw StoreError(.badQuery, "\(filter.field) is not an operation attribute; attributes: \(names)")
        }
        let column = operationLayout.columns[index]
        let (quoted, value) = try columnValue(FieldFilter(field: column.name, value: filter.value), type: column.type)
        return (quoted, value.databaseValue)
    }

    /// An operation from a row of the listing query.
    func operation(_ row: Row, now: Int64) -> Operation {
        let kind: String = row[1]
        let lifecycle = catalog.lifecycle(kind)
        var status = OperationStatus(name: row[5]) ?? .running
        let started: Int64? = row[6]
        if status == .running, let lifecycle, let seconds = stuckAfter(lifecycle), let started,
            started < now - Int64(seconds) * 1_000_000
        {
            status = .stuck
        }
        let keys: [DatabaseValue] = [row[3], row[4]]
        let display = lifecycle?.displayKey ?? 0
        let key = ([keys[display]] + keys).first { !$0.isNull }.flatMap(Self.text)
        var attributes: [(String, JSONValue)] = []
        if let lifecycle {
            for name in lifecycle.attributes + lifecycle.spans.map(\.name) {
                guard let index = operationLayout.columnIndex[name] else { continue }
                let value: DatabaseValue = row[12 + index]
                if let json = Self.json(value, type: operationLayout.columns[index].type) { attributes.append((name, json)) }
            }
        }
        func uuid(_ value: DatabaseValue) -> UUIDValue? {
            (Data.fromDatabaseValue(value)).flatMap { $0.count == 16 ? UUIDValue(bytes: [UInt8]($0)) : nil }
        }
        return Operation(
            kind: kind, key: key, tenantID: uuid(row[2]) ?? UUIDValue(bytes: [UInt8](repeating: 0, count: 16))!,
            status: status, startedMicros: started, completedMicros: row[7], durationMilliseconds: row[8],
            startEventID: uuid(row[9]), completeEventID: uuid(row[10]), attributes: attributes, sequence: row[0],
            atMicros: row[11])
    }

    /// A stored value as text: 16-byte blobs as UUIDs.
    static func text(_ value: DatabaseValue) -> String? {
        switch value.storage {
        case .null: nil
        case .int64(let v): String(v)
        case .double(let v): String(v)
        case .string(let s): s
        case .blob(let data): data.count == 16 ? UUIDValue(bytes: [UInt8](data))?.description : data.base64EncodedString()
        }
    }

    /// A stored value as JSON, read per the field's type.
    static func json(_ value: DatabaseValue, type: FieldType) -> JSONValue? {
        switch value.storage {
        case .null: return nil
        case .int64(let v):
            switch type {
            case .bool: return .bool(v != 0)
            case .timestamp: return .string(ISO8601Timestamp.string(fromMicroseconds: v))
            case .number: return .number(Double(v))
            default: return .integer(v)
            }
        case .double(let v): return .number(v)
        case .string(let s): return .string(s)
        case .blob: return text(value).map { .string($0) }
        }
    }
}
