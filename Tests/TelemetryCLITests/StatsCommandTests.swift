import Foundation
import TelemetryCatalog
import TelemetryClient
import Testing

/// `telemetry stats` and `telemetry query ops` against a collector process.
@Suite struct StatsCommandTests {
    static let tenant = "11111111-1111-4111-8111-111111111111"
    static let node = "33333333-3333-4333-8333-333333333333"

    /// Weights loads on two storage types: ceph loads take 10 s, nvme 2 s; one ceph load fails.
    static func lines(now: Int64) -> [String] {
        var lines: [String] = []
        func time(_ seconds: Int) -> String { ISO8601Timestamp.string(fromMicroseconds: now - 600_000_000 + Int64(seconds) * 1_000_000) }
        for i in 0..<6 {
            let storage = i < 3 ? "ceph" : "nvme"
            let start = String(format: "a0000000-0000-4000-8000-%012d", i)
            let complete = String(format: "a0000000-0000-4000-8000-%012d", 100 + i)
            lines.append(
                #"{"event_id":"\#(start)","event_type":"xumi.weights.load.start","timestamp":"\#(time(i))","tenant_id":"\#(tenant)","source":"loader","version":"1.0","model":"flux","node_id":"\#(node)","storage_type":"\#(storage)"}"#
            )
            lines.append(
                #"{"event_id":"\#(complete)","event_type":"xumi.weights.load.complete","timestamp":"\#(time(i + (i < 3 ? 10 : 2)))","tenant_id":"\#(tenant)","source":"loader","version":"1.0","model":"flux","origin_event_id":"\#(start)","result":\#(i == 1 ? "false" : "true"),"node_id":"\#(node)","storage_type":"\#(storage)","speed":\#(i < 3 ? 1e8 : 5e8)}"#
            )
        }
        return lines
    }

    @Test func statsAndOperationsFromTheCommandLine() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data)
        defer { server.stop() }
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let post = try await HTTPConnection(host: "127.0.0.1", port: server.port)
            .request("POST", "/v1/events", body: Array(Self.lines(now: now).joined(separator: "\n").utf8))
        #expect(post.status == 200)

        let table = try await CLI.runOffPool([
            "stats", "--url", server.url, "--operation", "weights_load", "--agg", "count,avg,p95", "--group-by", "storage_type",
            "--since", "1h",
        ])
        #expect(table.status == 0, "\(table.stderr)")
        let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.first == ["STORAGE_TYPE", "COUNT", "AVG", "P95"])
        #expect(rows.contains(["ceph", "3", "10000", "10000"]), "\(table.stdout)")
        #expect(rows.contains(["nvme", "3", "2000", "2000"]), "\(table.stdout)")

        let speed = try await CLI.runOffPool([
            "stats", "--url", server.url, "--operation", "weights_load", "--field", "speed", "--agg", "avg", "--group-by", "storage_type",
            "--format", "json",
        ])
        let answer = try #require(JSONSerialization.jsonObject(with: Data(speed.stdout.utf8)) as? [String: Any])
        let groups = try #require(answer["groups"] as? [[String: Any]])
        #expect(groups.compactMap { $0["avg"] as? Double }.sorted() == [1e8, 5e8])

        let success = try await CLI.runOffPool([
            "stats", "--url", server.url, "--operation", "weights_load", "--field", "success", "--agg", "rate", "--where", "storage_type=ceph",
        ])
        #expect(success.stdout.contains("0.667"), "\(success.stdout)")

        let failed = try await CLI.runOffPool(["query", "ops", "--url", server.url, "--kind", "weights_load", "--status", "failed"])
        #expect(failed.status == 0)
        #expect(failed.stdout.contains("STATUS"))
        #expect(failed.stdout.split(separator: "\n").count == 2, "\(failed.stdout)")
        #expect(failed.stdout.contains("a0000000-0000-4000-8000-000000000001"))

        let json = try await CLI.runOffPool(["query", "ops", "--url", server.url, "--where", "storage_type=nvme", "--format", "json"])
        #expect(json.stdout.split(separator: "\n").count == 3)

        let bad = try await CLI.runOffPool(["stats", "--url", server.url, "--operation", "weights_load", "--group-by", "colour"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("colour"))
        let both = try await CLI.runOffPool(["stats", "--url", server.url, "--event-type", "x", "--operation", "generation"])
        #expect(both.status == 2)
        #expect(both.stderr.contains("at most one of --event-type and --operation"))
        let all = try await CLI.runOffPool(["stats", "--url", server.url, "--group-by", "topic"])
        #expect(all.stdout.contains("xumi_load"), "\(all.stdout)")
    }
}
