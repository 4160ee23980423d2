import Foundation
import GRDB
import Logging
import TelemetryCatalog
import TelemetryStore
import Testing

/// The embedded store pairs events into operations on a thread of its own, in a file of its own,
/// after the events commit, behind a durable watermark: these tests take the paths that the
/// lifecycle tests (which write and then read) do not.
@Suite struct PairingTests {
    typealias Ops = OperationTests

    static func open(
        _ path: String, pairs: Bool = true, scanRows: Int = 100_000, scanKeep: Duration = .seconds(10), backgroundCheckpoints: Bool = true,
        checkpointPages: Int = 4096
    ) throws -> SQLiteStore {
        var logger = Logger(label: "test.pairing")
        logger.logLevel = .critical
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = .normal
        configuration.pairsOperations = pairs
        configuration.statsScanRows = scanRows
        configuration.statsScanKeep = scanKeep
        configuration.checkpointsInBackground = backgroundCheckpoints
        configuration.walCheckpointPages = checkpointPages
        return try SQLiteStore(configuration: configuration, logger: logger)
    }

    static func newPath() -> String {
        TestScratch.path("pairing-\(UUID().uuidString).sqlite").path
    }

    /// 2 × `count` events: generations whose halves are split over batches, some completions
    /// arriving before their starts; generation i lasts i + 1 seconds.
    static func generationBatches(_ count: Int, batches: Int) -> [[JSONValue]] {
        var halves: [JSONValue] = []
        for i in 0..<count {
            halves.append(Ops.generationStart(10_000 + i, task: i, at: Double(i)))
            halves.append(Ops.generationComplete(20_000 + i, task: i, at: Double(2 * i + 1)))
        }
        var generator = SplitMix64(seed: 7)
        halves.shuffle(using: &generator)
        return (0..<batches).map { b in stride(from: b, to: halves.count, by: batches).map { halves[$0] } }
    }

    static func expectEveryGenerationPairedOnce(_ store: SQLiteStore, _ count: Int) async throws {
        let ops = try await Ops.operations(store, kind: "generation")
        #expect(ops.count == count)
        #expect(Set(ops.compactMap(\.key)).count == count)
        #expect(ops.allSatisfy { $0.status == .succeeded })
        let durations: Set<Double> = Set(ops.compactMap(\.durationMilliseconds))
        let expected: Set<Double> = Set((0..<count).map { i -> Double in Double((i + 1) * 1000) })
        #expect(durations == expected)
    }

    @Test func eventsStoredWithPairingOffArePairedWhenTheStoreOpensWithIt() async throws {
        let path = Self.newPath()
        do {
            let store = try Self.open(path, pairs: false)
            for batch in Self.generationBatches(300, batches: 7) { try await Ops.write(store, batch) }
            #expect(try await Ops.operations(store).isEmpty)
            try store.close()
        }
        do {
            // Read back from the events table above the watermark (0 here), and paired.
            let store = try Self.open(path)
            try await Self.expectEveryGenerationPairedOnce(store, 300)
            #expect(store.pairingLag == 0)
            try store.close()
        }
        do {
            // The watermark is durable: nothing is paired a second time.
            let store = try Self.open(path)
            try await Self.expectEveryGenerationPairedOnce(store, 300)
            try store.close()
        }
    }

