import Foundation
import TelemetryCatalog
import TelemetryClient
import Testing

/// `telemetry demo`: the collector and a simulated platform, as a newcomer runs it.
@Suite struct DemoCommandTests {
    @Test func everyEventTypeWithinThirtySecondsAndNothingRejected() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let demo = try await ServerProcess.start(command: "demo", data: data)
        defer { demo.stop() }
        let connection = HTTPConnection(host: "127.0.0.1", port: demo.port)
        let started = ContinuousClock.now
        var missing = Set(Catalog.builtin.eventTypes)
        while !missing.isEmpty && ContinuousClock.now - started < .seconds(30) {
            try await Task.sleep(for: .seconds(1))
            for eventType in missing.sorted() {
                let answer = try await connection.request("GET", "/v1/stats?event_type=\(eventType)")
                let object = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
                let count = ((object?["groups"] as? [[String: Any]])?.first?["count"] as? Int) ?? 0
                if count > 0 { missing.remove(eventType) }
            }
        }
        #expect(missing.isEmpty, "not seen within 30 s: \(missing.sorted())")

        let rejected = try await connection.request("GET", "/v1/rejected")
        let rejections = (try JSONSerialization.jsonObject(with: Data(rejected.body)) as? [String: Any])?["rejected"] as? [Any]
        #expect(rejections?.isEmpty == true, "the SDK's events are all valid: \(rejected.text.prefix(500))")

        // The simulated operations pair, with failures among the generations.
        for kind in ["weights_load", "generation", "pod_deploy", "pod_free", "pod_lifetime"] {
            let page = try await connection.request("GET", "/v1/operations?kind=\(kind)&status=succeeded&limit=1")
            let operations = (try JSONSerialization.jsonObject(with: Data(page.body)) as? [String: Any])?["operations"] as? [Any]
            #expect(operations?.isEmpty == false, "no completed \(kind)")
        }
    }
}
