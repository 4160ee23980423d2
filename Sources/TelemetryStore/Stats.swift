public import TelemetryCatalog

/// A statistics question: aggregates of one field of an event type, or of an operation kind,
/// grouped by fields and bucketed by time.
public struct StatsQuery: Sendable {
    /// What the rows are.
    public enum Source: Sendable, Hashable {
        /// Events of one type; time is their `timestamp`.
        case events(eventType: String)
        /// Events of every type (only the envelope's fields, and `topic`); time is their `timestamp`.
        case allEvents
        /// Operations of one kind; time is when they started (or completed, when the start is unknown).
        case operations(kind: String)
    }

    public var source: Source
    /// The field aggregated; for operations `nil` means `duration_ms`. `count` needs none.
    public var field: String?
    public var aggregates: [StatsAggregate]
    /// Fields whose values split the rows into groups.
    public var groupBy: [String]
    /// Time bounds, UTC microseconds: `since` inclusive, `until` exclusive.
    public var since: Int64?
    public var until: Int64?
    /// Width of the time buckets, microseconds; `nil` for one bucket over the whole range.
    public var intervalMicros: Int64?
    public var tenantID: String?
    /// `field=value` filters (catalog fields for events; attributes and `status` for operations).
    public var filters: [FieldFilter]
    /// The time `stuck` is judged at (operations only), UTC microseconds.
    public var nowMicros: Int64

    public init(
        source: Source, field: String? = nil, aggregates: [StatsAggregate] = [.count], groupBy: [String] = [],
        since: Int64? = nil, until: Int64? = nil, intervalMicros: Int64? = nil, tenantID: String? = nil,
        filters: [FieldFilter] = [], nowMicros: Int64
    ) {
        self.source = source
        self.field = field
        self.aggregates = aggregates
        self.groupBy = groupBy
        self.since = since
        self.until = until
        self.intervalMicros = intervalMicros
        self.tenantID = tenantID
        self.filters = filters
        self.nowMicros = nowMicros
    }
}

/// One aggregate: `count`, `sum`, `avg`, `min`, `max`, `last` (the value of the newest row that has
/// one, e.g. a user's current space used), `rate` (the share of `true` of a bool field), or a
/// percentile `pN` (`p50`, `p95`, `p99`, `p99.9`, …).
///
/// Percentiles are exact, by the nearest-rank method: `pN` is the smallest value such that at least
/// N% of the values are less than or equal to it.
public struct StatsAggregate: Hashable, Sendable, CustomStringConvertible {
    /// The name in the API, e.g. `p95`.
    public let name: String
    /// For a percentile, N (0 < N ≤ 100).
    public let percentile: Double?

    public static let count = StatsAggregate(name: "count", percentile: nil)
    public static let sum = StatsAggregate(name: "sum", percentile: nil)
    public static let avg = StatsAggregate(name: "avg", percentile: nil)
    public static let min = StatsAggregate(name: "min", percentile: nil)
    public static let max = StatsAggregate(name: "max", percentile: nil)
    public static let rate = StatsAggregate(name: "rate", percentile: nil)
    public static let last = StatsAggregate(name: "last", percentile: nil)
    public static let p50 = StatsAggregate(name: "p50", percentile: 50)
    public static let p95 = StatsAggregate(name: "p95", percentile: 95)
    public static let p99 = StatsAggregate(name: "p99", percentile: 99)

    private init(name: String, percentile: Double?) {
        self.name = name
        self.percentile = percentile
    }

    /// The aggregate named `name`, or `nil` when there is none.
    public init?(name: String) {
        if let plain = [Self.count, .sum, .avg, .min, .max, .rate, .last].first(where: { $0.name == name }) {
            self = plain
            return
        }
        guard name.hasPrefix("p"), let n = Double(name.dropFirst()), n > 0, n <= 100,
            name.dropFirst().allSatisfy({ $0.isNumber || $0 == "." })
        else { return nil }
        self.init(name: name, percentile: n)
    }

    /// Whether the aggregate reads a numeric field.
    public var isNumeric: Bool { self != .count && self != .rate }

    public var description: String { name }
}

/// One group of a stats answer.
public struct StatsGroup: Sendable {
    /// The group's value of each `group_by` field, in the query's order.
    public var key: [(String, JSONValue)]
    /// The start of the group's time bucket, UTC microseconds, when the query has an interval.
    public var bucketMicros: Int64?
    /// How many rows (events or operations) the group holds.
    public var count: Int
    /// Every aggregate asked for, in the query's order (`count` included); `nil` when the group has
    /// no value of the field.
    public var values: [(StatsAggregate, Double?)]

    public init(key: [(String, JSONValue)], bucketMicros: Int64?, count: Int, values: [(StatsAggregate, Double?)]) {
        self.key = key
        self.bucketMicros = bucketMicros
        self.count = count
        self.values = values
    }

    /// The group as the API's JSON object.
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [("key", .object(key))]
        if let bucketMicros { members.append(("bucket", .string(ISO8601Timestamp.string(fromMicroseconds: bucketMicros)))) }
        members.append(("count", .integer(Int64(count))))
        for (aggregate, value) in values where aggregate != .count {
            members.append((aggregate.name, value.map { .number($0) } ?? .null))
        }
        return .object(members)
    }
}