    @Test func concurrentWritesPairEveryOperationOnce() async throws {
        // Writes commit one after another, but their hand-overs to the pairer race: a range that
        // arrives late is read back from the table, and nothing is paired twice.
        let store = try Self.open(Self.newPath())
        defer { try? store.close() }
        let batches = Self.generationBatches(1_000, batches: 40)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for batch in batches { group.addTask { try await Ops.write(store, batch) } }
            var stored = 0
            for try await count in group { stored += count }
            #expect(stored == 2_000)
        }
        try await Self.expectEveryGenerationPairedOnce(store, 1_000)
    }

    @Test func aStoreWithOperationsInTheEventsFileIsUpgraded() async throws {
        // Until this version operations were a table of the events file. Rebuild that layout
        // (the old table with a stale row, migration v3 not applied, no operations file) and open.
        let path = Self.newPath()
        do {
            let store = try Self.open(path)
            for batch in Self.generationBatches(50, batches: 3) { try await Ops.write(store, batch) }
            try store.close()
        }
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(atPath: String(path.dropLast(7)) + "-operations.sqlite" + suffix)
        }
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "CREATE TABLE operations (_seq INTEGER PRIMARY KEY, kind TEXT)")
            try db.execute(sql: "INSERT INTO operations (kind) VALUES ('stale')")
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier LIKE 'v3:%'")
        }
        try queue.close()

        let store = try Self.open(path)
        defer { try? store.close() }
        try await Self.expectEveryGenerationPairedOnce(store, 50)
        #expect(try await Ops.operations(store).count == 50)
        #expect(try await store.integrityCheck() == "ok")
    }

    @Test(arguments: [false, true]) func eventsAfterRetentionEmptiedTheStoreGetNewSequenceNumbersAndPair(_ reopen: Bool)
        async throws
    {
        // SQLite gives a new row the largest rowid + 1: once retention has deleted the newest
        // events, new events would get sequence numbers the pairer (and stream cursors) had
        // already passed. The store continues above the largest it ever gave.
        let path = Self.newPath()
        var store = try Self.open(path)
        for batch in Self.generationBatches(40, batches: 4) { try await Ops.write(store, batch) }
        try await Self.expectEveryGenerationPairedOnce(store, 40)
        while try await store.deleteEvents(before: Ops.base + 86_400_000_000, limit: 1_000) > 0 {}
        #expect(try await store.counts().events == 0)
        let before = try await store.latestSequence()
        #expect(before == 80)
        if reopen {
            try store.close()
            store = try Self.open(path)
        }
        try await Ops.write(store, [Ops.generationStart(900, task: 900, at: 5), Ops.generationComplete(901, task: 900, at: 9)])
        #expect(try await store.latestSequence() == before + 2)
        let ops = try await Ops.operations(store, kind: "generation")
        #expect(ops.count == 1)
        #expect(ops.first?.status == .succeeded && ops.first?.durationMilliseconds == 4000)
        try store.close()
    }

    @Test func readsOfOperationsSeeEveryEventAcknowledgedBeforeThem() async throws {
        // Each write is followed at once by a read: pairing runs behind the writer, and the read
        // waits until it has caught up with what was committed before it.
        let store = try Self.open(Self.newPath())
        defer { try? store.close() }
        for i in 0..<30 {
            try await Ops.write(store, [Ops.generationStart(100 + i, task: i, at: Double(i))])
            #expect(try await Ops.operations(store, kind: "generation", status: .running).count == 1)
            try await Ops.write(store, [Ops.generationComplete(200 + i, task: i, at: Double(i) + 1)])
            #expect(try await Ops.operations(store, kind: "generation", status: .succeeded).count == i + 1)
        }
    }

    @Test func aReadPairsWhatAnotherProcessWroteWithoutPairing() async throws {
        // `consume` beside a collector: another store on the same files writes the events (its
        // own pairer off here, or starved); a read in this one waits, and this store pairs them.
        let path = Self.newPath()
        let writer = try Self.open(path, pairs: false)
        defer { try? writer.close() }
        let reader = try Self.open(path)
        defer { try? reader.close() }
        for batch in Self.generationBatches(200, batches: 5) { try await Ops.write(writer, batch) }
        // Before, the read gave up after 5 s and answered with no operations.
        try await Self.expectEveryGenerationPairedOnce(reader, 200)
    }

    @Test func twoStoresPairingTheSameFilesPairEachEventOnce() async throws {
        // Both pair, each what it wrote and, when read, what the other wrote: the watermark in
        // the operations file decides, so nothing is paired twice.
        let path = Self.newPath()
        let first = try Self.open(path)
        defer { try? first.close() }
        let second = try Self.open(path)
        defer { try? second.close() }
        for (b, batch) in Self.generationBatches(300, batches: 12).enumerated() {
            try await Ops.write(b % 2 == 0 ? first : second, batch)
            if b % 3 == 0 { _ = try await Ops.operations(b % 2 == 0 ? second : first) }
        }
        try await Self.expectEveryGenerationPairedOnce(first, 300)
        try await Self.expectEveryGenerationPairedOnce(second, 300)
    }

    // The pairer remembers open starts by key, so that a completion need not query the table:
    // these take the paths where that memory must step aside.

    @Test func aStartPairedBeforeAReopenCompletesWithItsSpans() async throws {
        let path = Self.newPath()
        do {
            let store = try Self.open(path)
            try await Ops.write(store, [Ops.generationStart(1, task: 1, at: 0)])
            #expect(try await Ops.operations(store, kind: "generation", status: .running).count == 1)
            try store.close()
        }
        // Read back from the table at the next start: the start's instants come with it.
        let store = try Self.open(path)
        defer { try? store.close() }
        try await Ops.write(store, [Ops.generationComplete(2, task: 1, at: 12.5, queuedUntil: 2)])
        let op = try #require(try await Ops.operations(store, kind: "generation").first)
        #expect(op.status == .succeeded && op.durationMilliseconds == 12_500)
        let attributes = Dictionary(uniqueKeysWithValues: op.attributes)
        #expect(attributes["queue_ms"] == .number(2000) && attributes["run_ms"] == .number(10_500))
    }

    @Test func twoOpenStartsUnderOneKeyCompleteInTheOrderTheyStarted() async throws {
        let store = try Self.open(Self.newPath())
        defer { try? store.close() }
        for event in [Ops.generationStart(1, task: 5, at: 0), Ops.generationStart(2, task: 5, at: 5),
                      Ops.generationComplete(3, task: 5, at: 10), Ops.generationComplete(4, task: 5, at: 20)] {
            try await Ops.write(store, [event])
        }
        let ops = try await Ops.operations(store, kind: "generation").sorted { ($0.startedMicros ?? 0) < ($1.startedMicros ?? 0) }
        #expect(ops.map(\.durationMilliseconds) == [10_000, 15_000], "the oldest open start takes the first completion")
        #expect(ops.map { $0.completeEventID?.description } == [OperationTests.id(3), OperationTests.id(4)])
    }

    @Test func aCompletionWhoseStartRetentionDeletedStandsAlone() async throws {
        let store = try Self.open(Self.newPath())
        defer { try? store.close() }
        try await Ops.write(store, [Ops.generationStart(1, task: 9, at: 0)])
        #expect(try await Ops.operations(store, kind: "generation").count == 1)
        // The start and its operation go (they are older than the cut); then the completion comes.
        #expect(try await store.deleteEvents(before: OperationTests.base + 1_000_000, limit: 100) == 1)
        #expect(try await Ops.operations(store, kind: "generation").isEmpty)
        try await Ops.write(store, [Ops.generationComplete(2, task: 9, at: 30)])
        let ops = try await Ops.operations(store, kind: "generation")
        #expect(ops.count == 1)
        #expect(ops.first?.startedMicros == nil && ops.first?.completeEventID?.description == OperationTests.id(2))
    }
}
