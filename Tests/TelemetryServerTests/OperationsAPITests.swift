import Foundation
import TelemetryCatalog
import TelemetryClient
import Testing

/// `GET /v1/operations`, `GET /v1/stats` and `GET /metrics` over a real loopback server.
@Suite struct OperationsAPITests {
    /// Generations of two models started an hour ago (so older than generation's 15-minute
    /// timeout); most complete, some fail, two never complete and are stuck.
    static func lines() -> [String] {
        let hourAgo = Int64(Date().timeIntervalSince1970 * 1_000_000) - 3_600_000_000
        let offset = Double(hourAgo - OperationTests.base) / 1_000_000
        var events: [JSONValue] = []
        for task in 0..<12 {
            let model = task % 2 == 0 ? "sdxl" : "flux"
            events.append(OperationTests.generationStart(100 + task, task: task, at: offset + Double(task), model: model))
            if task < 10 {
                events.append(
                    OperationTests.generationComplete(
                        200 + task, task: task, at: offset + Double(task) + Double(task + 1), result: task % 5 != 4, model: model))
            }
        }
        return events.map { $0.render() }
    }

    @Test func listsFiltersAndReportsStuck() async throws {
        try await TestCollector.run { collector in
            let connection = collector.connection()
            let posted = try await connection.post(Self.lines().joined(separator: "\n"))
            #expect(posted.json["accepted"] as? Int == 22)

            let all = try await connection.getJSON("/v1/operations?kind=generation&limit=1000")
            #expect(all.status == 200)
            let operations = try #require(all.json["operations"] as? [[String: Any]])
            #expect(operations.count == 12)
            let first = try #require(operations.first { $0["key"] as? String == OperationTests.task(3) })
            #expect(first["status"] as? String == "succeeded")
            #expect(first["duration_ms"] as? Double == 4000)
            #expect((first["attributes"] as? [String: Any])?["model"] as? String == "flux")
            #expect(first["start_event_id"] as? String == OperationTests.id(103))

            let stuck = try await connection.getJSON("/v1/operations?status=stuck")
            #expect((stuck.json["operations"] as? [[String: Any]])?.count == 2)
            let failed = try await connection.getJSON("/v1/operations?kind=generation&status=failed")
            #expect((failed.json["operations"] as? [[String: Any]])?.compactMap { $0["key"] as? String }.sorted()
                == [OperationTests.task(4), OperationTests.task(9)])
            let flux = try await connection.getJSON("/v1/operations?model=flux&limit=1000")
            #expect((flux.json["operations"] as? [[String: Any]])?.count == 6)
            let byKey = try await connection.getJSON("/v1/operations?key=\(OperationTests.task(7))")
            #expect((byKey.json["operations"] as? [[String: Any]])?.count == 1)

            // Pages of 5 cover every operation once.
            var keys: [String] = []
            var cursor: String? = nil
            repeat {
                let page = try await connection.getJSON("/v1/operations?limit=5" + (cursor.map { "&cursor=\($0)" } ?? ""))
                keys += (page.json["operations"] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil
            #expect(keys.count == 12 && Set(keys).count == 12)

            for bad in ["kind=nope", "status=late", "nope=1", "since=yesterday", "limit=0"] {
                let answer = try await connection.getJSON("/v1/operations?\(bad)")
                #expect(answer.status == 400, "\(bad)")
                #expect((answer.json["error"] as? [String: Any])?["code"] as? String == "bad_query")
            }
        }
    }

    @Test func statsAnswerTheContractShape() async throws {
        try await TestCollector.run { collector in
            let connection = collector.connection()
            _ = try await connection.post(Self.lines().joined(separator: "\n"))
            let byModel = try await connection.getJSON("/v1/stats?operation=generation&agg=count,p50,max&group_by=model")
            #expect(byModel.status == 200)
            let groups = try #require(byModel.json["groups"] as? [[String: Any]])
            #expect(groups.count == 2)
            let sdxl = try #require(groups.first { ($0["key"] as? [String: Any])?["model"] as? String == "sdxl" })
            // sdxl tasks 0,2,4,6,8 completed after 1,3,5,7,9 s; tasks 10 is stuck (no duration).
            #expect(sdxl["count"] as? Int == 6)
            #expect(sdxl["p50"] as? Double == 5000)
            #expect(sdxl["max"] as? Double == 9000)

            let success = try await connection.getJSON("/v1/stats?operation=generation&field=success&agg=rate")
            let rate = try #require((success.json["groups"] as? [[String: Any]])?.first?["rate"] as? Double)
            #expect(abs(rate - 0.8) < 1e-9)

            let byStatus = try await connection.getJSON("/v1/stats?operation=generation&group_by=status")
            let counts = Dictionary(
                uniqueKeysWithValues: (byStatus.json["groups"] as? [[String: Any]] ?? []).map {
                    (($0["key"] as? [String: Any])?["status"] as? String ?? "", $0["count"] as? Int ?? 0)
                })
            #expect(counts == ["succeeded": 8, "failed": 2, "stuck": 2])

            // Events of every type, by topic.
            let byTopic = try await connection.getJSON("/v1/stats?group_by=topic")
            let topics = Dictionary(
                uniqueKeysWithValues: (byTopic.json["groups"] as? [[String: Any]] ?? []).map {
                    (($0["key"] as? [String: Any])?["topic"] as? String ?? "", $0["count"] as? Int ?? 0)
                })
            #expect(topics == ["xumi_task": 22])

            let bucketed = try await connection.getJSON(
                "/v1/stats?event_type=xumi.generation.start&group_by=model&interval=1h")
            for group in bucketed.json["groups"] as? [[String: Any]] ?? [] {
                #expect(ISO8601Timestamp.microseconds(group["bucket"] as? String ?? "") != nil)
            }

            for bad in [
                "operation=generation&event_type=x", "operation=generation&agg=p101", "group_by=model", "event_type=xumi.generation.start&field=model&agg=avg",
                "operation=generation&interval=soon", "operation=generation&group_by=colour",
            ] {
                let answer = try await connection.getJSON("/v1/stats?\(bad)")
                #expect(answer.status == 400, "\(bad)")
            }
        }
    }

    @Test func metricsExportStuckOperationsByKind() async throws {
        try await TestCollector.run { collector in
            let connection = collector.connection()
            _ = try await connection.post(Self.lines().joined(separator: "\n"))
            let response = try await connection.request("GET", "/metrics")
            #expect(response.status == 200)
            #expect(response.header("content-type")?.hasPrefix("text/plain") == true)
            let text = response.text
            #expect(text.contains("# TYPE telemetry_operations_stuck gauge"))
            #expect(MetricsTests.sample(text, "telemetry_operations_stuck{kind=\"generation\"}") == 2)
            #expect(MetricsTests.sample(text, "telemetry_operations_stuck{kind=\"weights_load\"}") == 0)
        }
    }
}
