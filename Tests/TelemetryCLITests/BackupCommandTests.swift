import Foundation
import Synchronization
import TelemetryCatalog
import TelemetryClient
import Testing

/// `telemetry backup` copies a store that a running collector goes on writing to, and the copy
/// serves: every event acknowledged before the backup began is in it, the count it reports is what
/// the copy holds, and SQLite's integrity check passes.
@Suite(.timeLimit(.minutes(3))) struct BackupCommandTests {
    @Test func aBackupTakenDuringIngestHoldsEveryEventAcknowledgedBeforeItAndServes() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let store = data.appendingPathComponent("store")
        let server = try await ServerProcess.start(data: store)
        defer { server.stop() }
        var sampler = EventSampler(seed: 41)
        sampler.linksLifecycles = true
        let before = (0..<2_000).map { _ in sampler.sample().render() }
        let later = (0..<20).map { _ in (0..<500).map { _ in sampler.sample().render() } }
        let http = HTTPConnection(host: "127.0.0.1", port: server.port)
        let first = try await http.request("POST", "/v1/events", body: Array(before.joined(separator: "\n").utf8))
        #expect(first.status == 200 && first.text.contains(#""accepted":2000"#), "\(first.text)")

        // Ingest goes on while the backup runs.
        let acknowledged = Atomic<Int>(2_000)
        let port = server.port
        let posting = Task {
            let connection = HTTPConnection(host: "127.0.0.1", port: port)
            for batch in later {
                let answer = try await connection.request("POST", "/v1/events", body: Array(batch.joined(separator: "\n").utf8))
                #expect(answer.status == 200)
                acknowledged.add(batch.count, ordering: .relaxed)
            }
        }
        let copy = data.appendingPathComponent("copy")
        let backup = try await CLI.runOffPool(["backup", "--data", store.path, copy.path, "--verify"])
        let acknowledgedAfter = acknowledged.load(ordering: .relaxed)
        try await posting.value
        #expect(backup.status == 0, "\(backup.stderr)")
        let line = try #require(backup.stdout.split(separator: "\n").first { $0.hasPrefix("backup: ") }, "\(backup.stdout)")
        let events = try #require(line.split(separator: " ").dropFirst().first.flatMap { Int($0) }, "\(line)")
        #expect(events >= 2_000 && events <= acknowledgedAfter + 500, "\(line)")
        #expect(line.contains("the API keys") && line.contains("the privacy key"), "\(line)")
        #expect(backup.stdout.contains("integrity check: ok (3 files)"), "\(backup.stdout)")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: copy.path))
        #expect(files == ["telemetry.sqlite", "telemetry-operations.sqlite", "keys.sqlite", "privacy.key"], "\(files)")
        #expect(
            try FileManager.default.contents(atPath: copy.appendingPathComponent("privacy.key").path)
                == FileManager.default.contents(atPath: store.appendingPathComponent("privacy.key").path))

        // The copy serves: as many events as reported, the first request's among them, and pairing
        // resumes from the copied watermark.
        server.stop()
        let restored = try await ServerProcess.start(data: copy)
        defer { restored.stop() }
        let reader = HTTPConnection(host: "127.0.0.1", port: restored.port)
        let count = try await reader.request("GET", "/v1/stats?agg=count")
        #expect(count.text.contains(#""count":\#(events)"#), "\(count.text)")
        for line in before.prefix(100) {
            let id = try #require(line.firstMatch(of: /"event_id":"([0-9a-f-]{36})"/)?.1)
            let fetched = try await reader.request("GET", "/v1/events/\(id)")
            #expect(fetched.status == 200, "\(id)")
        }
        let operations = try await reader.request("GET", "/v1/operations?limit=1")
        #expect(operations.status == 200 && operations.text.contains(#""kind""#), "\(operations.text)")

        // Only into a new folder; only the SQLite store.
        let again = try await CLI.runOffPool(["backup", "--data", copy.path, copy.path])
        #expect(again.status == 2 && again.stderr.contains("is not empty"), "\(again.stderr)")
        let clickhouse = try await CLI.runOffPool(["backup", "--store", "clickhouse:http://127.0.0.1:1/db", data.appendingPathComponent("none").path])
        #expect(clickhouse.status == 2 && clickhouse.stderr.contains("ClickHouse"), "\(clickhouse.stderr)")
    }
}
