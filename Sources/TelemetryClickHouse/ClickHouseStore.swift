import Foundation
public import Logging
import Synchronization
public import TelemetryCatalog
public import TelemetryStore

/// Configuration of a ClickHouse store.
public struct ClickHouseStoreConfiguration: Sendable {
    public var location: ClickHouseLocation
    /// Overrides of the catalog's stuck timeouts by operation kind, seconds; 0 means never stuck.
    public var stuckAfterSeconds: [String: Int] = [:]
    /// How long one statement may take, seconds.
    public var timeoutSeconds = 60
    /// How often a failed insert is sent again (the same bytes) before the write fails.
    public var insertAttempts = 3

    public init(location: ClickHouseLocation) {
        self.location = location
    }
}

/// The store for when one SQLite file is not enough: ClickHouse, over its HTTP interface.
///
/// Tables (created and migrated at start, in the URL's database):
/// - `events`: a `ReplacingMergeTree` partitioned by the day of `timestamp`, ordered by
///   `(event_type, tenant_id, timestamp, event_id)`: every stats and operations query names its
///   event types and time range, and tenant-scoped reads add the tenant. Catalog fields are typed
///   columns (`Nullable` unless the envelope requires them), the normalised JSON is kept whole.
///   Two rows with one `event_id` (two writers racing) collapse at merge; counts and stats read
///   with `FINAL`, so an event counts once in them even before the merge, and a page of events
///   lists an event once (pages read without FINAL, which costs ~6x on ClickHouse 18).
/// - `event_ids`: the dedupe index, ordered by `event_id` with small granules, partitioned like
///   `events`; a batch's ids are looked up in it before the insert. It also holds each event's
///   type, tenant and time, which lead a read by id to its row through the events' sorting key.
/// - `rejected`: rejected events with every reason and the raw bytes.
///
/// Operations are not stored: they are computed from the lifecycle events in ClickHouse SQL
/// when read (grouped by tenant and pairing key), so they pair whatever order the halves
/// arrive in, on however many writers, and are as durable as the events.
///
/// Sequence numbers (for paging and the live stream) come from the writer: a microsecond clock that
/// never goes backwards, shifted left 8 bits, with a random 8-bit writer tag in the low bits, so
/// that writers in several processes do not collide.
public final class ClickHouseStore: EventStore {
    let client: ClickHouseClient
    let catalog: Catalog
    let layout: ClickHouseLayout
    let logger: Logger
    public let configuration: ClickHouseStoreConfiguration
    private let clock: Mutex<Int64>
    /// Rows of `event_ids` whose events are stored but whose own INSERT failed; inserted first
    /// by the next write.
    let pendingIDRows = Mutex<[UInt8]>([])
    private let writerTag = Int64.random(in: 0..<256)

    /// Connects to ClickHouse, creates the database and tables when missing and adds the columns
    /// the catalog has gained.
    ///
    /// - Throws: ``StoreError/Code/unavailable`` when ClickHouse cannot be reached or refuses.
    public init(configuration: ClickHouseStoreConfiguration, catalog: Catalog = .builtin, logger: Logger) async throws {
        self.configuration = configuration
        self.catalog = catalog
        self.logger = logger
        self.layout = ClickHouseLayout(catalog: catalog)
        self.client = ClickHouseClient(location: configuration.location, timeoutSeconds: configuration.timeoutSeconds)
        self.clock = Mutex(0)
        try await migrate()
        let latest = try await latestSequence()
        clock.withLock { $0 = latest >> 8 }
    }

    /// Closes the idle connections.
    public func close() {
        client.close()
    }

    // MARK: schema

    /// Day partitions by the event's time, in UTC whatever the server's zone.
    static let dayOfTimestamp = "toDate(toDateTime(intDiv(timestamp, 1000000), 'UTC'))"

