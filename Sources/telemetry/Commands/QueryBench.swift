import ArgumentParser
import Foundation
import Logging
import TelemetryCatalog
import TelemetryClickHouse
import TelemetryStore

/// What the query benchmark reads from a store beyond the protocol.
protocol BenchmarkedStore: EventStore {
    func counts() async throws -> (events: Int, rejected: Int)
    func countsByEventType(since: Int64, until: Int64) async throws -> [String: Int]
}

extension SQLiteStore: BenchmarkedStore {}
extension ClickHouseStore: BenchmarkedStore {}

struct QueryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Query latency of a store (SQLite, or ClickHouse with --store), seeded with many events.",
        discussion: """
            Seeds a store (written straight through the store, not over HTTP) with realistic events of \
            every type spread over 30 days, with time-ordered UUIDv7 ids as the SDK sends them, then \
            times: a fetch by id, the 100 newest events of a tenant and type, and a count by event \
            type over one day; and on the operations the events pair into: the p99 of generation \
            duration by model over one day, a policy check's eval_ms p99 by hour over a day, and \
            listings of operations (newest of a kind, failed, stuck). Each query runs --repeats \
            times; p50, p99 and max are reported.

            With --store clickhouse:http://HOST:PORT/DATABASE the same runs against ClickHouse \
            (seeded unless the database already holds enough events).
            """
    )

    @Option(help: "Events to seed.")
    var events: Int = 1_000_000

    @Option(help: "Times each query runs.")
    var repeats: Int = 50

    @Option(help: "Keep the seeded store in this folder (reused when it already holds enough events).")
    var data: String?

    @Option(help: "Run against this ClickHouse store instead (clickhouse:http://HOST:PORT/DATABASE; kept afterwards).")
    var store: String?

    func run() async throws {
        let directory = data ?? FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-query-bench-\(getpid())").path
        defer { if data == nil { try? FileManager.default.removeItem(atPath: directory) } }
        var logger = Logger(label: "telemetry.bench")
        logger.logLevel = .error
        let store: any BenchmarkedStore
        if let url = self.store {
            store = try await ClickHouseStore(configuration: ClickHouseStoreConfiguration(location: ClickHouseLocation(url)), logger: logger)
        } else {
            var configuration = SQLiteStoreConfiguration(path: (directory as NSString).appendingPathComponent("telemetry.sqlite"))
            configuration.durability = .normal
            let sqlite = try SQLiteStore(configuration: configuration, logger: logger)
            store = sqlite
        }
        defer { (store as? SQLiteStore).map { try? $0.close() } }

        let day: Int64 = 86_400_000_000
        let start: Int64 = 1_795_000_000_000_000
        var sampler = EventSampler(seed: 5, startMicros: start)
        sampler.timeOrderedIDs = true
        sampler.linksLifecycles = true
        sampler.lifecycleLag = 8
        sampler.spacingMicros = max(2, 2 * 30 * day / Int64(events))
        var ids: [UUIDValue] = []
        var tenants: Set<String> = []
        let existing = try await store.counts().events
        if existing < events {
            var validator = EventValidator()
            var progress = ProgressBar(total: events, minimumTotal: 1, items: "events")
            var written = existing
            var writeNanos: UInt64 = 0
            let began = MonotonicClock.now()
            while written < events {
                var batch = WriteBatch()
                for _ in 0..<min(10_000, events - written) {
                    let line = sampler.sample().render()
                    guard case .valid(let event) = validator.validate(line) else { continue }
                    batch.events.append(IncomingEvent(event: event, receivedMicros: event.timestampMicros, requestID: "seed"))
                    if ids.count < 100_000 && batch.events.count % 7 == 0 { ids.append(event.eventID) }
                }
                let writeStarted = MonotonicClock.now()
                written += try await store.write(batch).stored
                writeNanos += MonotonicClock.now() - writeStarted
                progress.update(bytes: written, items: written)
            }
            progress.finish()
            let seconds = Double(MonotonicClock.now() - began) / 1e9
            let storeSeconds = Double(writeNanos) / 1e9
            print("seeded \(events - existing) events in \(String(format: "%.0f", seconds)) s; store writes alone (10,000 a batch\(self.store == nil ? ", fsync normal" : "")): \(String(format: "%.0f", Double(events - existing) / storeSeconds)) events/s; \(formatBytes(Int(try await store.sizeBytes()))) on disk")
        }
        // Ids and tenants to ask for, read back from the store.
        let sample = try await store.events(EventQuery(limit: 2_000))
        for event in sample.events {
            if let object = try? JSONSerialization.jsonObject(with: Data(event.json.utf8)) as? [String: Any] {
                if let id = (object["event_id"] as? String).flatMap(UUIDValue.init) { ids.append(id) }
                if let tenant = object["tenant_id"] as? String { tenants.insert(tenant) }
            }
        }
        // Pairing runs behind the writes: let it finish before timing queries of operations.
        if store.pairingLag > 0 {
            let lagged = MonotonicClock.now()
            var progress = ProgressBar(total: Int(store.pairingLag), minimumTotal: 1, items: "events")
            let behind = store.pairingLag
            while store.pairingLag > 0 {
                progress.update(bytes: Int(behind - store.pairingLag), items: Int(behind - store.pairingLag))
                try await Task.sleep(for: .milliseconds(100))
            }
            progress.finish()
            print(String(format: "pairing caught up %.1f s after the last write", Double(MonotonicClock.now() - lagged) / 1e9))
        }
        let total = try await store.counts().events
        print("store: \(total) events, \(formatBytes(Int(try await store.sizeBytes())))")

        func time(_ name: String, _ body: (Int) async throws -> Void) async throws {
            var samples: [Double] = []
            for i in 0..<repeats {
                let began = MonotonicClock.now()
                try await body(i)
                samples.append(Double(MonotonicClock.now() - began) / 1e6)
            }
            samples.sort()
            print(name.padding(to: 48) + String(format: "p50 %8.3f ms   p99 %8.3f ms   max %8.3f ms",
                samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)], samples.last!))
        }
        let tenantList = tenants.sorted()
        let types = Catalog.builtin.eventTypes
        try await time("fetch by id") { i in
            guard try await store.event(id: ids[(i * 7919) % ids.count], tenant: nil) != nil else { throw CommandFailure("id not found") }
        }
        try await time("100 newest of a tenant and event type") { i in
            let page = try await store.events(
                EventQuery(eventType: types[i % types.count], tenantID: tenantList[i % tenantList.count], limit: 100))
            guard !page.events.isEmpty else { throw CommandFailure("no events for a tenant and type") }
        }
        try await time("count by event type over a day") { i in
            let from = start + Int64(i % 28) * day
            let counts = try await store.countsByEventType(since: from, until: from + day)
            guard !counts.isEmpty else { throw CommandFailure("no events in a day") }
        }
        let end = start + 30 * day
        try await time("stats: generation duration p99 by model, a day") { i in
            let from = start + Int64(i % 28) * day
            let groups = try await store.stats(
                StatsQuery(
                    source: .operations(kind: "generation"), aggregates: [.count, .p50, .p99], groupBy: ["model"], since: from,
                    until: from + day, nowMicros: end))
            guard !groups.isEmpty else { throw CommandFailure("no generations in a day") }
        }
        try await time("stats: eval_ms p99 by hour, a day") { i in
            // Never the same range twice: each run reads the rows (not a scan another one left).
            let from = start + Int64(i % 28) * day + Int64(i)
            let groups = try await store.stats(
                StatsQuery(
                    source: .events(eventType: "pbac.agent.politics.check"), field: "eval_ms", aggregates: [.p99],
                    since: from, until: from + day, intervalMicros: 3_600_000_000, nowMicros: end))
            guard !groups.isEmpty else { throw CommandFailure("no policy checks in a day") }
        }
        let kinds = Catalog.builtin.lifecycles.map(\.kind)
        try await time("operations: 100 newest of a kind") { i in
            let page = try await store.operations(OperationQuery(kind: kinds[i % kinds.count], limit: 100, nowMicros: end))
            guard !page.operations.isEmpty else { throw CommandFailure("no operations") }
        }
        try await time("operations: 100 newest failed generations") { _ in
            let page = try await store.operations(OperationQuery(kind: "generation", status: .failed, limit: 100, nowMicros: end))
            guard !page.operations.isEmpty else { throw CommandFailure("no failed generations") }
        }
        try await time("operations: stuck, all kinds") { _ in
            _ = try await store.operations(OperationQuery(status: .stuck, limit: 100, nowMicros: end))
        }
        var operationCount = 0
        for kind in kinds {
            operationCount += try await store.stats(StatsQuery(source: .operations(kind: kind), nowMicros: end)).reduce(0) { $0 + $1.count }
        }
        print("operations: \(operationCount)")
    }
}
