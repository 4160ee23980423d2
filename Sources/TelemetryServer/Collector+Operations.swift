import Foundation
import Hummingbird
import Prometheus
import TelemetryPipeline
import TelemetryCatalog
import TelemetryStore

extension Collector {
    // MARK: GET /v1/operations

    static let operationParameters: Set<String> = ["kind", "status", "tenant_id", "key", "since", "until", "limit", "cursor"]

    func listOperations(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters
        var query = OperationQuery(nowMicros: Self.nowMicros())
        do {
            query.kind = parameters.value("kind")
            if let status = parameters.value("status") {
                guard let parsed = OperationStatus(name: status) else {
                    throw QueryError("status is one of running, succeeded, failed, stuck; got \(status)")
                }
                query.status = parsed
            }
            query.tenantID = try context.access.tenantFilter(parameters.value("tenant_id"))
            query.key = parameters.value("key")
            (query.since, query.until) = try Self.timeRange(parameters)
            if let text = parameters.value("limit") {
                guard let n = Int(text), (1...1000).contains(n) else { throw QueryError("limit must be a whole number from 1 to 1000") }
                query.limit = n
            }
            if let text = parameters.value("cursor") {
                guard let cursor = OperationCursor(text) else { throw QueryError("cursor is not one this API returned") }
                query.before = cursor
            }
            for (key, value) in parameters where !Self.operationParameters.contains(String(key)) {
                query.attributes.append(FieldFilter(field: String(key), value: String(value)))
            }
        } catch {
            return Self.refusal(error)
        }
        do {
            let page = try await store.operations(query)
            let body: JSONValue = [
                "operations": .array(page.operations.map(\.json)),
                "next_cursor": page.next.map { .string($0.description) } ?? .null,
            ]
            return Self.json(.ok, body.render())
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }

    // MARK: GET /v1/stats

    static let statsParameters: Set<String> = [
        "event_type", "operation", "field", "agg", "group_by", "since", "until", "interval", "tenant_id",
    ]

    func stats(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        var query: StatsQuery
        do {
            query = try Self.statsQuery(request.uri.queryParameters, now: Self.nowMicros())
            query.tenantID = try context.access.tenantFilter(query.tenantID)
        } catch {
            return Self.refusal(error)
        }
        do {
            let groups = try await store.stats(query)
            let body: JSONValue = ["groups": .array(groups.map(\.json))]
            return Self.json(.ok, body.render())
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }

    static func statsQuery(_ parameters: Parameters, now: Int64) throws(QueryError) -> StatsQuery {
        let source: StatsQuery.Source
        switch (parameters.value("event_type"), parameters.value("operation")) {
        case (let eventType?, nil): source = .events(eventType: eventType)
        case (nil, let kind?): source = .operations(kind: kind)
        case (nil, nil): source = .allEvents
        default: throw QueryError("give at most one of event_type=TYPE or operation=KIND (neither: events of every type)")
        }
        var query = StatsQuery(source: source, nowMicros: now)
        query.field = parameters.value("field")
        if let list = parameters.value("agg") {
            query.aggregates = []
            for name in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
                guard let aggregate = StatsAggregate(name: name) else {
                    throw QueryError("\(name) is not an aggregate; use count, sum, avg, min, max, last, rate or a percentile such as p50, p95, p99")
                }
                query.aggregates.append(aggregate)
            }
        }
        if let list = parameters.value("group_by") {
            query.groupBy = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        (query.since, query.until) = try timeRange(parameters)
        if let interval = parameters.value("interval") {
            guard let seconds = DurationText.seconds(interval) else {
                throw QueryError("interval takes a number and s, m, h or d, e.g. 1m or 1h; got \(interval)")
            }
            query.intervalMicros = seconds * 1_000_000
        }
        query.tenantID = parameters.value("tenant_id")
        for (key, value) in parameters where !statsParameters.contains(String(key)) {
            query.filters.append(FieldFilter(field: String(key), value: String(value)))
        }
        return query
    }

    /// `since` and `until` as UTC microseconds.
    static func timeRange(_ parameters: Parameters) throws(QueryError) -> (Int64?, Int64?) {
        var result: (Int64?, Int64?) = (nil, nil)
        if let since = parameters.value("since") {
            guard let micros = ISO8601Timestamp.microseconds(since) else {
                throw QueryError("since must be an ISO 8601 timestamp with a zone, e.g. 2026-11-29T00:00:00Z")
            }
            result.0 = micros
        }
        if let until = parameters.value("until") {
            guard let micros = ISO8601Timestamp.microseconds(until) else {
                throw QueryError("until must be an ISO 8601 timestamp with a zone, e.g. 2026-11-29T00:00:00Z")
            }
            result.1 = micros
        }
        return result
    }

    // MARK: GET /metrics

    /// The Prometheus exposition of the collector's metrics; the gauges that are cheaper to read
    /// than to maintain (stuck operations, store size, writer queue) are read at scrape time.
    func metrics() async throws -> Response {
        do {
            metrics.setStuck(try await store.stuckOperationCounts(nowMicros: Self.nowMicros()))
            metrics.storeBytes.set(Double(try await store.sizeBytes()))
            metrics.pairingLag.set(Double(store.pairingLag))
            metrics.dedupeRecentIDs.set(Double(store.dedupeRecentIDs))
            metrics.queueDepth.set(Double(ingestor.sink.pendingEvents))
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: .init(bytes: metrics.registry.emitToBuffer())))
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }
}
