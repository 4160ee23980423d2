import Foundation
import TelemetryCatalog
public import TelemetryStore

extension ClickHouseStore {
    /// The stuck timeout of `lifecycle` in seconds, after configuration; `nil` when it never sticks.
    func stuckAfter(_ lifecycle: LifecycleDefinition) -> Int? {
        let seconds = configuration.stuckAfterSeconds[lifecycle.kind] ?? lifecycle.stuckAfterSeconds
        guard let seconds, seconds > 0 else { return nil }
        return seconds
    }

    /// A column's SQL for one side's field: `event_id` and the catalog columns; NULL for a field
    /// the events table has no column for.
    private func column(_ field: String) -> String {
        if field == "event_id" { return "event_id" }
        return layout.columnIndex[field].map { layout.columns[$0].quoted } ?? "NULL"
    }

    /// The value of `field` on one side of a group (`h_is_start` or `h_is_complete`), NULL when
    /// that side has none. (`anyIf` alone answers an empty string, not NULL, for a String column
    /// on ClickHouse 18, hence the count.)
    private func side(_ field: String, _ condition: String, as type: FieldType) -> String {
        guard field == "event_id" || layout.columnIndex[field] != nil else { return "NULL" }
        let column = layout.typed(field, as: type)
        return "if(countIf(\(condition) AND isNotNull(\(column))) > 0, anyIf(\(column), \(condition) AND isNotNull(\(column))), NULL)"
    }

