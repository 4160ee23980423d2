import Foundation
import GRDB
import GRDBSQLite
import TelemetryCatalog

extension SQLiteStore {

    /// Aggregates, groups and buckets events of one type or operations of one kind.
    ///
    /// Without percentiles SQLite aggregates (`GROUP BY` over the typed columns); with them the
    /// values are read once, in the index order of the time range, and each group's values are
    /// sorted to read exact nearest-rank percentiles.
    ///
    /// - Throws: ``StoreError/Code/badQuery`` for an unknown event type, kind or field, or an
    ///   aggregate the field's type does not allow.
    public func stats(_ query: StatsQuery) async throws -> [StatsGroup] {
        let plan = try statsPlan(query)
        if case .operations = query.source { await waitForPairing() }
        if statsScans.maxRows > 0, let key = plan.scanKey, let groups = try await statsFromScan(key, plan) { return groups }
        let groups = try await read { db in
            if plan.countsInIndexOrder { return try Self.countInIndexOrder(plan, db) }
            return plan.needsValues ? try Self.aggregateInMemory(plan, db) : try Self.aggregateInSQL(plan, db)
        }
        return groups
    }

    struct StatsPlan: Sendable {
        var table: String
        var conditions: [String] = []
        var arguments: [DatabaseValue] = []
        /// SQL expressions of the group fields, and their names and types.
        var groups: [(name: String, sql: String, type: FieldType)] = []
        var bucket: String?
        var value: String?
        var aggregates: [StatsAggregate]
        /// The time column, for `last`.
        var time = ""
        var intervalMicros: Int64?
        /// The topic of each event type, for counting events by topic.
        var topicOfType: [String: String] = [:]
        /// Counts of events by type or topic per time bucket: read in the `(event_type, timestamp)`
        /// index's order and counted as runs, instead of grouped through a temporary B-tree (the
        /// dashboard's events-by-topic chart over a day of a large store: ~0.5 s that way).
        var countsInIndexOrder: Bool {
            table == "events" && intervalMicros != nil && aggregates == [.count] && groups.count == 1
                && (groups[0].name == "event_type" || groups[0].name == "topic")
        }
        var needsValues: Bool { aggregates.contains { $0.percentile != nil || $0 == .last } }
        /// For events of one type: every typed column of the type (name, SQL, type), the
        /// `field=value` filters by name and stored value, and the aggregated field's name; what an
        /// aggregation over a shared scan (``StatsScans``) needs.
        var scanFields: [(name: String, sql: String, type: FieldType)] = []
        var fieldFilters: [(name: String, value: DatabaseValue)] = []
        var valueName: String?
        /// The shared scan this query can be answered from: events of one type whose rows it
        /// has to read (a field, groups, filters, or one tenant: a count of a type over a range
        /// alone is answered from the `(event_type, timestamp)` index, faster than any scan).
        var scanKey: StatsScans.Key?
        var whereClause: String { conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") }
    }

