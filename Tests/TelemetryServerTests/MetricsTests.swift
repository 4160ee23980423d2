import Foundation
import TelemetryCatalog
import TelemetryClient
import TelemetryProcess
import TelemetryStore
import Testing

/// `GET /metrics`: what was posted is what is counted, and `promtool check metrics` accepts the
/// exposition with no warning.
@Suite struct MetricsTests {
    /// The value of the sample line that starts with `series` (name and labels as exposed).
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func countersMatchWhatWasPostedAndPromtoolAgrees() async throws {
        try await TestCollector.run { collector in
            let connection = collector.connection()
            var sampler = EventSampler(seed: 77)
            var lines: [String] = []
            var topics: [String: Int] = [:]
            for definition in Catalog.builtin.events {
                for _ in 0..<3 {
                    lines.append(sampler.sample(definition).render())
                    topics[definition.topic.name, default: 0] += 1
                }
            }
            let invalid = [
                #"{"event_type":"xumi.generation.start","event_id":"nope"}"#,
                #"{"event_type":"pbac.agent.start","event_id":"1e0c5a34-8a55-4c9e-9f8e-3d1f0f2b9c11"}"#,
            ]
            // The first request's ids go to the end of the empty id table; later random ids wait in
            // the dedupe index's memory, which a gauge shows.
            let first = try await connection.post(lines.prefix(19).joined(separator: "\n"))
            #expect(first.json["accepted"] as? Int == 19)
            var posted = try await connection.post((lines.dropFirst(19) + invalid).joined(separator: "\n"))
            #expect(posted.json["accepted"] as? Int == lines.count - 19)
            // The same events again: all duplicates.
            posted = try await connection.post(lines.prefix(19).joined(separator: "\n"))
            #expect(posted.json["duplicates"] as? Int == 19)

            let response = try await connection.request("GET", "/metrics")
            #expect(response.status == 200)
            let text = response.text
            for (topic, count) in topics {
                #expect(Self.sample(text, "telemetry_ingest_events_total{topic=\"\(topic)\",outcome=\"accepted\"}") == Double(count), "\(topic)")
            }
            let duplicates = Catalog.builtin.topics.compactMap {
                Self.sample(text, "telemetry_ingest_events_total{topic=\"\($0.name)\",outcome=\"duplicate\"}")
            }
            #expect(duplicates.reduce(0, +) == 19)
            #expect(Self.sample(text, "telemetry_ingest_events_total{topic=\"xumi_task\",outcome=\"rejected\"}") == 1)
            #expect(Self.sample(text, "telemetry_ingest_rejected_events_total{code=\"bad_uuid\"}") == 1)
            #expect(Self.sample(text, "telemetry_ingest_rejected_events_total{code=\"missing\"}") == 1)
            #expect(Self.sample(text, "telemetry_commit_duration_seconds_count") ?? 0 >= 2)
            #expect(Self.sample(text, "telemetry_http_request_duration_seconds_count{route=\"/v1/events\",method=\"POST\"}") == 3)
            #expect((Self.sample(text, "telemetry_store_size_bytes") ?? 0) > 0)
            #expect(Self.sample(text, "telemetry_writer_queue_events") == 0)
            let recentIDs = collector.store.dedupeRecentIDs
            #expect(recentIDs > 0)
            #expect(Self.sample(text, "telemetry_store_dedupe_recent_ids") == Double(recentIDs))

            // promtool, the Prometheus project's own checker (installed by scripts/test).
            let promtool = try await ChildProcess.run(
                "/usr/bin/env", ["promtool", "check", "metrics"], input: Data(response.body), standardErrorToOutput: true)
            let report = promtool.output
            #expect(promtool.status == 0, "promtool: \(report)")
            #expect(report.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool warned: \(report)")
        }
    }

    /// The sample scrape configuration and alert rules in docs/ are ones Prometheus accepts.
    @Test func theDocumentedScrapeConfigAndAlertsAreValid() async throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/prometheus").standardized
        let promtool = try await ChildProcess.run(
            "/usr/bin/env", ["promtool", "check", "config", folder.appendingPathComponent("prometheus.yml").path], standardErrorToOutput: true)
        let report = promtool.output
        #expect(promtool.status == 0, "\(report)")
        #expect(report.contains("2 rules found"), "\(report)")
    }
}
