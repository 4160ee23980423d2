import CSQLiteTuning
import Foundation
import GRDB
import GRDBSQLite
public import Logging
public import TelemetryCatalog

/// How hard a commit works to survive a crash.
public struct Durability: Hashable, Sendable, CustomStringConvertible {
    let pragma: String
    /// The option's name on the command line.
    public let name: String

    /// Every commit is fsynced before it is acknowledged: survives power loss. The default.
    public static let full = Durability(pragma: "FULL", name: "full")
    /// Commits reach the OS before they are acknowledged and are fsynced at checkpoints: survives a
    /// crash of the collector (`kill -9`), may lose the last commits on power loss.
    public static let normal = Durability(pragma: "NORMAL", name: "normal")

    /// All options.
    public static let all: [Durability] = [.full, .normal]

    /// The option named `name`.
    public init?(name: String) {
        guard let found = Self.all.first(where: { $0.name == name }) else { return nil }
        self = found
    }

    private init(pragma: String, name: String) {
        self.pragma = pragma
        self.name = name
    }

    public var description: String { name }
}

/// Configuration of the embedded store.
public struct SQLiteStoreConfiguration: Sendable {
    /// The database file; its folder is created when missing.
    public var path: String
    /// When commits are durable; see ``Durability``.
    public var durability: Durability = .full
    /// Page cache of the writer connection, MiB: the hot pages of the indexes and of the dedupe
    /// index's table stay in it. The pairer's connection to the operations file gets half.
    /// Pages that fall out of it are still in the kernel's page cache, a `pread` away: with a
    /// million events stored, the writer alone was as fast with 16 MiB as with 64 (`bench store
    /// --preload 1000000 --cache-mib`), and each MiB here is a MiB of the collector's RSS.
    public var cacheMiB: Int = 16
    /// Page cache of each reader connection (queries, streams, the dashboard), MiB. Readers are
    /// many (GRDB opens up to five) and their pages are in the kernel's page cache too.
    public var readerCacheMiB: Int = 8
    /// The most the database file may grow to, bytes; `nil` for no limit beyond the disk's.
    public var maxBytes: Int64? = nil
    /// Pair start and completion events into operations as they are stored (see
    /// ``LifecycleDefinition``). Off only to measure what pairing costs.
    public var pairsOperations = true
    /// Overrides of the catalog's stuck timeouts by operation kind, seconds; 0 means never stuck.
    public var stuckAfterSeconds: [String: Int] = [:]
    /// The most rows of one event type and time range read once into memory for the statistics
    /// asked of them together (a dashboard's charts); 0 reads the table for each query.
    public var statsScanRows = 100_000
    /// How long a scan nobody asked of is kept (see ``statsScanRows``).
    public var statsScanKeep: Duration = .seconds(10)
    /// Copy the write-ahead log back into the database on a thread of its own (see
    /// ``Checkpointer``) rather than on the writer's; off only to measure what it gains.
    public var checkpointsInBackground = true
    /// Pages of write-ahead log after which a commit checkpoints it on the writer's connection
    /// (SQLite's `wal_autocheckpoint`); with ``checkpointsInBackground`` that copies only what the
    /// checkpoint thread has not yet, and lets the log start again from its beginning.
    public var walCheckpointPages = 4096
    /// Newest event ids held in memory by the dedupe index (see ``EventIDIndex``) before they are
    /// merged into its table; ~60 bytes each. Tests make it small to merge often.
    public var recentIDs = 65_536

    /// Creates a configuration for the database at `path`.
    public init(path: String) {
        self.path = path
    }
}

