import Foundation
import GRDB
import Logging
import TelemetryCatalog
@testable import TelemetryStore
import Testing

/// The SQLite store's dedupe index in two levels (recent ids in memory, older ones merged into a
/// table a slice at a time): a small memory bound makes every transaction merge, so that each
/// path is taken many times.
@Suite struct EventIDIndexTests {
    static func open(_ path: String, recentIDs: Int = 16, maxBytes: Int64? = nil) throws -> SQLiteStore {
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = .normal
        configuration.recentIDs = recentIDs
        configuration.pairsOperations = false
        configuration.maxBytes = maxBytes
        var logger = Logger(label: "test.ids")
        logger.logLevel = .critical
        return try SQLiteStore(configuration: configuration, logger: logger)
    }

    static func batch(_ events: some Sequence<JSONValue>) throws -> WriteBatch {
        WriteBatch(events: try StoreConformanceTests.incoming(Array(events)))
    }

    static func sample(_ count: Int, seed: UInt64) -> [JSONValue] {
        StoreConformanceTests.sample(count, seed: seed)
    }

    @Test func dedupeHoldsAcrossMergesAndReopening() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let events = Self.sample(1000, seed: 41)
        do {
            let store = try Self.open(path)
            defer { try? store.close() }
            for start in stride(from: 0, to: 1000, by: 50) {
                // 50 new events, the first 5 of them twice, and 5 of the oldest again (merged long ago).
                let fresh = events[start..<start + 50]
                let old = start == 0 ? [] : events[0..<5]
                let outcome = try await store.write(try Self.batch(fresh + fresh.prefix(5) + old))
                #expect(outcome.stored == 50, "batch at \(start)")
                #expect(outcome.duplicates == 5 + old.count, "batch at \(start)")
            }
            let sizes = try await store.idIndexSizes()
            #expect(sizes.merged >= 900, "most ids were merged into the table: \(sizes)")
            #expect(sizes.inMemory + sizes.merged == 1000, "each id once, in memory or in the table: \(sizes)")
            // Found by id wherever the id is, through the lookup and the event_id filter.
            for incoming in try Self.batch(events.prefix(10) + events.suffix(10)).events {
                let found = try await store.event(id: incoming.event.eventID, tenant: nil)
                #expect(found?.json == incoming.event.jsonString)
                var query = EventQuery()
                query.fields = [FieldFilter(field: "event_id", value: incoming.event.eventID.description)]
                #expect(try await store.events(query).events.map(\.json) == [incoming.event.jsonString])
            }
        }
        // Reopened: the ids above each slice's mark are read back from the events table.
        let store = try Self.open(path)
        defer { try? store.close() }
        let sizes = try await store.idIndexSizes()
        #expect(sizes.inMemory + sizes.merged == 1000, "\(sizes)")
        // Every stored event is taken in: a lookup of an unknown id does not go looking for another
        // process's events.
        #expect(store.idIndex.recentSequence(of: UUIDValue(high: 0, low: 0)).known == (try await store.latestSequence()))
        // The filter over the table is built on a thread of its own; from then on it answers first.
        let deadline = ContinuousClock.now + .seconds(20)
        while !store.idIndex.filterIsBuilt && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(store.idIndex.filterIsBuilt)
        // 200 new events merge what memory held at the start into the table: those ids are in the
        // filter only through what it took in while it was being built.
        let more = try await store.write(try Self.batch(Self.sample(1200, seed: 41).suffix(200)))  // the same 1000, then these
        #expect(more.stored == 200)
        let again = try await store.write(try Self.batch(events))
        #expect(again.duplicates == 1000)
        #expect(again.stored == 0)
        #expect(try await store.counts().events == 1200)
        #expect(try await store.integrityCheck() == "ok")
    }

    /// Time-ordered ids (UUIDv7, the SDK's) go to the end of the table at once, and the slices'
    /// marks still move up, so that a reopened store reads back only the newest events.
    @Test func timeOrderedIDsAreAppendedAndTheMarksMoveOn() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        var generator = SystemRandomNumberGenerator()
        let events = Self.sample(1000, seed: 47).enumerated().map { i, event in
            var event = event
            let millis = UInt64(1_795_000_000_000 + i)
            let id = UUIDValue(
                high: millis << 16 | 0x7000 | (generator.next() & 0x0FFF),
                low: 0x8000_0000_0000_0000 | (generator.next() & 0x3FFF_FFFF_FFFF_FFFF))
            event["event_id"] = .string(id.description)
            return event
        }
        do {
            let store = try Self.open(path)
            defer { try? store.close() }
            for start in stride(from: 0, to: 1000, by: 50) {
                #expect(try await store.write(try Self.batch(events[start..<start + 50])).stored == 50)
            }
            let sizes = try await store.idIndexSizes()
            #expect(sizes.inMemory == 0 && sizes.merged == 1000, "\(sizes)")
        }
        let store = try Self.open(path)
        defer { try? store.close() }
        let sizes = try await store.idIndexSizes()
        #expect(sizes.inMemory <= 16 + 50, "read back at open: \(sizes)")
        let again = try await store.write(try Self.batch(events))
        #expect(again.duplicates == 1000)
    }

    /// `consume` beside a collector: two stores on the same files each see what the other wrote.
    @Test func twoStoresOnTheSameFilesSeeEachOthersIDs() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let a = try Self.open(path)
        defer { try? a.close() }
        let b = try Self.open(path)
        defer { try? b.close() }
        let events = Self.sample(300, seed: 43)
        for start in stride(from: 0, to: 200, by: 50) {
            #expect(try await a.write(try Self.batch(events[start..<start + 50])).stored == 50)
        }
        // b finds a's events by id before it writes anything, the newest among them in a's memory only.
        #expect(try await a.idIndexSizes().inMemory > 0)
        for incoming in try Self.batch(events[0..<200]).events {
            #expect(try await b.event(id: incoming.event.eventID, tenant: nil)?.json == incoming.event.jsonString)
        }
        let fromB = try await b.write(try Self.batch(events[150..<300]))
        #expect(fromB.duplicates == 50)
        #expect(fromB.stored == 100)
        let fromA = try await a.write(try Self.batch(events))
        #expect(fromA.duplicates == 300)
        #expect(try await a.counts().events == 300)
    }

    /// An id whose event retention deleted is stored again when sent again, merged or not.
    @Test func retentionFreesTheIDsOfWhatItDeletes() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let store = try Self.open(path)
        defer { try? store.close() }
        let base = StoreConformanceTests.base
        let day = StoreConformanceTests.day
        let old = StoreConformanceTests.sample(100, seed: 44, startMicros: base)
        let recent = StoreConformanceTests.sample(30, seed: 45, startMicros: base + 40 * day)
        for start in stride(from: 0, to: 100, by: 20) { _ = try await store.write(try Self.batch(old[start..<start + 20])) }
        _ = try await store.write(try Self.batch(recent))
        var deleted = 0
        while case let n = try await store.deleteEvents(before: base + 30 * day, limit: 40), n > 0 { deleted += n }
        #expect(deleted == 100)
        let sizes = try await store.idIndexSizes()
        #expect(sizes.inMemory + sizes.merged == 30, "\(sizes)")
        let outcome = try await store.write(try Self.batch(old + recent))
        #expect(outcome.stored == 100)
        #expect(outcome.duplicates == 30)
    }

    /// A transaction that failed (the store full) leaves none of its ids behind: the same events sent
    /// again once there is room are stored, not taken for duplicates.
    @Test func aFailedTransactionLeavesNoIDBehind() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let store = try Self.open(path, maxBytes: 512 << 10)
        defer { try? store.close() }
        var acknowledged = 0
        var failed: [JSONValue] = []
        for round in 0..<400 {
            let events = Self.sample(50, seed: 1000 + UInt64(round))
            do {
                acknowledged += try await store.write(try Self.batch(events)).stored
            } catch let error as StoreError {
                #expect(error.code == .full)
                failed = events
                break
            }
        }
        try #require(!failed.isEmpty, "the store never filled")
        #expect(try await store.counts().events == acknowledged)
        try store.setMaxBytes(64 << 20)
        let retried = try await store.write(try Self.batch(failed))
        #expect(retried.stored == 50)
        #expect(retried.duplicates == 0)
        #expect(try await store.integrityCheck() == "ok")
    }

    /// A transaction that failed after the index took in its ids (its commit failed) leaves none of
    /// them behind, once the writer has said so (what SQLiteStore.write does on any error).
    @Test func aTransactionRolledBackAfterRecordLeavesNoIDBehind() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        try Self.open(path).close()  // the schema
        let index = EventIDIndex(memoryBound: 4)
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        var generator = SystemRandomNumberGenerator()
        let ids = (0..<10).map { _ in UUIDValue(high: generator.next(), low: generator.next()) }.sorted()
        @Sendable func insert(_ ids: [UUIDValue], _ db: Database) throws -> [(id: UUIDValue, sequence: Int64)] {
            try ids.map { id in
                try db.execute(
                    sql: """
                        INSERT INTO events (event_id, _received_us, _request_id, _json, event_type, version, tenant_id, "timestamp")
                        VALUES (?, 0, x'00', '{}', 'xumi.generation.start', '1.0', x'00', 0)
                        """, arguments: [id.withBytes { Data($0) }])
                return (id, db.lastInsertedRowID)
            }
        }
        struct FailedCommit: Error {}
        await #expect(throws: FailedCommit.self) {
            try await queue.write { db in
                try index.prepare(db)
                try index.record(try insert(ids, db), db)  // merges: 10 ids over a bound of 4
                throw FailedCommit()
            }
        }
        index.invalidate()
        try await queue.write { db in
            try index.prepare(db)
            let probe = try db.cachedStatement(sql: "SELECT 1 FROM event_ids WHERE event_id = ?").sqliteStatement
            for id in ids {
                #expect(try !index.isStored(id, probe), "an id of the rolled-back transaction is taken for stored")
            }
            // The same ids stored for real are duplicates from then on.
            try index.record(try insert(ids, db), db)
        }
        index.committed()
        try await queue.read { db in
            let probe = try db.cachedStatement(sql: "SELECT 1 FROM event_ids WHERE event_id = ?").sqliteStatement
            #expect(try ids.allSatisfy { try index.isStored($0, probe) })
        }
        #expect(index.recentCount <= 4 + 10)
    }

    /// A store of before the two levels (a unique index on events.event_id) moves its ids into the
    /// table when opened, and they stay duplicates.
    @Test func migrationMovesTheIDsOfAnOlderStore() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let events = Self.sample(200, seed: 46)
        do {
            let store = try Self.open(path)
            defer { try? store.close() }
            _ = try await store.write(try Self.batch(events))
        }
        // Back to the layout of migration v6.
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "DROP TABLE event_ids")
            try db.execute(sql: "DROP TABLE event_id_slices")
            try db.execute(sql: "CREATE UNIQUE INDEX events_by_id ON events(event_id)")
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier LIKE 'v7%'")
        }
        try queue.close()
        let store = try Self.open(path)
        defer { try? store.close() }
        #expect(try await store.idIndexSizes().merged == 200)
        let outcome = try await store.write(try Self.batch(Self.sample(210, seed: 46)))
        #expect(outcome.duplicates == 200)
        #expect(outcome.stored == 10)
        let indexes = try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index'") }
        #expect(!indexes.contains("events_by_id"))
    }

    @Test func theFilterHasNoFalseNegativesAndFewFalsePositives() {
        var filter = BloomFilters()
        var generator = SystemRandomNumberGenerator()
        // More than one filter's capacity, so that it grows; v7-like ids share their high bits.
        let added = (0..<1_500_000).map { i in UUIDValue(high: i % 2 == 0 ? generator.next() : 0x0190_0000_0000_7000 | UInt64(i), low: generator.next()) }
        for id in added { filter.add(id) }
        #expect(added.allSatisfy { filter.mayContain($0) })
        let others = (0..<100_000).map { _ in UUIDValue(high: generator.next(), low: generator.next()) }
        let falsePositives = others.count { filter.mayContain($0) }
        #expect(falsePositives < 3_000, "false positives: \(falsePositives) of 100,000")
    }
}
