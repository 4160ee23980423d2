import CSQLiteTuning
import Foundation
package import TelemetryCatalog

/// What every store does the same way: text forms of ids and issues, and the shape of stats answers.
package enum StoreSupport {
    /// Names the calling thread (up to 15 bytes; what `top -H` and `/proc/…/task/*/comm` show).
    /// Set with the system call itself: on Linux, Foundation's `Thread.name` setter names the
    /// thread only once `start()` has stored the new thread's handle, which it does after the
    /// thread is created; a thread that names itself first thing can run before that, and keeps
    /// its creator's name (`bench ingest` then counted pairing as requests, ~1 run in 10).
    package static func nameCurrentThread(_ name: String) {
        _ = telemetry_name_current_thread(name)
    }

    /// The most groups (group values × time buckets) one stats answer may hold.
    package static let maxStatsGroups = 10_000

    /// Lower-case canonical text for a UUID, or the text unchanged when it is none.
    package static func canonicalUUIDText(_ text: String) -> String {
        UUIDValue(text)?.description ?? text
    }

    package static func parseIssues(_ json: String) -> [ValidationIssue] {
        guard let array = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: String]] else { return [] }
        return array.map { entry in
            ValidationIssue(
                field: entry["field"] ?? "", code: ValidationIssue.Code(rawValue: entry["code"] ?? ""), message: entry["message"] ?? "")
        }
    }

    package static func issuesJSON(_ issues: [ValidationIssue]) -> String {
        JSONValue.array(
            issues.map { ["field": .string($0.field), "code": .string($0.code.rawValue), "message": .string($0.message)] }
        ).render()
    }

    /// The index into `count` sorted values of the nearest-rank percentile `p`: the smallest value
    /// with at least p% of the values at or below it.
    package static func nearestRank(_ p: Double, count: Int) -> Int {
        let rank = Int((p / 100 * Double(count)).rounded(.up))
        return min(max(rank, 1), count) - 1
    }

    package static func sorted(_ groups: [StatsGroup]) -> [StatsGroup] {
        let keyed: [(key: String, group: StatsGroup)] = groups.map { (JSONValue.object($0.key).render(), $0) }
        let ordered = keyed.sorted { (a: (key: String, group: StatsGroup), b: (key: String, group: StatsGroup)) -> Bool in
            if a.key != b.key { return a.key < b.key }
            let x: Int64 = a.group.bucketMicros ?? 0
            let y: Int64 = b.group.bucketMicros ?? 0
            return x < y
        }
        return ordered.map { $0.group }
    }

    /// Checks that every aggregate can read a field of `type`: numeric ones a number, `rate` a bool.
    package static func check(_ aggregates: [StatsAggregate], of fieldName: String, type: FieldType) throws {
        let numeric = type == .integer || type == .number
        for aggregate in aggregates {
            if aggregate.isNumeric && !numeric {
                throw StoreError(.badQuery, "\(aggregate.name) needs a numeric field; \(fieldName) is \(type)")
            }
            if aggregate == .rate && type != .bool {
                throw StoreError(.badQuery, "rate needs a bool field; \(fieldName) is \(type)")
            }
        }
    }

    package static func tooManyGroups() -> StoreError {
        StoreError(.badQuery, "the answer would hold more than \(maxStatsGroups) groups; group by fewer fields, narrow the range or use a longer interval")
    }

    /// A `field=value` filter's value, read per the field's type (bools as 0 or 1, timestamps as UTC
    /// microseconds).
    package enum FilterValue: Sendable {
        case integer(Int64)
        case number(Double)
        case text(String)
        /// A UUID field's value as sent (a store keeps UUIDs in its own form, other text as is).
        case uuid(String)
    }

    /// Reads the value of a filter on the field `filter.field` of type `type`.
    ///
    /// - Throws: ``StoreError/Code/badQuery`` naming the field and what its values look like.
    package static func filterValue(_ filter: FieldFilter, type: FieldType) throws -> FilterValue {
        let name = filter.field
        let text = filter.value
        if name == "event_id" {
            guard let id = UUIDValue(text) else { throw StoreError(.badQuery, "event_id must be a UUID") }
            return .uuid(id.description)
        }
        switch type {
        case .integer:
            guard let v = Int64(text) else { throw StoreError(.badQuery, "\(name) is an integer; got \"\(text)\"") }
            return .integer(v)
        case .number:
            guard let v = Double(text) else { throw StoreError(.badQuery, "\(name) is a number; got \"\(text)\"") }
            return .number(v)
        case .bool:
            switch text {
            case "true", "1": return .integer(1)
            case "false", "0": return .integer(0)
            default: throw StoreError(.badQuery, "\(name) is true or false; got \"\(text)\"")
            }
        case .timestamp:
            guard let micros = ISO8601Timestamp.microseconds(text) else {
                throw StoreError(.badQuery, "\(name) is an ISO 8601 timestamp with a zone; got \"\(text)\"")
            }
            return .integer(micros)
        case .uuid:
            return .uuid(text)
        default:
            return .text(text)
        }
    }
}