    private func migrate() async throws {
        let database = configuration.location.database
        _ = try await client.execute("CREATE DATABASE IF NOT EXISTS \(database)", database: false)
        let fixed = layout.columns.filter(\.required).map { "\($0.quoted) \($0.clickHouseType)" }.joined(separator: ",\n    ")
        try await run(
            """
            CREATE TABLE IF NOT EXISTS events (
                _seq Int64,
                event_id String,
                _received_us Int64,
                _request_id String,
                _json String,
                _unknown String,
                \(fixed)
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY \(Self.dayOfTimestamp)
            ORDER BY (event_type, tenant_id, timestamp, event_id)
            """)
        try await run(
            """
            CREATE TABLE IF NOT EXISTS event_ids (
                event_id String,
                timestamp Int64,
                _seq Int64,
                event_type String,
                tenant_id String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY \(Self.dayOfTimestamp)
            ORDER BY event_id
            SETTINGS index_granularity = 256
            """)
        try await run(
            """
            CREATE TABLE IF NOT EXISTS rejected (
                _seq Int64,
                _received_us Int64,
                _request_id String,
                _index Int64,
                tenant_id Nullable(String),
                event_type Nullable(String),
                event_id Nullable(String),
                codes String,
                errors String,
                raw String
            ) ENGINE = MergeTree()
            PARTITION BY toDate(toDateTime(intDiv(_received_us, 1000000), 'UTC'))
            ORDER BY _seq
            """)
        // Catalog fields become typed columns; a field added to the catalog is a column added here.
        let existing = Set(
            try await client.rows(
                "SELECT name FROM system.columns WHERE database = \(SQL.quote(database)) AND table = 'events'"
            ).compactMap { $0.first?.string })
        for column in layout.columns where !existing.contains(column.name) {
            try await run("ALTER TABLE events ADD COLUMN \(column.quoted) \(column.clickHouseType)")
        }
        // The id index holds the event's type and tenant too (for reading an event by id through
        // the events' sorting key); an index made before that gets them, empty for its old rows.
        let idColumns = Set(
            try await client.rows(
                "SELECT name FROM system.columns WHERE database = \(SQL.quote(database)) AND table = 'event_ids'"
            ).compactMap { $0.first?.string })
        for name in ["event_type", "tenant_id"] where !idColumns.contains(name) {
            try await run("ALTER TABLE event_ids ADD COLUMN \(name) String")
        }
        // The pairing key's hash, computed by ClickHouse as rows arrive (see ``ClickHouseLayout/pairKeyExpression``);
        // redefined when the catalog's lifecycles change it.
        let pairKey = try await client.rows(
            """
            SELECT default_expression FROM system.columns
            WHERE database = \(SQL.quote(database)) AND table = 'events' AND name = '_pair_key'
            """
        ).first?.first?.string
        if pairKey == nil {
            try await run("ALTER TABLE events ADD COLUMN _pair_key UInt64 MATERIALIZED \(layout.pairKeyExpression)")
        } else if pairKey.map(Self.compact) != Self.compact(layout.pairKeyExpression) {
            try await run("ALTER TABLE events MODIFY COLUMN _pair_key UInt64 MATERIALIZED \(layout.pairKeyExpression)")
        }
    }

    /// `text` without spaces or backquotes, to compare an expression with ClickHouse's rendering of it.
    static func compact(_ text: String) -> String { String(text.filter { $0 != " " && $0 != "`" }) }

    private func run(_ sql: String) async throws {
        _ = try await client.execute(sql)
    }

    /// Sequence numbers for `count` new rows, increasing, never reused by this writer.
    func nextSequences(_ count: Int) -> [Int64] {
        let nowMicros = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let first = clock.withLock { last -> Int64 in
            let first = max(last + 1, nowMicros)
            last = first + Int64(count) - 1
            return first
        }
        return (0..<Int64(count)).map { ((first + $0) << 8) | writerTag }
    }

    public func latestSequence() async throws -> Int64 {
        try await client.rows("SELECT max(_seq) FROM event_ids").first?.first?.int64 ?? 0
    }

    /// Bytes of the store's tables on disk (active parts, compressed).
    public func sizeBytes() async throws -> Int64 {
        try await client.rows(
            """
            SELECT sum(bytes_on_disk) FROM system.parts
            WHERE database = \(SQL.quote(configuration.location.database)) AND active
            """
        ).first?.first?.int64 ?? 0
    }

    /// Stored events and rejections (each event once).
    public func counts() async throws -> (events: Int, rejected: Int) {
        let events = try await client.rows("SELECT count() FROM events FINAL").first?.first?.int64 ?? 0
        let rejected = try await client.rows("SELECT count() FROM rejected").first?.first?.int64 ?? 0
        return (Int(events), Int(rejected))
    }

    /// Events per event type whose timestamp is in `since..<until` (UTC microseconds).
    public func countsByEventType(since: Int64, until: Int64) async throws -> [String: Int] {
        let rows = try await client.rows(
            "SELECT event_type, count() FROM events FINAL WHERE timestamp >= \(since) AND timestamp < \(until) GROUP BY event_type")
        var counts: [String: Int] = [:]
        for row in rows { if let type = row[0].string { counts[type] = Int(row[1].int64 ?? 0) } }
        return counts
    }

    /// Drops the store's database (for tests and benchmarks).
    public func dropDatabase() async throws {
        _ = try await client.execute("DROP DATABASE IF EXISTS \(configuration.location.database)", database: false)
    }
}