    func statsPlan(_ query: StatsQuery) throws -> StatsPlan {
        var aggregates = query.aggregates.isEmpty ? [.count] : query.aggregates
        if !aggregates.contains(.count) { aggregates.insert(.count, at: 0) }
        var plan = StatsPlan(table: "", aggregates: aggregates)
        let timeColumn: String
        // The columns a query may read, with their types and SQL.
        var fields: [String: (sql: String, type: FieldType)] = [:]
        switch query.source {
        case .events(let eventType):
            guard let definition = catalog.latest(eventType) else {
                throw StoreError(.badQuery, "\(eventType) is not an event type; `telemetry catalog` lists them")
            }
            plan.table = "events"
            timeColumn = "\"timestamp\""
            for field in catalog.allFields(of: definition) where ColumnLayout.isColumn(field.type) {
                fields[field.name] = ("\"\(field.name)\"", field.type)
            }
            plan.conditions.append("event_type = ?")
            plan.arguments.append(eventType.databaseValue)
            for filter in query.filters {
                let name = catalog.canonicalFieldName(filter.field) ?? filter.field
                guard let field = fields[name] else {
                    throw StoreError(.badQuery, "\(eventType) has no field \(filter.field) to filter on")
                }
                let (column, value) = try columnValue(FieldFilter(field: name, value: filter.value), type: field.type)
                plan.conditions.append("\(column) = ?")
                plan.arguments.append(value.databaseValue)
                plan.fieldFilters.append((name, value.databaseValue))
            }
            // Not the id (one value a row), the type (one value a scan) nor the time (read apart).
            plan.scanFields = fields.filter { !["event_id", "event_type", "timestamp"].contains($0.key) }
                .sorted { $0.key < $1.key }.map { ($0.key, $0.value.sql, $0.value.type) }
        case .allEvents:
            plan.table = "events"
            timeColumn = "\"timestamp\""
            for field in catalog.envelope where ColumnLayout.isColumn(field.type) {
                fields[field.name] = ("\"\(field.name)\"", field.type)
            }
            // The topic follows from the event type.
            let cases = catalog.events.map { "WHEN '\($0.eventType)' THEN '\($0.topic.name)'" }.joined(separator: " ")
            fields["topic"] = ("(CASE event_type \(cases) END)", .string)
            for event in catalog.events { plan.topicOfType[event.eventType] = event.topic.name }
            // Naming the types lets time ranges use the (event_type, timestamp) index.
            plan.conditions.append("event_type IN (\(typesList))")
            for filter in query.filters {
                let name = catalog.canonicalFieldName(filter.field) ?? filter.field
                guard let field = fields[name], name != "topic" else {
                    throw StoreError(.badQuery, "events of every type can be filtered by envelope fields only; not \(filter.field)")
                }
                let (column, value) = try columnValue(FieldFilter(field: name, value: filter.value), type: field.type)
                plan.conditions.append("\(column) = ?")
                plan.arguments.append(value.databaseValue)
            }
        case .operations(let kind):
            guard let lifecycle = catalog.lifecycle(kind) else {
                throw StoreError(.badQuery, "\(kind) is not an operation kind; kinds: \(catalog.lifecycles.map(\.kind).joined(separator: ", "))")
            }
            plan.table = "operations"
            timeColumn = "_at_us"
            for name in lifecycle.attributes + lifecycle.spans.map(\.name) {
                let column = operationLayout.columns[operationLayout.columnIndex[name]!]
                fields[name] = (column.quoted, column.type)
            }
            fields["duration_ms"] = ("duration_ms", .number)
            fields["duration_s"] = ("(duration_ms / 1000.0)", .number)
            fields["duration_h"] = ("(duration_ms / 3600000.0)", .number)
            fields["success"] = ("(CASE status WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 0 END)", .bool)
            fields["tenant_id"] = ("tenant_id", .uuid)
            var statusSQL = "status"
            if let seconds = stuckAfter(lifecycle) {
                statusSQL = "(CASE WHEN status = 'running' AND _at_us < \(query.nowMicros - Int64(seconds) * 1_000_000) THEN 'stuck' ELSE status END)"
            }
            fields["status"] = (statusSQL, .string)
            plan.conditions.append("kind = ?")
            plan.arguments.append(kind.databaseValue)
            for filter in query.filters {
                if filter.field == "status" {
                    guard let status = OperationStatus(name: filter.value) else {
                        throw StoreError(.badQuery, "status is one of running, succeeded, failed, stuck; got \"\(filter.value)\"")
                    }
                    let (condition, values) = statusCondition(status, lifecycle, now: query.nowMicros)
                    plan.conditions.append(condition)
                    plan.arguments += values
                    continue
                }
                guard lifecycle.attributes.contains(filter.field) || lifecycle.spans.contains(where: { $0.name == filter.field }) else {
                    throw StoreError(.badQuery, "\(kind) operations have no attribute \(filter.field) to filter on")
                }
                let (column, value) = try operationColumnValue(filter)
                plan.conditions.append("\(column) = ?")
                plan.arguments.append(value)
            }
        }
        plan.time = timeColumn
        if let tenant = query.tenantID {
            plan.conditions.append("tenant_id = ?")
            plan.arguments.append(Self.uuidValue(tenant).databaseValue)
        }
        if let since = query.since {
            plan.conditions.append("\(timeColumn) >= ?")
            plan.arguments.append(since.databaseValue)
        }
        if let until = query.until {
            plan.conditions.append("\(timeColumn) < ?")
            plan.arguments.append(until.databaseValue)
        }
        let what: String
        switch query.source {
        case .events(let eventType): what = eventType
        case .allEvents: what = "events"
        case .operations(let kind): what = "\(kind) operations"
        }
        for name in query.groupBy {
            let canonical = catalog.canonicalFieldName(name) ?? name
            guard let field = fields[canonical] else {
                throw StoreError(.badQuery, "no field \(name) to group by in \(what); fields: \(fields.keys.sorted().joined(separator: ", "))")
            }
            plan.groups.append((canonical, field.sql, field.type))
        }
        if let interval = query.intervalMicros {
            guard interval > 0 else { throw StoreError(.badQuery, "interval must be positive") }
            if let since = query.since, let until = query.until, (until - since) / interval > Int64(StoreSupport.maxStatsGroups) {
                throw StoreError(.badQuery, "the range holds more than \(StoreSupport.maxStatsGroups) intervals; use a longer interval")
            }
            plan.bucket = "((\(timeColumn) / \(interval)) * \(interval))"
            plan.intervalMicros = interval
        }
        let fieldName: String?
        if case .operations = query.source {
            fieldName = query.field ?? "duration_ms"
        } else {
            fieldName = query.field
        }
        if let fieldName {
            let canonical = catalog.canonicalFieldName(fieldName) ?? fieldName
            guard let field = fields[canonical] else {
                throw StoreError(.badQuery, "no field \(fieldName) in \(what); fields: \(fields.keys.sorted().joined(separator: ", "))")
            }
            try StoreSupport.check(aggregates, of: fieldName, type: field.type)
            plan.value = field.sql
            plan.valueName = canonical
        } else if let needing = aggregates.first(where: { $0 != .count }) {
            throw StoreError(.badQuery, "\(needing.name) needs a field: add field=NAME")
        }
        let scanned = Set(plan.scanFields.map(\.name))
        let referenced = plan.groups.map(\.name) + plan.fieldFilters.map(\.name) + (plan.valueName.map { [$0] } ?? [])
        if case .events(let eventType) = query.source,
            plan.value != nil || !plan.groups.isEmpty || !plan.fieldFilters.isEmpty || query.tenantID != nil,
            referenced.allSatisfy(scanned.contains)
        {
            plan.scanKey = StatsScans.Key(eventType: eventType, since: query.since, until: query.until, tenant: query.tenantID)
        }
        return plan
    }

