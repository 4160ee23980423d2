import Foundation
import TelemetryCatalog
public import TelemetryStore

extension ClickHouseStore {
    /// Aggregates in ClickHouse SQL: `GROUP BY` the group fields and the time bucket; exact
    /// nearest-rank percentiles from each group's sorted values (`arraySort(groupArray(…))`), so
    /// the answers equal the SQLite store's.
    public func stats(_ query: StatsQuery) async throws -> [StatsGroup] {
        var aggregates = query.aggregates.isEmpty ? [.count] : query.aggregates
        if !aggregates.contains(.count) { aggregates.insert(.count, at: 0) }
        var conditions: [String] = []
        var fields: [String: (sql: String, type: FieldType)] = [:]
        let table: String
        let time: String
        let what: String
        switch query.source {
        case .events(let eventType):
            guard let definition = catalog.latest(eventType) else {
                throw StoreError(.badQuery, "\(eventType) is not an event type; `telemetry catalog` lists them")
            }
            what = eventType
            table = "events FINAL"
            time = "timestamp"
            for field in catalog.allFields(of: definition) where ColumnLayout.isColumn(field.type) {
                fields[field.name] = (layout.typed(field.name, as: field.type), field.type)
            }
            conditions.append("event_type = \(SQL.quote(eventType))")
            for filter in query.filters {
                let name = catalog.canonicalFieldName(filter.field) ?? filter.field
                guard let field = fields[name] else { throw StoreError(.badQuery, "\(eventType) has no field \(filter.field) to filter on") }
                conditions.append("\(field.sql) = \(try Self.literal(FieldFilter(field: name, value: filter.value), type: field.type))")
            }
        case .allEvents:
            what = "events"
            table = "events FINAL"
            time = "timestamp"
            for field in catalog.envelope where ColumnLayout.isColumn(field.type) {
                fields[field.name] = (layout.typed(field.name, as: field.type), field.type)
            }
            let types = catalog.events.map(\.eventType)
            let topics = catalog.events.map(\.topic.name)
            fields["topic"] = ("transform(event_type, [\(SQL.list(types))], [\(SQL.list(topics))], 'unknown')", .string)
            conditions.append("event_type IN (\(SQL.list(catalog.eventTypes)))")
            for filter in query.filters {
                let name = catalog.canonicalFieldName(filter.field) ?? filter.field
                guard let field = fields[name], name != "topic" else {
                    throw StoreError(.badQuery, "events of every type can be filtered by envelope fields only; not \(filter.field)")
                }
                conditions.append("\(field.sql) = \(try Self.literal(FieldFilter(field: name, value: filter.value), type: field.type))")
            }
        case .operations(let kind):
            guard let lifecycle = catalog.lifecycle(kind) else { throw unknownKind(kind) }
            what = "\(kind) operations"
            // Only the attributes the query reads are computed.
            let asked = query.groupBy + query.filters.map(\.field) + [query.field ?? "duration_ms"]
            let named = Set(asked + asked.compactMap { catalog.canonicalFieldName($0) })
            table = "(\(operationsSQL(lifecycle, tenant: query.tenantID, nowMicros: query.nowMicros, since: query.since, until: query.until, only: named)))"
            time = "o_at"
            for name in lifecycle.attributes { fields[name] = ("`a_\(name)`", attributeType(name, lifecycle)) }
            for span in lifecycle.spans { fields[span.name] = ("`a_\(span.name)`", .number) }
            fields["duration_ms"] = ("o_duration_ms", .number)
            fields["duration_s"] = ("(o_duration_ms / 1000)", .number)
            fields["duration_h"] = ("(o_duration_ms / 3600000)", .number)
            fields["success"] = ("multiIf(o_status = 'succeeded', 1, o_status = 'failed', 0, NULL)", .bool)
            fields["tenant_id"] = ("o_tenant", .uuid)
            fields["status"] = ("o_status", .string)
            for filter in query.filters {
                if filter.field == "status" {
                    guard OperationStatus(name: filter.value) != nil else {
                        throw StoreError(.badQuery, "status is one of running, succeeded, failed, stuck; got \"\(filter.value)\"")
                    }
                    conditions.append("o_status = \(SQL.quote(filter.value))")
                    continue
                }
                guard lifecycle.attributes.contains(filter.field) || lifecycle.spans.contains(where: { $0.name == filter.field }) else {
                    throw StoreError(.badQuery, "\(kind) operations have no attribute \(filter.field) to filter on")
                }
                conditions.append(try attributeCondition(filter, lifecycle))
            }
        }
        if let tenant = query.tenantID, case .operations = query.source {
            _ = tenant  // applied inside the operations' SQL
        } else if let tenant = query.tenantID {
            conditions.append("tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText(tenant)))")
        }
        if let since = query.since { conditions.append("\(time) >= \(since)") }
        if let until = query.until { conditions.append("\(time) < \(until)") }

        var groups: [(name: String, sql: String, type: FieldType)] = []
        for name in query.groupBy {
            let canonical = catalog.canonicalFieldName(name) ?? name
            guard let field = fields[canonical] else {
                throw StoreError(.badQuery, "no field \(name) to group by in \(what); fields: \(fields.keys.sorted().joined(separator: ", "))")
            }
            groups.append((canonical, field.sql, field.type))
        }
        // Group expressions are named `_g1…` for GROUP BY (ClickHouse 18 does not group by position).
        var select = groups.enumerated().map { "\($1.sql) AS _g\($0 + 1)" }
        if let interval = query.intervalMicros {
            guard interval > 0 else { throw StoreError(.badQuery, "interval must be positive") }
            if let since = query.since, let until = query.until, (until - since) / interval > Int64(StoreSupport.maxStatsGroups) {
                throw StoreError(.badQuery, "the range holds more than \(StoreSupport.maxStatsGroups) intervals; use a longer interval")
            }
            select.append("intDiv(\(time), \(interval)) * \(interval) AS _g\(select.count + 1)")
        }
        let groupCount = select.count
        let fieldName: String? = if case .operations = query.source { query.field ?? "duration_ms" } else { query.field }
        var value = "NULL"
        if let fieldName {
            let canonical = catalog.canonicalFieldName(fieldName) ?? fieldName
            guard let field = fields[canonical] else {
                throw StoreError(.badQuery, "no field \(fieldName) in \(what); fields: \(fields.keys.sorted().joined(separator: ", "))")
            }
            try StoreSupport.check(aggregates, of: fieldName, type: field.type)
            value = "toFloat64(\(field.sql))"
        } else if let needing = aggregates.first(where: { $0 != .count }) {
            throw StoreError(.badQuery, "\(needing.name) needs a field: add field=NAME")
        }
        // Every aggregate of the value, NULLs left out; count() counts rows.
        let present = "isNotNull(\(value))"
        select.append("count()")
        for aggregate in aggregates {
            switch aggregate {
            case .count: select.append("count()")
            case .sum: select.append("if(countIf(\(present)) > 0, sumIf(\(value), \(present)), NULL)")
            case .min: select.append("if(countIf(\(present)) > 0, minIf(\(value), \(present)), NULL)")
            case .max: select.append("if(countIf(\(present)) > 0, maxIf(\(value), \(present)), NULL)")
            case .avg, .rate: select.append("if(countIf(\(present)) > 0, avgIf(\(value), \(present)), NULL)")
            case .last:
                select.append("if(countIf(\(present)) > 0, argMaxIf(\(value), \(time), \(present)), NULL)")
            default:
                let p = aggregate.percentile ?? 100
                let sorted = "arraySort(groupArrayIf(assumeNotNull(\(value)), \(present)))"
                select.append(
                    "if(countIf(\(present)) > 0, arrayElement(\(sorted), toUInt64(greatest(1., least(toFloat64(countIf(\(present))), ceil(\(p) / 100 * countIf(\(present))))))), NULL)"
                )
            }
        }
        let sql = """
            SELECT \(select.joined(separator: ", ")) FROM \(table)
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            \(groupCount > 0 ? "GROUP BY " + (1...groupCount).map { "_g\($0)" }.joined(separator: ", ") : "")
            LIMIT \(StoreSupport.maxStatsGroups + 1)
            """
        let rows = try await client.rows(sql)
        guard rows.count <= StoreSupport.maxStatsGroups else { throw StoreSupport.tooManyGroups() }
        var answer: [StatsGroup] = []
        for row in rows {
            let count = Int(row[groupCount].int64 ?? 0)
            if count == 0 { continue }  // an aggregate with no GROUP BY over no rows
            let key = groups.enumerated().map { index, group in (group.name, Self.json(row[index], type: group.type) ?? .null) }
            let values = aggregates.enumerated().map { offset, aggregate -> (StatsAggregate, Double?) in
                (aggregate, aggregate == .count ? Double(count) : row[groupCount + 1 + offset].double)
            }
            answer.append(
                StatsGroup(
                    key: key, bucketMicros: query.intervalMicros == nil ? nil : row[groups.count].int64, count: count, values: values))
        }
        return StoreSupport.sorted(answer)
    }
}
