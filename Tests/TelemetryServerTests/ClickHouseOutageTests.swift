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
}