/// The embedded store: one SQLite file in WAL mode, one writer, many readers (GRDB's `DatabasePool`).
///
/// Events are rows with the catalog's fields as typed columns (added as the catalog grows),
/// the normalised JSON, the received time and the request id. `event_id` is a 16-byte blob; the
/// dedupe is ``EventIDIndex`` (recent ids in memory, older ones in `event_ids`), and a batch is
/// inserted in `event_id` order, so that a repeat within it follows its first copy.
///
/// Rows are kept narrow, since every byte is written to the WAL and again at checkpoint: UUIDs are
/// 16-byte blobs (a string that is no UUID, such as a workflow's `user_id`, stays text), and
/// object-valued fields (`metadata`, `tags`, `user`, `resource`) live only in the JSON, which in
/// turn leaves out what the typed columns hold (``StoredForm``).
public final class SQLiteStore: EventStore {
    let pool: DatabasePool
    /// The operations file (`…-operations.sqlite`, the events file attached as `stored`): written
    /// by the pairer alone; read through `pool`, whose connections attach it as `ops`.
    let operationsDatabase: DatabaseQueue
    /// Pairs events into operations after they commit; `nil` with pairing off.
    let pairer: OperationPairer?
    /// Copies the log into the database beside the writer; `nil` when it is off.
    let checkpointer: Checkpointer?
    /// Rows of event types read once for the statistics asked together.
    let statsScans: StatsScans
    let layout: ColumnLayout
    /// How `_json` keeps an event without the members its columns hold (see ``StoredForm``).
    let storedForm: StoredForm
    let operationLayout: OperationLayout
    let catalog: Catalog
    let logger: Logger
    public let configuration: SQLiteStoreConfiguration
    /// The dedupe index of `event_id`: recent ids in memory, older ones in `event_ids`.
    let idIndex: EventIDIndex

    /// Sets SQLite up for this process: memory statistics off, so that SQLite's allocations do
    /// not all take one process-wide mutex (the pairing thread spent ~13% of its time on it, in
    /// contention with the events writer). Call it before anything in the process opens SQLite;
    /// later calls, and calls after that, change nothing. ``init(configuration:catalog:logger:)``
    /// calls it too.
    public static func configureProcess() {
        _ = processConfigured
    }
    private static let processConfigured: Int32 = telemetry_sqlite_disable_memory_statistics()

