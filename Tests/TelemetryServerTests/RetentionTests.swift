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

    @Test(arguments: StoreKind.allCases) func oldOperationsGoWithTheirEvents(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var events: [JSONValue] = []
            // Twelve generations 40 days before "now", eight one day before.
            let now = OperationTests.base + 41 * 86_400_000_000
            for task in 0..<20 {
                let at = Double(task < 12 ? 0 : 40 * 86_400) + Double(task)
                events.append(OperationTests.generationStart(100 + task, task: task, at: at))
                events.append(OperationTests.generationComplete(200 + task, task: task, at: at + 3))
            }
            try await OperationTests.write(store, events)
            var logger = Logger(label: "test.retention")
            logger.logLevel = .critical
            let retention = RetentionService(store: store, retention: .seconds(30 * 86_400), batchSize: 5, logger: logger, now: { now })
            #expect(await retention.sweep() >= 24)
            let left = try await store.operations(OperationQuery(limit: 100, nowMicros: now)).operations
            #expect(left.count == 8)
            #expect(left.allSatisfy { ($0.startedMicros ?? 0) >= OperationTests.base + 40 * 86_400_000_000 })
            #expect(try await store.counts().events == 16)
        }
    }
}