    private static func groupKey(_ plan: StatsPlan, _ values: [DatabaseValue]) -> [(String, JSONValue)] {
        plan.groups.enumerated().map { index, group in
            (group.name, json(values[index], type: group.type) ?? .null)
        }
    }

    private static func aggregateInSQL(_ plan: StatsPlan, _ db: Database) throws -> [StatsGroup] {
        var select = plan.groups.map(\.sql)
        if let bucket = plan.bucket { select.append(bucket) }
        let groupCount = select.count
        let value = plan.value ?? "NULL"
        select += ["count(*)", "count(\(value))", "total(\(value))", "min(\(value))", "max(\(value))", "avg(\(value))"]
        let sql = """
            SELECT \(select.joined(separator: ", ")) FROM \(plan.table) \(plan.whereClause)
            \(groupCount > 0 ? "GROUP BY " + (1...groupCount).map(String.init).joined(separator: ", ") : "")
            LIMIT \(StoreSupport.maxStatsGroups + 1)
            """
        let rows = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(plan.arguments))
        guard rows.count <= StoreSupport.maxStatsGroups else { throw StoreSupport.tooManyGroups() }
        var groups: [StatsGroup] = []
        for row in rows {
            let count: Int = row[groupCount]
            if count == 0 { continue }  // an aggregate with no GROUP BY over no rows
            let present: Int = row[groupCount + 1]
            let values = plan.aggregates.map { aggregate -> (StatsAggregate, Double?) in
                switch aggregate {
                case .count: return (aggregate, Double(count))
                case .sum: return (aggregate, present > 0 ? row[groupCount + 2] : nil)
                case .min: return (aggregate, row[groupCount + 3])
                case .max: return (aggregate, row[groupCount + 4])
                case .avg, .rate: return (aggregate, row[groupCount + 5])
                default: return (aggregate, nil)
                }
            }
            groups.append(
                StatsGroup(
                    key: groupKey(plan, (0..<plan.groups.count).map { row[$0] }), bucketMicros: plan.bucket == nil ? nil : row[plan.groups.count], count: count,
                    values: values))
        }
        return StoreSupport.sorted(groups)
    }