/// The typed columns of the events table, derived from the catalog.
struct ClickHouseLayout: Sendable {
    struct Column: Sendable {
        let name: String
        let type: FieldType
        /// Envelope fields every event has: not `Nullable` (they are in the sorting key).
        let required: Bool
        var quoted: String { "`\(name)`" }
        var clickHouseType: String {
            let base: String
            switch type {
            case .integer, .timestamp: base = "Int64"
            case .number: base = "Float64"
            case .bool: base = "UInt8"
            default: base = "String"
            }
            return required ? base : "Nullable(\(base))"
        }
    }

    /// The SQL of column `name` read as `type`: the column itself, or a conversion from text when
    /// the column had to be a String (see ``typeByName``).
    func typed(_ name: String, as type: FieldType) -> String {
        guard name != "event_id" else { return "event_id" }
        let column = "`\(name)`"
        guard typeByName[name] == .string, type != .string else { return column }
        switch type {
        case .integer, .timestamp: return "toInt64OrNull(\(column))"
        case .number: return "toFloat64OrNull(\(column))"
        case .bool: return "toUInt8OrNull(\(column))"
        default: return column
        }
    }

    /// Catalog columns (every catalog field but `event_id` and the object-valued ones).
    let columns: [Column]
    let columnIndex: [String: Int]
    /// For each compiled event index, for each column: the event's field slot, or -1 (NULL).
    let slotOfColumn: [[Int]]
    /// Each column's type as stored.
    let typeByName: [String: FieldType]
    /// The INSERT's column list.
    let insertColumns: String

    static let requiredFields: Set<String> = ["event_type", "version", "tenant_id", "source", "timestamp"]

    /// For each event type that is a half of a lifecycle paired by one key, the field holding that
    /// key (the first such lifecycle's, when an event type plays several roles).
    let pairKeyField: [String: String]
    /// The lifecycles whose halves all carry their key in `_pair_key`.
    let hashedKinds: Set<String>

    /// `_pair_key`: a 64-bit hash of the event's pairing key (0 for other events). Queries over a
    /// time range find the halves that pair with the range's operations by this 8-byte column
    /// instead of the 36-byte key text of every half of the kind (3x less to read at 10 million
    /// events); equal hashes are only candidates, the grouping uses the key itself.
    var pairKeyExpression: String {
        guard !pairKeyField.isEmpty else { return "toUInt64(0)" }
        let cases = pairKeyField.sorted { $0.key < $1.key }.map { type, field in
            let column = field == "event_id" ? "event_id" : "`\(field)`"
            return "event_type = \(SQL.quote(type)), cityHash64(ifNull(toString(\(column)), concat('#', event_id)))"
        }
        return "multiIf(\(cases.joined(separator: ", ")), toUInt64(0))"
    }

    init(catalog: Catalog) {
        // A field name the catalog gives different types (a `speed` that is a number on one event
        // and text on another) gets a String column; queries convert it to the type they read.
        var typeByName: [String: FieldType] = [:]
        for field in catalog.envelope + catalog.events.flatMap(\.fields) {
            if let known = typeByName[field.name], known != field.type {
                typeByName[field.name] = .string
            } else if typeByName[field.name] == nil {
                typeByName[field.name] = field.type
            }
        }
        self.typeByName = typeByName
        let columns = catalog.fieldNames.filter { $0 != "event_id" && ColumnLayout.isColumn(typeByName[$0]!) }.map { name in
            Column(name: name, type: typeByName[name]!, required: Self.requiredFields.contains(name))
        }
        self.columns = columns
        var columnIndex: [String: Int] = [:]
        for (i, column) in columns.enumerated() { columnIndex[column.name] = i }
        self.columnIndex = columnIndex
        let slots = catalog.compiled.map { compiled in compiled.fields.map { columnIndex[$0.name] ?? -1 } }
        self.slotOfColumn = slots.map { slots in
            var inverse = [Int](repeating: -1, count: columns.count)
            for (slot, column) in slots.enumerated() where column >= 0 { inverse[column] = slot }
            return inverse
        }
        var pairKeyField: [String: String] = [:]
        var hashedKinds: Set<String> = []
        for lifecycle in catalog.lifecycles where lifecycle.keys.count == 1 {
            let key = lifecycle.keys[0]
            let sides = [(lifecycle.startEventType, key.startField), (lifecycle.completeEventType, key.completeField)]
            guard sides.allSatisfy({ pairKeyField[$0.0] == nil || pairKeyField[$0.0] == $0.1 }),
                sides.allSatisfy({ $0.1 == "event_id" || columnIndex[$0.1] != nil })
            else { continue }
            for (type, field) in sides { pairKeyField[type] = field }
            hashedKinds.insert(lifecycle.kind)
        }
        self.pairKeyField = pairKeyField
        self.hashedKinds = hashedKinds
        insertColumns = (["_seq", "event_id", "_received_us", "_request_id", "_json", "_unknown"] + columns.map(\.quoted))
            .joined(separator: ", ")
    }
}