    /// Opens (creating and migrating when needed) the store at `configuration.path`.
    ///
    /// - Throws: ``StoreError`` when the file cannot be opened or migrated.
    public init(configuration: SQLiteStoreConfiguration, catalog: Catalog = .builtin, logger: Logger) throws {
        Self.configureProcess()
        self.configuration = configuration
        self.catalog = catalog
        self.logger = logger
        self.layout = ColumnLayout(catalog: catalog)
        self.operationLayout = OperationLayout(catalog: catalog)
        self.idIndex = EventIDIndex(memoryBound: configuration.recentIDs)
        self.statsScans = StatsScans(maxRows: configuration.statsScanRows, keep: configuration.statsScanKeep)
        let directory = (configuration.path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var config = Configuration()
        config.busyMode = .timeout(10)
        let durability = configuration.durability
        let cacheKiB = configuration.cacheMiB * 1024
        let readerCacheKiB = configuration.readerCacheMiB * 1024
        let walCheckpointPages = max(1, configuration.walCheckpointPages)
        config.prepareDatabase { db in
            // 8 KiB pages: a row (~0.6 KiB) and its index entries split pages less often; measured
            // ~10% more ingest than 4 KiB. Only takes effect when the file is created.
            try db.execute(sql: "PRAGMA page_size = 8192")
            try db.execute(sql: "PRAGMA synchronous = \(durability.pragma)")
            try db.execute(sql: "PRAGMA cache_size = -\(db.configuration.readonly ? readerCacheKiB : cacheKiB)")
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            // Checkpoint every 32 MiB of WAL (4096 pages of 8 KiB) rather than SQLite's 1000 pages:
            // index pages changed by many transactions are copied once instead of once per
            // checkpoint (ingest measured ~1.3x faster), while a checkpoint pause stays well
            // within the p99 goal. With the ``Checkpointer`` (the default) this checkpoint copies
            // only what the checkpoint thread has not, and restarts the log.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(walCheckpointPages)")
        }
        let operationsPath = Self.operationsPath(configuration.path)
        config.prepareDatabase { db in
            // Readers only: a write transaction of the events writer (BEGIN IMMEDIATE) would lock
            // every attached file, the pairer's among them.
            if db.configuration.readonly {
                try db.execute(sql: "ATTACH DATABASE ? AS ops", arguments: [operationsPath])
            }
        }
        var operationsConfig = Configuration()
        operationsConfig.busyMode = .timeout(10)
        operationsConfig.prepareDatabase { db in
            try db.execute(sql: "PRAGMA page_size = 8192")
            // Operations are derived from the events: a commit lost to a power cut is redone from
            // the events above the watermark, so this file needs no fsync per commit.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA cache_size = -\(cacheKiB / 2)")
            // As for events: checkpoint every 32 MiB of WAL, so that the index pages many pairing
            // transactions change are copied back once (pairing measured ~12% less CPU an event).
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 4096")
        }
        do {
            // The operations file first: the events pool's connections attach it.
            operationsDatabase = try DatabaseQueue(path: operationsPath, configuration: operationsConfig)
            try Self.migrateOperations(operationsDatabase, operationLayout)
            pool = try DatabasePool(path: configuration.path, configuration: config)
            try Self.migrate(pool, layout)
            let columns = try pool.read { db in
                try Row.fetchAll(db, sql: "PRAGMA main.table_info(events)").map { (name: $0["name"] as String, type: $0["type"] as String) }
            }
            storedForm = StoredForm(catalog: catalog, columns: columns)
            // The ids above each slice's mark back into memory, and the filter over the table.
            let idIndex = self.idIndex
            try pool.write { db in try idIndex.prepare(db) }
            idIndex.startBuildingFilter(pool, logger: logger)
            let path = configuration.path
            try operationsDatabase.writeWithoutTransaction { db in
                try db.execute(sql: "ATTACH DATABASE ? AS stored", arguments: [path])
            }
            if let maxBytes = configuration.maxBytes { try Self.setMaxBytes(maxBytes, pool, operationsDatabase) }
            if configuration.pairsOperations {
                let committed = try pool.read { db in try Self.newestSequence(db) }
                let pairer = try OperationPairer(
                    database: operationsDatabase, layout: operationLayout, catalog: catalog, storedForm: storedForm,
                    committed: committed, logger: logger)
                pairer.start()
                self.pairer = pairer
            } else {
                pairer = nil
            }
            if configuration.checkpointsInBackground {
                let checkpointer = Checkpointer(path: path, synchronous: durability.pragma, logger: logger)
                do {
                    try checkpointer.start()
                } catch {
                    pairer?.stop()
                    throw error
                }
                self.checkpointer = checkpointer
            } else {
                checkpointer = nil
            }
        } catch {
            throw StoreError(.unavailable, "cannot open the store at \(configuration.path): \(error)", cause: error)
        }
    }

    deinit {
        idIndex.stopBuildingFilter()
        pairer?.stop()
        checkpointer?.stop()
    }

    /// The largest sequence number given so far: the newest event's, or what retention deleted.
    static func newestSequence(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(
            db, sql: "SELECT max(COALESCE((SELECT max(_seq) FROM events), 0), (SELECT seq FROM sequence_floor))") ?? 0
    }

    /// The operations file of the store at `path`: `telemetry.sqlite` → `telemetry-operations.sqlite`.
    public static func operationsPath(_ path: String) -> String {
        (path.hasSuffix(".sqlite") ? String(path.dropLast(7)) : path) + "-operations.sqlite"
    }

    /// Waits (up to `timeout`) until every event committed before the call, by this process or
    /// another on the same files, has been paired, so that a read of operations sees what was
    /// acknowledged before it.
    func waitForPairing(timeout: Duration = .seconds(5)) async {
        guard let pairer, let target = try? await pool.read({ try Self.newestSequence($0) }) else { return }
        await pairer.waitUntilPaired(through: target, timeout: timeout) {
            try? await pool.read { try Int64.fetchOne($0, sql: "SELECT through FROM ops.pairing_state") ?? 0 }
        }
    }

    /// Ids the dedupe index holds in memory, and in its table (see ``EventIDIndex``).
    package func idIndexSizes() async throws -> (inMemory: Int, merged: Int) {
        let merged = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM event_ids") ?? 0 }
        return (idIndex.recentCount, merged)
    }

    /// Event ids the dedupe index holds in memory (see ``EventIDIndex``).
    public var dedupeRecentIDs: Int { idIndex.recentCount }

    /// Events stored but not yet paired into operations (by sequence); 0 with pairing off.
    public var pairingLag: Int64 { pairer?.lag ?? 0 }

    /// Queries the pairer's starts made for a completion that came first (see ``WaitingCompletions``).
    var pairingStartQueries: Int { pairer?.startQueriesMade ?? 0 }

    /// Caps the events file, and the operations file, each at about `bytes` (SQLite's
    /// `max_page_count`); writes beyond it fail with ``StoreError/Code/full`` and store nothing.
    public func setMaxBytes(_ bytes: Int64) throws {
        try Self.setMaxBytes(bytes, pool, operationsDatabase)
    }

    private static func setMaxBytes(_ bytes: Int64, _ pool: DatabasePool, _ operationsDatabase: DatabaseQueue) throws {
        for file in [pool, operationsDatabase] as [any DatabaseWriter] {
            try file.writeWithoutTransaction { db in
                let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
                _ = try Int64.fetchOne(db, sql: "PRAGMA max_page_count = \(max(1, bytes / pageSize))")
            }
        }
    }

    /// The size of the events and operations files in bytes (pages in use × page size).
    public func sizeBytes() async throws -> Int64 {
        try await pool.read { db in
            try ["main", "ops"].reduce(0) { total, schema in
                let pages = try Int64.fetchOne(db, sql: "PRAGMA \(schema).page_count") ?? 0
                let size = try Int64.fetchOne(db, sql: "PRAGMA \(schema).page_size") ?? 0
                return total + pages * size
            }
        }
    }

    /// Frames of the events file's log copied into it by the checkpoint thread, and its checkpoints.
    package var backgroundCheckpoints: (framesCopied: Int64, checkpoints: Int) {
        checkpointer?.statistics ?? (0, 0)
    }

    /// Runs SQLite's `PRAGMA integrity_check` on both files; returns `ok` when both are sound, else
    /// their answers.
    public func integrityCheck() async throws -> String {
        try await pool.read { db in
            let answers = try ["main", "ops"].map { schema in
                try String.fetchAll(db, sql: "PRAGMA \(schema).integrity_check").joined(separator: "; ")
            }
            return answers.allSatisfy { $0 == "ok" } ? "ok" : answers.joined(separator: "; ")
        }
    }

    /// Closes the database; the store must not be used afterwards.
    public func close() throws {
        idIndex.stopBuildingFilter()
        pairer?.stop()
        checkpointer?.stop()
        try pool.close()
        try operationsDatabase.close()
    }

    // MARK: schema

    private static func migrate(_ pool: DatabasePool, _ layout: ColumnLayout) throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: events and rejected") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        _seq INTEGER PRIMARY KEY,
                        event_id BLOB NOT NULL,
                        _received_us INTEGER NOT NULL,
                        _request_id BLOB NOT NULL,
                        _json TEXT NOT NULL,
                        _unknown TEXT,
                        event_type TEXT NOT NULL,
                        version TEXT NOT NULL,
                        tenant_id BLOB NOT NULL,
                        source TEXT,
                        "timestamp" INTEGER NOT NULL
                    );
                    CREATE UNIQUE INDEX events_by_id ON events(event_id);
                    CREATE INDEX events_by_tenant_type ON events(tenant_id, event_type, _seq);
                    CREATE INDEX events_by_type_time ON events(event_type, "timestamp");
                    CREATE TABLE rejected (
                        _seq INTEGER PRIMARY KEY,
                        _received_us INTEGER NOT NULL,
                        _request_id TEXT NOT NULL,
                        _index INTEGER NOT NULL,
                        tenant_id TEXT,
                        event_type TEXT,
                        event_id TEXT,
                        codes TEXT NOT NULL,
                        errors TEXT NOT NULL,
                        raw BLOB NOT NULL
                    );
                    CREATE INDEX rejected_by_tenant ON rejected(tenant_id, _seq);
                    """)
        }
        migrator.registerMigration("v2: operations") { _ in
            // Operations were a table of this file; they now live in a file of their own (v3).
        }
        migrator.registerMigration("v3: operations in their own file") { db in
            // The pairer pairs every event again from the start (its watermark is 0 in a new
            // operations file), so dropping the old table loses nothing.
            try db.execute(sql: "DROP TABLE IF EXISTS main.operations")
        }
        migrator.registerMigration("v4: sequence floor") { db in
            // SQLite gives a new row the largest rowid + 1, so when retention deletes the newest
            // events their sequence numbers would be given again, behind stream cursors and the
            // pairing watermark. Retention records the largest it deleted here; the next insert
            // continues above it.
            try db.execute(sql: "CREATE TABLE sequence_floor (seq INTEGER NOT NULL)")
            try db.execute(sql: "INSERT INTO sequence_floor (seq) VALUES (COALESCE((SELECT max(_seq) FROM events), 0))")
        }
        migrator.registerMigration("v5: tenant index by sequence") { db in
            // (tenant_id, event_type, _seq) had an insertion point for every tenant and type, so
            // each transaction dirtied a leaf page for each (ingest measured 54k events/s with it,
            // 73k without). (tenant_id, _seq, event_type) has one per tenant, and still answers "the
            // newest of a tenant and type" from the index alone (the type is read from the entry).
            try db.execute(sql: "DROP INDEX IF EXISTS events_by_tenant_type")
            try db.execute(sql: "CREATE INDEX events_by_tenant ON events(tenant_id, _seq, event_type)")
        }
        migrator.registerMigration("v6: deletions count") { db in
            // Retention counts what it deletes: statistics held in memory (StatsScans) are read
            // again after a deletion, and take in new events otherwise.
            try db.execute(sql: "ALTER TABLE sequence_floor ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v7: event ids in two levels") { db in
            // The unique index on events(event_id) changed a random page an event once the store
            // held ~a million events (writes fell from ~83k to ~50k events/s). Ids now live in memory
            // first and are merged into this table a slice of the key space at a time
            // (EventIDIndex). Every id stored so far goes in now, each slice marked through the
            // newest sequence; rebuilding it takes about as long as the v5 index did.
            try db.execute(sql: "CREATE TABLE event_ids (event_id BLOB PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID")
            try db.execute(sql: "INSERT INTO event_ids (event_id, seq) SELECT event_id, _seq FROM events ORDER BY event_id")
            try db.execute(sql: "DROP INDEX events_by_id")
            try db.execute(sql: "CREATE TABLE event_id_slices (slice INTEGER PRIMARY KEY, through INTEGER NOT NULL)")
            let newest = try Self.newestSequence(db)
            for slice in 0..<EventIDIndex.sliceCount {
                try db.execute(sql: "INSERT INTO event_id_slices (slice, through) VALUES (?, ?)", arguments: [slice, newest])
            }
        }
        try migrator.migrate(pool)
        // Catalog fields become typed columns; a field added to the catalog is a column added here.
        // The same for the lifecycles' attributes and spans on operations.
        try pool.write { db in
            try addMissingColumns(to: "events", layout.columns.map { ($0.name, $0.sqlType) }, db)
        }
    }

    /// Adds to `table` each of `columns` it does not have yet (the catalog grew).
    private static func addMissingColumns(to table: String, _ columns: [(name: String, sqlType: String)], _ db: Database) throws {
        let existing = Set(try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String })
        for column in columns where !existing.contains(column.name) {
            try db.execute(sql: "ALTER TABLE \(table) ADD COLUMN \"\(column.name)\" \(column.sqlType)")
        }
    }

    /// Creates or migrates the operations file: the operations table, its indexes, the pairing
    /// watermark, and a column for each lifecycle attribute and span of the catalog.
    private static func migrateOperations(_ database: DatabaseQueue, _ operationLayout: OperationLayout) throws {
        try database.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: operations") { db in
            // One row an operation; whichever half arrives first inserts it. key1/key2 hold the
            // values of the lifecycle's pairing keys (the start's, or the completion's while the
            // start is missing); _at_us is when it started, or completed while the start is missing.
            // Halves are matched through partial indexes that hold only the operations still waiting
            // for a half: they stay small, so pairing dirties a few hot pages per transaction
            // instead of a random page of an ever-growing key index (keys are random UUIDs).
            try db.execute(
                sql: """
                    CREATE TABLE operations (
                        _seq INTEGER PRIMARY KEY,
                        kind TEXT NOT NULL,
                        tenant_id BLOB NOT NULL,
                        key1,
                        key2,
                        status TEXT NOT NULL,
                        started_us INTEGER,
                        completed_us INTEGER,
                        _at_us INTEGER NOT NULL,
                        duration_ms REAL,
                        start_event_id BLOB,
                        complete_event_id BLOB,
                        start_seq INTEGER,
                        complete_seq INTEGER
                    );
                    CREATE INDEX operations_awaiting_completion_1 ON operations(kind, tenant_id, key1) WHERE complete_seq IS NULL;
                    CREATE INDEX operations_awaiting_completion_2 ON operations(kind, tenant_id, key2)
                        WHERE complete_seq IS NULL AND key2 IS NOT NULL;
                    CREATE INDEX operations_awaiting_start_1 ON operations(kind, tenant_id, key1) WHERE start_seq IS NULL;
                    CREATE INDEX operations_awaiting_start_2 ON operations(kind, tenant_id, key2)
                        WHERE start_seq IS NULL AND key2 IS NOT NULL;
                    CREATE INDEX operations_by_time ON operations(kind, _at_us);
                    CREATE INDEX operations_open ON operations(kind, _at_us) WHERE complete_seq IS NULL;
                    """)
            try db.execute(sql: "CREATE TABLE pairing_state (through INTEGER NOT NULL)")
            try db.execute(sql: "INSERT INTO pairing_state (through) VALUES (0)")
        }
        try migrator.migrate(database)
        try database.write { db in
            let columns = operationLayout.columns.map { ($0.name, $0.sqlType) } + operationLayout.instantColumns.map { ($0, "INTEGER") }
            try addMissingColumns(to: "operations", columns, db)
        }
    }

    func mapError(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? DatabaseError {
            if error.resultCode == .SQLITE_FULL {
                return StoreError(.full, "the store is full: \(error.message ?? "SQLITE_FULL")", cause: error)
            }
            return StoreError(.unavailable, "the store failed: \(error.message ?? error.description)", cause: error)
        }
        return StoreError(.unavailable, "the store failed: \(error)", cause: error)
    }
}

/// The typed columns of the events table, derived from the catalog, and for every event
/// definition the insert statement its events go through.
package struct ColumnLayout: Sendable {
    struct Column: Sendable {
        let name: String
        let sqlType: String
        var quoted: String { "\"\(name)\"" }
    }

    /// One event definition's insert: the fixed columns, then only the columns of its own fields,
    /// so that an insert binds and copies ~20 values, not the table's ~60 (the rest are NULL). A
    /// class, so that the writer takes one reference an event rather than four.
    final class Insert: Sendable {
        let sql: String
        /// The same with `_seq` given, as the last parameter (``sequenceParameter``): for the first
        /// event after retention deleted the newest ones, so that no sequence number is given twice.
        let sqlWithSequence: String
        /// For each field slot: the 1-based parameter, or 0 for none (event_id is bound separately
        /// as a blob; objects have no column).
        let parameters: [Int32]
        /// For each parameter, whether its column holds UUIDs (as 16-byte blobs).
        let isUUIDParameter: [Bool]
        let sequenceParameter: Int32

        init(sql: String, sqlWithSequence: String, parameters: [Int32], isUUIDParameter: [Bool], sequenceParameter: Int32) {
            self.sql = sql
            self.sqlWithSequence = sqlWithSequence
            self.parameters = parameters
            self.isUUIDParameter = isUUIDParameter
            self.sequenceParameter = sequenceParameter
        }
    }

    /// Catalog columns in table order (after the fixed ones).
    let columns: [Column]
    /// For each compiled event index, its insert.
    let inserts: [Insert]
    /// The declared type of every catalog field name, for filters.
    let typeByName: [String: FieldType]

    /// `_received_us, _request_id, _json, _unknown, event_id` come first.
    static let fixedParameters: Int32 = 5
    static let fixedNames = ["_received_us", "_request_id", "_json", "_unknown", "event_id"]

    init(catalog: Catalog) {
        var typeByName: [String: FieldType] = [:]
        for field in catalog.envelope + catalog.events.flatMap(\.fields) where typeByName[field.name] == nil {
            typeByName[field.name] = field.type
        }
        self.typeByName = typeByName
        let columns = catalog.fieldNames.filter { $0 != "event_id" && Self.isColumn(typeByName[$0]!) }.map { name in
            Column(name: name, sqlType: Self.sqlType(typeByName[name]!))
        }
        self.columns = columns
        let byName = Dictionary(columns.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.inserts = catalog.compiled.map { compiled in
            var names = Self.fixedNames
            var isUUID = Array(repeating: false, count: Int(Self.fixedParameters) + 1)
            var parameters: [Int32] = []
            for field in compiled.fields {
                guard let column = byName[field.name], !names.contains(column.quoted) else {
                    parameters.append(0)
                    continue
                }
                names.append(column.quoted)
                isUUID.append(typeByName[column.name] == .uuid)
                parameters.append(Int32(names.count))
            }
            func sql(_ names: [String]) -> String {
                "INSERT OR IGNORE INTO events (\(names.joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: names.count).joined(separator: ", ")))"
            }
            return Insert(
                sql: sql(names), sqlWithSequence: sql(names + ["_seq"]), parameters: parameters, isUUIDParameter: isUUID,
                sequenceParameter: Int32(names.count + 1))
        }
    }

    static func sqlType(_ type: FieldType) -> String {
        switch type {
        case .integer, .bool, .timestamp: "INTEGER"
        case .number: "REAL"
        case .uuid: "BLOB"
        default: "TEXT"
        }
    }

    /// Whether a field of this type gets a column; objects are only in the JSON.
    package static func isColumn(_ type: FieldType) -> Bool {
        type != .object && type != .stringMap && type != .jsonObject
    }
}