    /// The SQL of one kind's operations, computed from its lifecycle events: one row an operation,
    /// with the columns `o_*` (and `a_NAME` for attributes and spans).
    ///
    /// Halves are grouped by tenant and a pairing key: the start's first key, which a completion
    /// carries as its first key field; a completion without it (a second key only, as a pod deploy
    /// completion with a `resource_id` but no `prevision_event_id`) is given the first key of the
    /// start that has its second key, looked up by a join. A half with no key at all pairs with
    /// nothing. An event stored twice changes nothing (the aggregates take any, min, or count > 0),
    /// so the events are read without FINAL.
    ///
    /// With `since`/`until` (bounds on when operations started), only the halves of operations that
    /// can fall in the range are grouped: those in the range, and any half sharing a pairing key
    /// with one (a completion long after its start, a start before its completion); the caller
    /// still filters on `o_at`.
    ///
    /// `only` limits the attribute and span columns to those named (a stats query needs only its
    /// field and groups; a stuck count none), which spares ClickHouse most of the aggregation.
    func operationsSQL(
        _ lifecycle: LifecycleDefinition, tenant: String?, nowMicros: Int64, since: Int64? = nil, until: Int64? = nil,
        only: Set<String>? = nil, halves: String? = nil
    ) -> String {
        let attributes = lifecycle.attributes.filter { only?.contains($0) ?? true }
        let spans = lifecycle.spans.filter { only?.contains($0.name) ?? true }
        let start = SQL.quote(lifecycle.startEventType)
        let complete = SQL.quote(lifecycle.completeEventType)
        var conditions = halfConditions(lifecycle, tenant: tenant)
        if let halves { conditions.append(halves) }
        let first = lifecycle.keys[0]
        let firstKey = "if(event_type = \(start), \(column(first.startField)), \(column(first.completeField)))"
        if lifecycle.keys.count == 1, since != nil || until != nil {
            var range: [String] = []
            if let since { range.append("timestamp >= \(since)") }
            if let until { range.append("timestamp < \(until)") }
            let inRange = range.joined(separator: " AND ")
            if layout.hashedKinds.contains(lifecycle.kind) {
                conditions.append(
                    "(\(inRange) OR _pair_key IN (SELECT _pair_key FROM events WHERE \(conditions.joined(separator: " AND ")) AND \(inRange)))")
            } else {
                conditions.append(
                    "(\(inRange) OR CAST(\(firstKey) AS Nullable(String)) IN (SELECT CAST(\(firstKey) AS Nullable(String)) FROM events WHERE \(conditions.joined(separator: " AND ")) AND \(inRange)))"
                )
            }
        }
        var needed = Set(["event_type", "tenant_id", "timestamp"])
        for name in attributes { needed.insert(name) }
        for span in spans { needed.formUnion([span.from.field, span.to.field]) }
        if let result = lifecycle.resultField { needed.insert(result) }
        for key in lifecycle.keys { needed.formUnion([key.startField, key.completeField]) }
        needed.remove("event_id")
        let columns = (["_seq", "event_id"] + needed.sorted().filter { layout.columnIndex[$0] != nil }.map { "`\($0)`" })
            .joined(separator: ", ")
        var halves = """
            SELECT \(columns), event_type = \(start) AS h_is_start, event_type = \(complete) AS h_is_complete,
                CAST(\(firstKey) AS Nullable(String)) AS h_key1
            FROM events WHERE \(conditions.joined(separator: " AND "))
            """
        var pairingKey = "ifNull(h_key1, concat('#', event_id))"
        var secondKey: String? = nil
        if lifecycle.keys.count > 1 {
            let second = lifecycle.keys[1]
            let startSecond = column(second.startField)
            let secondValue = "if(event_type = \(start), \(startSecond), \(column(second.completeField)))"
            halves = """
                SELECT * FROM (
                    SELECT \(columns), event_type = \(start) AS h_is_start, event_type = \(complete) AS h_is_complete,
                        CAST(\(firstKey) AS Nullable(String)) AS h_key1, ifNull(CAST(\(secondValue) AS Nullable(String)), '') AS h_key2
                    FROM events WHERE \(conditions.joined(separator: " AND "))
                ) ANY LEFT JOIN (
                    SELECT tenant_id, ifNull(CAST(\(startSecond) AS Nullable(String)), '') AS h_key2,
                        any(CAST(\(column(first.startField)) AS String)) AS h_mapped
                    FROM events WHERE event_type = \(start)
                        \(lifecycle.startsWhen.map { "AND \(column($0)) = 1" } ?? "")
                        \(tenant.map { "AND tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText($0)))" } ?? "")
                    GROUP BY tenant_id, h_key2
                ) USING (tenant_id, h_key2)
                """
            pairingKey = """
                ifNull(h_key1, if(h_key2 = '', concat('#', event_id), if(h_mapped = '', concat('~', h_key2), h_mapped)))
                """
            // The start's second key when it has one, else the completion's (one answer, whichever
            // row ClickHouse meets first: the two may differ).
            secondKey = """
                if(countIf(h_is_start AND h_key2 != '') > 0, anyIf(h_key2, h_is_start AND h_key2 != ''),
                    if(countIf(h_key2 != '') > 0, anyIf(h_key2, h_key2 != ''), NULL))
                """
        }
        let hasStart = "countIf(h_is_start) > 0"
        let hasComplete = "countIf(h_is_complete) > 0"
        let startedAt = "minIf(timestamp, h_is_start)"
        let completedAt = "minIf(timestamp, h_is_complete)"
        let status = statusSQL(
            lifecycle, hasStart: hasStart, hasComplete: hasComplete, at: "if(\(hasStart), \(startedAt), \(completedAt))",
            completion: "h_is_complete", nowMicros: nowMicros)
        var select = [
            "tenant_id AS o_tenant",
            "if(startsWith(h_okey, '#') OR startsWith(h_okey, '~'), NULL, h_okey) AS o_key1",
            "\(secondKey ?? "CAST(NULL AS Nullable(String))") AS o_key2",
            "\(hasStart) AS o_has_start",
            "\(hasComplete) AS o_has_complete",
            "if(\(hasStart), \(startedAt), NULL) AS o_started",
            "if(\(hasComplete), \(completedAt), NULL) AS o_completed",
            "if(\(hasStart), \(startedAt), \(completedAt)) AS o_at",
            "if(\(hasStart) AND \(hasComplete), (\(completedAt) - \(startedAt)) / 1000, NULL) AS o_duration_ms",
            "\(status) AS o_status",
            "if(\(hasStart), anyIf(event_id, h_is_start), NULL) AS o_start_id",
            "if(\(hasComplete), anyIf(event_id, h_is_complete), NULL) AS o_complete_id",
            "min(_seq) AS o_seq",
        ]
        for name in attributes {
            select.append("\(attributeValue(name, type: attributeType(name, lifecycle))) AS `a_\(name)`")
        }
        for span in spans {
            func instant(_ instant: LifecycleDefinition.Instant) -> String {
                side(instant.field, instant.ofCompletion ? "h_is_complete" : "h_is_start", as: .timestamp)
            }
            select.append("(\(instant(span.to)) - \(instant(span.from))) / 1000 AS `a_\(span.name)`")
        }
        return """
            SELECT \(select.joined(separator: ",\n    "))
            FROM (SELECT *, \(pairingKey) AS h_okey FROM (\(halves)))
            GROUP BY tenant_id, h_okey
            """
    }

