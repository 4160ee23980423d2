import Foundation
public import TelemetryCatalog
public import TelemetryStore

extension ClickHouseStore {
    public func events(_ query: EventQuery) async throws -> EventPage {
        var conditions: [String] = []
        if let eventType = query.eventType { conditions.append("event_type = \(SQL.quote(eventType))") }
        if let topic = query.topic {
            let types = catalog.events.filter { $0.topic.name == topic }.map(\.eventType)
            conditions.append(types.isEmpty ? "0" : "event_type IN (\(SQL.list(types)))")
        }
        if let tenant = query.tenantID { conditions.append("tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText(tenant)))") }
        if let source = query.source { conditions.append("source = \(SQL.quote(source))") }
        if let since = query.since { conditions.append("timestamp >= \(since)") }
        if let until = query.until { conditions.append("timestamp < \(until)") }
        for filter in query.fields { conditions.append(try condition(filter)) }
        if let before = query.before { conditions.append("_seq < \(before)") }
        if let after = query.after { conditions.append("_seq > \(after)") }
        let limit = max(1, min(query.limit, 10_000))
        let ascending = query.after != nil
        // Without FINAL (on ClickHouse 18 it made a tenant's newest events ~6x slower): the writer's
        // dedupe keeps an event to one row, but for two writers racing on one event, whose second
        // row lives until ClickHouse merges the parts; a page lists each event once regardless.
        // Two steps: the page's sequence numbers (small columns), then the JSON of those rows only
        // (ClickHouse 18 would otherwise read the JSON of every matching row before sorting).
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let numbers = try await client.rows(
            "SELECT _seq FROM events \(whereClause) ORDER BY _seq \(ascending ? "ASC" : "DESC") LIMIT \(limit + 1)"
        ).compactMap { $0.first?.int64 }
        guard !numbers.isEmpty else { return EventPage(events: [], nextBefore: nil) }
        let page = Array(numbers.prefix(limit))
        var found: [Int64: (id: String, json: String)] = [:]
        for row in try await client.rows(
            """
            SELECT _seq, event_id, _json FROM events PREWHERE _seq IN (\(page.map(String.init).joined(separator: ", ")))
            \(whereClause)
            """)
        {
            if let sequence = row[0].int64 { found[sequence] = (row[1].string ?? "", row[2].string ?? "{}") }
        }
        var seen: Set<String> = []
        var events: [StoredEvent] = []
        for sequence in page {
            guard let row = found[sequence], seen.insert(row.id).inserted else { continue }
            events.append(StoredEvent(sequence: sequence, json: row.json))
        }
        let more = numbers.count > limit
        return EventPage(events: events, nextBefore: more && !ascending ? page.last : nil)
    }

    public func event(id: UUIDValue, tenant: UUIDValue?) async throws -> StoredEvent? {
        // The id index gives the event's type, tenant and time: the events' sorting key, so the
        // read goes straight to the row. An event whose id row is missing (its writer died between
        // the two inserts) is still found, by a scan.
        var conditions = ["event_id = \(SQL.quote(id.description))"]
        if let found = try await client.rows(
            "SELECT timestamp, event_type, tenant_id FROM event_ids WHERE event_id = \(SQL.quote(id.description)) LIMIT 1"
        ).first, let timestamp = found[0].int64 {
            conditions.append("timestamp = \(timestamp)")
            if let type = found[1].string, !type.isEmpty, let owner = found[2].string, !owner.isEmpty {
                conditions += ["event_type = \(SQL.quote(type))", "tenant_id = \(SQL.quote(owner))"]
            }
        }
        if let tenant { conditions.append("tenant_id = \(SQL.quote(tenant.description))") }
        guard let row = try await client.rows(
            "SELECT _seq, _json FROM events WHERE \(conditions.joined(separator: " AND ")) ORDER BY _seq LIMIT 1"
        ).first else { return nil }
        return StoredEvent(sequence: row[0].int64 ?? 0, json: row[1].string ?? "{}")
    }

    public func rejected(_ query: RejectedQuery) async throws -> RejectedPage {
        var conditions: [String] = []
        if let tenant = query.tenantID { conditions.append("tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText(tenant)))") }
        if let eventType = query.eventType { conditions.append("event_type = \(SQL.quote(eventType))") }
        if let code = query.code { conditions.append("position(codes, \(SQL.quote("," + code + ","))) > 0") }
        if let before = query.before { conditions.append("_seq < \(before)") }
        let limit = max(1, min(query.limit, 10_000))
        let rows = try await client.rows(
            """
            SELECT _seq, _received_us, _request_id, _index, tenant_id, event_type, event_id, errors, raw FROM rejected
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            ORDER BY _seq DESC LIMIT \(limit + 1)
            """)
        let rejected = rows.prefix(limit).map { row -> RejectedEvent in
            var event = RejectedEvent(
                raw: row[8] ?? [], issues: StoreSupport.parseIssues(row[7].string ?? "[]"), eventType: row[5].string,
                eventID: row[6].string, tenantID: row[4].string, index: Int(row[3].int64 ?? 0),
                receivedMicros: row[1].int64 ?? 0, requestID: row[2].string ?? "")
            event.sequence = row[0].int64 ?? 0
            return event
        }
        return RejectedPage(rejected: Array(rejected), nextBefore: rows.count > limit ? rejected.last?.sequence : nil)
    }

    /// Retention drops whole day partitions: every day that ends before `micros` goes, events and
    /// ids together (`limit` does not apply; a partition drop is one cheap metadata change).
    /// Events of the day `micros` falls in are kept until that whole day has passed, so an event
    /// outlives its retention by less than a day. Operations go with their events.
    public func deleteEvents(before micros: Int64, limit: Int) async throws -> Int {
        let cutoffDay = micros / 86_400_000_000
        let database = SQL.quote(configuration.location.database)
        let partitions = try await client.rows(
            """
            SELECT partition, sum(rows) FROM system.parts
            WHERE database = \(database) AND table = 'events' AND active
                AND toUInt32(toDate(partition)) < \(cutoffDay)
            GROUP BY partition
            """)
        var deleted = 0
        for row in partitions {
            guard let partition = row[0].string else { continue }
            _ = try await client.execute("ALTER TABLE events DROP PARTITION \(SQL.quote(partition))")
            _ = try await client.execute("ALTER TABLE event_ids DROP PARTITION \(SQL.quote(partition))")
            deleted += Int(row[1].int64 ?? 0)
        }
        return deleted
    }

    /// The condition of a `field=value` filter on a catalog column.
    func condition(_ filter: FieldFilter) throws -> String {
        let name = catalog.canonicalFieldName(filter.field) ?? filter.field
        guard name == "event_id" || layout.columnIndex[name] != nil, let type = layout.typeByName[name] else {
            throw StoreError(.badQuery, "\(filter.field) is not a catalog field; `telemetry catalog` lists them")
        }
        return "\(layout.typed(name, as: type)) = \(try Self.literal(FieldFilter(field: name, value: filter.value), type: type))"
    }

    /// A filter's value as an SQL literal of the column's type.
    static func literal(_ filter: FieldFilter, type: FieldType) throws -> String {
        switch try StoreSupport.filterValue(filter, type: type) {
        case .integer(let v): return String(v)
        case .number(let v): return "toFloat64(\(v))"
        case .text(let v): return SQL.quote(v)
        case .uuid(let v): return SQL.quote(StoreSupport.canonicalUUIDText(v))
        }
    }
}
