import Foundation
import Logging
import Synchronization
import TelemetryCatalog
import TelemetryClickHouse
import TelemetryClient
import TelemetryStore
import Testing

/// A collector over ClickHouse while ClickHouse dies and comes back.
@Suite(.serialized) struct ClickHouseOutageTests {
    /// The server of a test, replaced when it is restarted.
    final class ServerBox: Sendable {
        let current: Mutex<ClickHouseLocalServer>
        init(_ server: ClickHouseLocalServer) { current = Mutex(server) }
        var server: ClickHouseLocalServer { current.withLock { $0 } }
    }

    static func ids(_ lines: [String]) -> [String] {
        lines.map { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (object?["event_id"] as? String ?? "").lowercased()
        }
    }

    @Test func clickHouseKilledMidIngestIs503ThenRecoversWithNothingLostOrDoubled() async throws {
        let box = ServerBox(try ClickHouseLocalServer())
        defer {
            box.server.stop()
            box.server.removeFiles()
        }
        var logger = Logger(label: "test.clickhouse-outage")
        logger.logLevel = .critical
        var configuration = ClickHouseStoreConfiguration(location: box.server.location(database: "outage"))
        configuration.timeoutSeconds = 5
        configuration.insertAttempts = 2
        let store = try await ClickHouseStore(configuration: configuration, logger: logger)
        defer { store.close() }
        var sampler = EventSampler(seed: 77)
        let batches = (0..<30).map { _ in (0..<100).map { _ in sampler.sample().render() } }
        let allIDs = Set(batches.flatMap(Self.ids))
        #expect(allIDs.count == 3000)

        try await TestCollector.serve(store: store) { port in
            let connection = HTTPConnection(host: "127.0.0.1", port: port)
            var acknowledged: Set<String> = []
            var refused: [Int] = []
            for (index, batch) in batches.enumerated() {
                if index == 10 { box.server.kill9() }  // as a crash, mid-ingest
                if index == 20 {
                    let old = box.server
                    let restarted = try ClickHouseLocalServer(directory: old.directory, httpPort: old.httpPort, tcpPort: old.tcpPort)
                    box.current.withLock { $0 = restarted }
                }
                let ready = try await connection.getJSON("/readyz")
                #expect(ready.status == (index < 10 ? 200 : index < 20 ? 503 : 200), "readyz while ClickHouse is \(index < 10 || index >= 20 ? "up" : "down")")
                let response = try await connection.post(batch.joined(separator: "\n"))
                if response.status == 200 {
                    #expect(response.json["accepted"] as? Int == 100)
                    acknowledged.formUnion(Self.ids(batch))
                } else {
                    #expect(response.status == 503, "batch \(index): \(response.json)")
                    refused.append(index)
                }
            }
            // While ClickHouse was down every request was refused, and none other was.
            #expect(refused == Array(10..<20))
            // Nothing refused is stored...
            let storedWhileDown = Set(try await EmitterTests.storedIDs(store))
            #expect(storedWhileDown == acknowledged)
            // ...and the sender's retries (and a repeat of acknowledged batches) store each event once.
            for index in refused + [0, 25] {
                let response = try await connection.post(batches[index].joined(separator: "\n"))
                #expect(response.status == 200)
                #expect((response.json["accepted"] as? Int ?? 0) + (response.json["duplicates"] as? Int ?? 0) == 100)
                if index < 10 || index >= 20 { #expect(response.json["duplicates"] as? Int == 100) }
            }
            #expect(try await store.counts().events == 3000)
            let stored = try await EmitterTests.storedIDs(store)
            #expect(stored.count == 3000, "no event listed twice")
            #expect(Set(stored) == allIDs)
            connection.close()
        }
    }

    /// Events stored but their ids' INSERT failed: the ids go in before the next write, so that
    /// the sender's retry of the batch counts as duplicates instead of storing the events again.
    @Test func eventsStoredWhoseIdsFailedAreDuplicatesOnRetry() async throws {
        var (server, database, configuration) = try newClickHouseDatabase()
        var logger = Logger(label: "test.clickhouse-ids")
        logger.logLevel = .critical
        configuration.insertAttempts = 1
        let store = try await ClickHouseStore(configuration: configuration, logger: logger)
        defer { store.close() }
        let sql = HTTPConnection(host: "127.0.0.1", port: server.httpPort)
        func run(_ statement: String) async throws {
            let response = try await sql.request("POST", "/?database=\(database)", body: Array(statement.utf8))
            #expect(response.status == 200, "\(statement): \(response.text)")
        }
        let first = try StoreConformanceTests.incoming(StoreConformanceTests.sample(40, seed: 61))
        let second = try StoreConformanceTests.incoming(StoreConformanceTests.sample(60, seed: 62))
        #expect(try await store.write(WriteBatch(events: first)).stored == 40)
        // A column of the ids table goes away: the dedupe lookup and the events INSERT succeed, the
        // ids INSERT fails.
        try await run("ALTER TABLE event_ids DROP COLUMN _seq")
        await #expect(throws: StoreError.self) { try await store.write(WriteBatch(events: second)) }
        #expect(try await store.counts().events == 100, "the events went in")
        try await run("ALTER TABLE event_ids ADD COLUMN _seq Int64")
        let retried = try await store.write(WriteBatch(events: second))
        #expect(retried.duplicates == 60, "the retry finds its events stored")
        #expect(retried.stored == 0)
        #expect(try await store.counts().events == 100)
        let listed = try await store.events(EventQuery(limit: 1000)).events
        #expect(listed.count == 100)
        try await store.dropDatabase()
        sql.close()
    }

    /// Two collectors (two stores on one database) racing to store the same events: an event may be
    /// stored twice, and still counts once in counts, stats and operations.
    @Test func twoWritersRacingOnTheSameEventsCountEachOnce() async throws {
        let (server, database, configuration) = try newClickHouseDatabase()
        var logger = Logger(label: "test.clickhouse-race")
        logger.logLevel = .critical
        let first = try await ClickHouseStore(configuration: configuration, logger: logger)
        let second = try await ClickHouseStore(configuration: configuration, logger: logger)
        defer {
            first.close()
            second.close()
        }
        var sampler = EventSampler(seed: 90)
        sampler.linksLifecycles = true
        sampler.lifecycleLag = 5
        let events = (0..<1500).map { _ in sampler.sample() }
        let batches = try stride(from: 0, to: events.count, by: 100).map {
            try StoreConformanceTests.incoming(Array(events[$0..<min(events.count, $0 + 100)]))
        }
        // Both write every batch at the same time.
        let stored = try await withThrowingTaskGroup(of: Int.self) { group in
            for store in [first, second] {
                group.addTask {
                    var stored = 0
                    for batch in batches { stored += try await store.write(WriteBatch(events: batch)).stored }
                    return stored
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(stored >= 1500, "each event stored at least once")
        let total = try await first.counts().events
        #expect(total == 1500)
        let byType = try await first.stats(StatsQuery(source: .allEvents, groupBy: ["event_type"], nowMicros: 0))
        #expect(byType.reduce(0) { $0 + $1.count } == 1500)
        // The operations are those of the same events written once, by one writer.
        let expectedOperations = try await withStore(.clickhouse) { single in
            for batch in batches { _ = try await single.write(WriteBatch(events: batch)) }
            return try await single.operations(OperationQuery(limit: 10_000, nowMicros: 0)).operations
        }
        let operations = try await first.operations(OperationQuery(limit: 10_000, nowMicros: 0)).operations
        #expect(operations.count == expectedOperations.count)
        let got = Set(operations.map { "\($0.kind)|\($0.key ?? "")|\($0.status)|\($0.durationMilliseconds ?? -1)" })
        let want = Set(expectedOperations.map { "\($0.kind)|\($0.key ?? "")|\($0.status)|\($0.durationMilliseconds ?? -1)" })
        #expect(got == want, "extra: \(got.subtracting(want).sorted()), missing: \(want.subtracting(got).sorted())")
        // One page lists an event once; after ClickHouse merges, every page does.
        let page = try await first.events(EventQuery(limit: 10_000)).events
        #expect(Set(page.map(\.json)).count == page.count)
        let sql = HTTPConnection(host: "127.0.0.1", port: server.httpPort)
        let optimized = try await sql.request("POST", "/?database=\(database)", body: Array("OPTIMIZE TABLE events FINAL".utf8))
        #expect(optimized.status == 200)
        #expect(try await first.events(EventQuery(limit: 10_000)).events.count == 1500)
        try await first.dropDatabase()
        sql.close()
    }
}