    /// Which events are halves of `lifecycle`'s operations (of `tenant`, when given).
    private func halfConditions(_ lifecycle: LifecycleDefinition, tenant: String?) -> [String] {
        let start = SQL.quote(lifecycle.startEventType)
        let complete = SQL.quote(lifecycle.completeEventType)
        var conditions = ["event_type IN (\(start), \(complete))"]
        if let when = lifecycle.startsWhen { conditions.append("(event_type != \(start) OR \(column(when)) = 1)") }
        if let when = lifecycle.completesWhen { conditions.append("(event_type != \(complete) OR \(column(when)) = 1)") }
        if let tenant { conditions.append("tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText(tenant)))") }
        return conditions
    }

    /// An operation's status from its aggregates: completed (failed when a completion's result is
    /// false), else stuck when it started before the kind's timeout, else running.
    private func statusSQL(
        _ lifecycle: LifecycleDefinition, hasStart: String, hasComplete: String, at: String, completion: String, nowMicros: Int64
    ) -> String {
        let failed = lifecycle.resultField.map { "minIf(ifNull(\(column($0)), 1), \(completion)) = 0" } ?? "0"
        var stuck = "0"
        if let seconds = stuckAfter(lifecycle) {
            stuck = "\(hasStart) AND \(at) < \(nowMicros - Int64(seconds) * 1_000_000)"
        }
        return "multiIf(\(hasComplete), if(\(failed), 'failed', 'succeeded'), \(stuck), 'stuck', 'running')"
    }

    /// One kind's operations reduced to what their status needs (`o_tenant`, `o_pair`, `o_status`,
    /// `o_at`, `o_seq`), grouped by tenant and `_pair_key`, the pairing key's hash: for kinds
    /// paired by one key (``ClickHouseLayout/hashedKinds``). A half without a key hashes its own
    /// event id, so it pairs with nothing, as in ``operationsSQL(_:tenant:nowMicros:since:until:only:halves:)``.
    /// Two keys with one 64-bit hash would be taken for one operation: at a million operations of a
    /// kind, a chance of about 3·10⁻⁸.
    func leanOperationsSQL(_ lifecycle: LifecycleDefinition, tenant: String?, nowMicros: Int64) -> String {
        let start = SQL.quote(lifecycle.startEventType)
        let complete = SQL.quote(lifecycle.completeEventType)
        let conditions = halfConditions(lifecycle, tenant: tenant)
        let hasStart = "countIf(event_type = \(start)) > 0"
        let hasComplete = "countIf(event_type = \(complete)) > 0"
        let at = "if(\(hasStart), minIf(timestamp, event_type = \(start)), minIf(timestamp, event_type = \(complete)))"
        let status = statusSQL(
            lifecycle, hasStart: hasStart, hasComplete: hasComplete, at: at, completion: "event_type = \(complete)", nowMicros: nowMicros)
        return """
            SELECT tenant_id AS o_tenant, _pair_key AS o_pair, \(at) AS o_at, min(_seq) AS o_seq, \(status) AS o_status
            FROM events WHERE \(conditions.joined(separator: " AND "))
            GROUP BY tenant_id, _pair_key
            """
    }

    /// An attribute: the completion's value when it has one, else the start's.
    private func attributeValue(_ name: String, type: FieldType) -> String {
        let complete = side(name, "h_is_complete", as: type)
        let start = side(name, "h_is_start", as: type)
        if complete == "NULL" { return start }
        return "ifNull(\(complete), \(start))"
    }

    /// The type of an attribute's values: the completion's field's type when it has the field,
    /// else the start's (as the SQLite store types its operation columns).
    func attributeType(_ name: String, _ lifecycle: LifecycleDefinition) -> FieldType {
        func type(_ eventType: String) -> FieldType? {
            guard let definition = catalog.latest(eventType) else { return nil }
            return catalog.allFields(of: definition).first { $0.name == name }?.type
        }
        let found = type(lifecycle.completeEventType) ?? type(lifecycle.startEventType) ?? .string
        return ColumnLayout.isColumn(found) ? found : .string
    }

