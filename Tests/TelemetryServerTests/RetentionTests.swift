import Foundation
import Logging
import TelemetryCatalog
import TelemetryPipeline
import TelemetryStore
import Testing

@Suite struct RetentionTests {
    @Test func oldEventsGoRecentOnesStay() async throws {
        try await TestCollector.run { collector in
            let now: Int64 = 1_795_000_000_000_000
            let day: Int64 = 86_400_000_000
            var sampler = EventSampler(seed: 41)
            var lines: [String] = []
            for i in 0..<120 {
                var event = sampler.sample()
                // 0..59 are 40 days old, 60..119 one day old.
                event["timestamp"] = .string(ISO8601Timestamp.string(fromMicroseconds: now - (i < 60 ? 40 : 1) * day - Int64(i)))
                lines.append(event.render())
            }
            let posted = try await collector.connection().post(lines.joined(separator: "\n"))
            #expect(posted.json["accepted"] as? Int == 120)
            var logger = Logger(label: "test.retention")
            logger.logLevel = .critical
            // Small batches, to check the sweep keeps going until nothing old is left.
            let retention = RetentionService(
                store: collector.store, retention: .seconds(30 * 86_400), batchSize: 7, logger: logger, now: { now })
            #expect(await retention.sweep() == 60)
            #expect(try await collector.store.counts().events == 60)
            let oldest = try await collector.store.events(EventQuery(limit: 1000)).events
            #expect(oldest.allSatisfy { !lines[0..<60].contains($0.json) })
            #expect(await retention.sweep() == 0)
        }
    }
}