    private static func aggregateInMemory(_ plan: StatsPlan, _ db: Database) throws -> [StatsGroup] {
        var select = plan.groups.map(\.sql)
        if let bucket = plan.bucket { select.append(bucket) }
        let groupCount = select.count
        select += [plan.value ?? "NULL", plan.time]
        let sql = "SELECT \(select.joined(separator: ", ")) FROM \(plan.table) \(plan.whereClause)"
        var aggregation = Aggregation(plan)
        let cursor = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(plan.arguments))
        while let row = try cursor.next() {
            let groupValues: [DatabaseValue] = (0..<groupCount).map { row[$0] }
            try aggregation.add(groupValues, value: row[groupCount], time: row[groupCount + 1] ?? .min)
        }
        return aggregation.groups()
    }

    /// Rows gathered into groups (their group fields' values, then the bucket), each group's
    /// values kept to compute every aggregate from them: percentiles are exact (nearest rank).
    struct Aggregation {
        private struct Accumulator {
            var key: [(String, JSONValue)]
            var bucket: Int64?
            var count = 0
            var values: [Double] = []
            var last: (time: Int64, value: Double)?
        }
        private let plan: StatsPlan
        private var index: [[DatabaseValue]: Int] = [:]
        private var accumulators: [Accumulator] = []

        init(_ plan: StatsPlan) { self.plan = plan }

        /// `groupValues`: the group fields' values, then the bucket's start when bucketed.
        mutating func add(_ groupValues: [DatabaseValue], value: DatabaseValue, time: Int64) throws {
            add(at: try position(of: groupValues), value: Double.fromDatabaseValue(value), time: time)
        }

        /// The group of `groupValues` (see ``add(_:value:time:)``), added when new.
        mutating func position(of groupValues: [DatabaseValue]) throws -> Int {
            if let known = index[groupValues] { return known }
            guard accumulators.count < StoreSupport.maxStatsGroups else { throw StoreSupport.tooManyGroups() }
            index[groupValues] = accumulators.count
            accumulators.append(
                Accumulator(
                    key: groupKey(plan, groupValues),
                    bucket: plan.bucket == nil ? nil : Int64.fromDatabaseValue(groupValues[plan.groups.count])))
            return accumulators.count - 1
        }

        /// Counts a row in the group at `position`, and its value when it has one.
        mutating func add(at position: Int, value: Double?, time: Int64) {
            accumulators[position].count += 1
            if let value {
                accumulators[position].values.append(value)
                if time >= accumulators[position].last?.time ?? .min { accumulators[position].last = (time, value) }
            }
        }

        func groups() -> [StatsGroup] {
            let groups = accumulators.map { accumulator in
                let values = accumulator.values.sorted()
                let n = values.count
                let results = plan.aggregates.map { aggregate -> (StatsAggregate, Double?) in
                    if aggregate == .count { return (aggregate, Double(accumulator.count)) }
                    guard n > 0 else { return (aggregate, nil) }
                    switch aggregate {
                    case .sum: return (aggregate, values.reduce(0, +))
                    case .min: return (aggregate, values[0])
                    case .max: return (aggregate, values[n - 1])
                    case .avg, .rate: return (aggregate, values.reduce(0, +) / Double(n))
                    case .last: return (aggregate, accumulator.last?.value)
                    default:
                        return (aggregate, values[StoreSupport.nearestRank(aggregate.percentile ?? 100, count: n)])
                    }
                }
                return StatsGroup(key: accumulator.key, bucketMicros: accumulator.bucket, count: accumulator.count, values: results)
            }
            return StoreSupport.sorted(groups)
        }
    }

    /// See ``StatsPlan/countsInIndexOrder``.
    private static func countInIndexOrder(_ plan: StatsPlan, _ db: Database) throws -> [StatsGroup] {
        let sql = "SELECT event_type, \"timestamp\" FROM events \(plan.whereClause) ORDER BY event_type, \"timestamp\""
        let statement = try db.makeStatement(sql: sql)
        try statement.setArguments(StatementArguments(plan.arguments))
        let stmt = statement.sqliteStatement
        let interval = plan.intervalMicros!
        let byTopic = plan.groups[0].name == "topic"
        var counts: [String: [Int64: Int]] = [:]
        var type: [UInt8] = []
        var typeName = ""
        var bucket = Int64.min
        var run = 0
        func flush() {
            guard run > 0 else { return }
            let key = byTopic ? plan.topicOfType[typeName] ?? "unknown" : typeName
            counts[key, default: [:]][bucket, default: 0] += run
            run = 0
        }
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
            let length = Int(sqlite3_column_bytes(stmt, 0))
            let text = sqlite3_column_text(stmt, 0)
            let micros = sqlite3_column_int64(stmt, 1)
            let rowBucket = (micros / interval) * interval  // as the SQL path buckets
            let sameType = length == type.count && text.map { memcmp($0, type, length) == 0 } ?? (length == 0)
            if !sameType {
                flush()
                type = text.map { [UInt8](UnsafeBufferPointer(start: $0, count: length)) } ?? []
                typeName = String(decoding: type, as: UTF8.self)
                bucket = rowBucket
            } else if rowBucket != bucket {
                flush()
                bucket = rowBucket
            }
            run += 1
        }
        flush()
        guard counts.values.reduce(0, { $0 + $1.count }) <= StoreSupport.maxStatsGroups else { throw StoreSupport.tooManyGroups() }
        let name = plan.groups[0].name
        let groups = counts.flatMap { key, buckets in
            buckets.map { bucket, count in
                StatsGroup(key: [(name, .string(key))], bucketMicros: bucket, count: count, values: [(.count, Double(count))])
            }
        }
        return StoreSupport.sorted(groups)
    }



}