    public func operations(_ query: OperationQuery) async throws -> OperationPage {
        var lifecycles = catalog.lifecycles
        if let kind = query.kind {
            guard let lifecycle = catalog.lifecycle(kind) else { throw unknownKind(kind) }
            lifecycles = [lifecycle]
        }
        let limit = max(1, min(query.limit, 10_000))
        var operations: [TelemetryStore.Operation] = []
        for lifecycle in lifecycles {
            var conditions: [String] = []
            if let key = query.key {
                let value = SQL.quote(StoreSupport.canonicalUUIDText(key))
                conditions.append("(o_key1 = \(value) OR o_key2 = \(value))")
            }
            if let status = query.status { conditions.append("o_status = \(SQL.quote(status.rawValue))") }
            if let since = query.since { conditions.append("o_at >= \(since)") }
            if let until = query.until { conditions.append("o_at < \(until)") }
            for filter in query.attributes { conditions.append(try attributeCondition(filter, lifecycle)) }
            if let before = query.before {
                conditions.append("(o_at < \(before.atMicros) OR (o_at = \(before.atMicros) AND o_seq < \(before.sequence)))")
            }
            let attributeNames = lifecycle.attributes + lifecycle.spans.map(\.name)
            // Listing by status: which operations have it is found first on the pairing-key hashes
            // alone (every half of the kind, but 8-byte keys and no attributes), then only those
            // are computed in full.
            var halves: String? = nil
            if query.status != nil, query.key == nil, query.attributes.isEmpty, layout.hashedKinds.contains(lifecycle.kind) {
                var lean = ["o_status = \(SQL.quote(query.status!.rawValue))"]
                if let since = query.since { lean.append("o_at >= \(since)") }
                if let until = query.until { lean.append("o_at < \(until)") }
                if let before = query.before {
                    lean.append("(o_at < \(before.atMicros) OR (o_at = \(before.atMicros) AND o_seq < \(before.sequence)))")
                }
                let keys = try await client.rows(
                    """
                    SELECT o_pair FROM (\(leanOperationsSQL(lifecycle, tenant: query.tenantID, nowMicros: query.nowMicros)))
                    WHERE \(lean.joined(separator: " AND ")) ORDER BY o_at DESC, o_seq DESC LIMIT \(limit + 1)
                    """
                ).compactMap { $0.first?.string }
                if keys.isEmpty { continue }
                halves = "_pair_key IN (\(keys.joined(separator: ", ")))"
            }
            // A page of the newest needs only the recent halves: group those from the time of the
            // Nth newest start on (every operation from then on is complete there, so if it holds
            // more than a page, the page is right), widening the window while it holds too few.
            var window = limit + 1
            var rows: [[TSVField]] = []
            while true {
                let floor = halves == nil ? try await startFloor(lifecycle, query, offset: window) : nil
                let since = [query.since, floor].compactMap { $0 }.max()
                rows = try await client.rows(
                    """
                    SELECT o_seq, o_tenant, o_key1, o_key2, o_status, o_started, o_completed, o_duration_ms, o_start_id,
                        o_complete_id, o_at\(attributeNames.map { ", `a_\($0)`" }.joined())
                    FROM (\(operationsSQL(lifecycle, tenant: query.tenantID, nowMicros: query.nowMicros, since: since, until: query.until, halves: halves)))
                    \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
                    \(floor.map { "\(conditions.isEmpty ? "WHERE" : "AND") o_at >= \($0)" } ?? "")
                    ORDER BY o_at DESC, o_seq DESC LIMIT \(limit + 1)
                    """)
                if floor == nil || rows.count > limit { break }
                window *= 8
            }
            operations += rows.map { row in
                var attributes: [(String, JSONValue)] = []
                for (index, name) in attributeNames.enumerated() {
                    let type = index < lifecycle.attributes.count ? attributeType(name, lifecycle) : .number
                    if let value = Self.json(row[11 + index], type: type) { attributes.append((name, value)) }
                }
                let keys = [row[2].string, row[3].string]
                let key = ([keys[lifecycle.displayKey]] + keys).compactMap { $0 }.first
                return TelemetryStore.Operation(
                    kind: lifecycle.kind, key: key,
                    tenantID: row[1].string.flatMap { UUIDValue($0) } ?? UUIDValue(bytes: [UInt8](repeating: 0, count: 16))!,
                    status: row[4].string.flatMap { OperationStatus(name: $0) } ?? .running, startedMicros: row[5].int64,
                    completedMicros: row[6].int64, durationMilliseconds: row[7].double,
                    startEventID: row[8].string.flatMap { UUIDValue($0) }, completeEventID: row[9].string.flatMap { UUIDValue($0) },
                    attributes: attributes, sequence: row[0].int64 ?? 0, atMicros: row[10].int64 ?? 0)
            }
        }
        operations.sort { ($0.atMicros, $0.sequence) > ($1.atMicros, $1.sequence) }
        let page = Array(operations.prefix(limit))
        let next = operations.count > limit ? page.last.map { OperationCursor(atMicros: $0.atMicros, sequence: $0.sequence) } : nil
        return OperationPage(operations: page, next: next)
    }

    /// The start time of the `offset`-th newest start of `lifecycle` that a page can show (before
    /// the cursor, within the range), or `nil` when there are fewer, or the kind pairs by two keys
    /// (its range filter is not narrowed; such kinds are small).
    private func startFloor(_ lifecycle: LifecycleDefinition, _ query: OperationQuery, offset: Int) async throws -> Int64? {
        guard lifecycle.keys.count == 1 else { return nil }
        var conditions = ["event_type = \(SQL.quote(lifecycle.startEventType))"]
        if let when = lifecycle.startsWhen { conditions.append("\(column(when)) = 1") }
        if let tenant = query.tenantID { conditions.append("tenant_id = \(SQL.quote(StoreSupport.canonicalUUIDText(tenant)))") }
        if let until = query.until { conditions.append("timestamp < \(until)") }
        if let before = query.before { conditions.append("timestamp <= \(before.atMicros)") }
        return try await client.rows(
            "SELECT timestamp FROM events WHERE \(conditions.joined(separator: " AND ")) ORDER BY timestamp DESC LIMIT 1 OFFSET \(offset - 1)"
        ).first?.first?.int64
    }

    public func stuckOperationCounts(nowMicros: Int64) async throws -> [String: Int] {
        var result: [String: Int] = [:]
        for lifecycle in catalog.lifecycles {
            result[lifecycle.kind] = 0
            guard stuckAfter(lifecycle) != nil else { continue }
            let sql =
                layout.hashedKinds.contains(lifecycle.kind)
                ? leanOperationsSQL(lifecycle, tenant: nil, nowMicros: nowMicros)
                : operationsSQL(lifecycle, tenant: nil, nowMicros: nowMicros, only: [])
            let count = try await client.rows("SELECT count() FROM (\(sql)) WHERE o_status = 'stuck'").first?.first?.int64 ?? 0
            result[lifecycle.kind] = Int(count)
        }
        return result
    }

    /// The condition of an `attribute=value` filter on one kind's operations.
    func attributeCondition(_ filter: FieldFilter, _ lifecycle: LifecycleDefinition) throws -> String {
        let all = Set(catalog.lifecycles.flatMap { $0.attributes + $0.spans.map(\.name) })
        guard all.contains(filter.field) else {
            throw StoreError(.badQuery, "\(filter.field) is not an operation attribute; attributes: \(all.sorted().joined(separator: ", "))")
        }
        let isSpan = lifecycle.spans.contains { $0.name == filter.field }
        guard isSpan || lifecycle.attributes.contains(filter.field) else { return "0" }
        let type = isSpan ? FieldType.number : attributeType(filter.field, lifecycle)
        return "`a_\(filter.field)` = \(try Self.literal(filter, type: type))"
    }

    func unknownKind(_ kind: String) -> StoreError {
        StoreError(.badQuery, "\(kind) is not an operation kind; kinds: \(catalog.lifecycles.map(\.kind).joined(separator: ", "))")
    }

    /// A column's text as JSON, read per the field's type.
    static func json(_ field: TSVField, type: FieldType) -> JSONValue? {
        guard let text = field.string else { return nil }
        switch type {
        case .bool: return .bool(text == "1")
        case .integer: return Int64(text).map { .integer($0) } ?? .string(text)
        case .timestamp: return Int64(text).map { .string(ISO8601Timestamp.string(fromMicroseconds: $0)) } ?? .string(text)
        case .number: return field.double.map { .number($0) } ?? .string(text)
        default: return .string(text)
        }
    }
}
