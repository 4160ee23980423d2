import Foundation
import TelemetryCatalog
import TelemetryStore
import Testing

/// Statistics of one event type and range asked together are answered from one read of its rows
/// (`StatsScans`): the answers must be those of reading the table for each query, whatever was
/// written or deleted in between.
@Suite struct StatsScanTests {
    typealias Checks = StatsTests
    static let type = "pbac.agent.politics.check"

    /// Scans are kept 10 minutes, not the default 10 s: a test that counts the reads must not
    /// see a scan expire because a loaded machine ran it slowly (it took ~50 s in full runs).
    static func open(_ path: String, scanRows: Int = 100_000) throws -> SQLiteStore {
        try PairingTests.open(path, scanRows: scanRows, scanKeep: .seconds(600))
    }

    /// The dashboard's questions about policy checks, and more: filters, groups, buckets,
    /// percentiles, rates, one tenant.
    static func queries(since: Int64, until: Int64) -> [StatsQuery] {
        func query(_ field: String?, _ aggregates: [StatsAggregate], groupBy: [String] = [], interval: Int64? = nil,
                   tenant: String? = nil, filters: [FieldFilter] = []) -> StatsQuery {
            StatsQuery(
                source: .events(eventType: type), field: field, aggregates: aggregates, groupBy: groupBy, since: since, until: until,
                intervalMicros: interval, tenantID: tenant, filters: filters, nowMicros: 0)
        }
        return [
            query(nil, [.count], groupBy: ["result"], interval: Checks.hour),
            query(nil, [.count], groupBy: ["denial_source"], filters: [FieldFilter(field: "result", value: "false")]),
            query("eval_ms", [.p50, .p95, .p99]),
            query("cache_hit", [.rate]),
            query("eval_ms", [.count, .sum, .avg, .min, .max, .last], groupBy: ["tenant_id", "denial_source"]),
            query("eval_ms", [.p99], interval: Checks.hour, tenant: OperationTests.tenantB),
            query(nil, [.count], tenant: OperationTests.tenantA, filters: [FieldFilter(field: "cache_hit", value: "true")]),
        ]
    }

    /// Each query's answer from `store` equals the one from `reference` (a store on the same file
    /// that reads the table for every query).
    static func expectSameAnswers(_ store: SQLiteStore, _ reference: SQLiteStore, _ queries: [StatsQuery]) async throws {
        let answers = try await withThrowingTaskGroup(of: (Int, [StatsGroup]).self) { group in
            for (i, query) in queries.enumerated() { group.addTask { (i, try await store.stats(query)) } }
            var answers: [Int: [StatsGroup]] = [:]
            for try await (i, groups) in group { answers[i] = groups }
            return answers
        }
        for (i, query) in queries.enumerated() {
            let expected = try await reference.stats(query)
            let got = answers[i] ?? []
            #expect(got.count == expected.count, "query \(i)")
            for (a, b) in zip(got, expected) {
                #expect(a.count == b.count && a.bucketMicros == b.bucketMicros && a.key.map(\.1) == b.key.map(\.1), "query \(i)")
                for ((name, x), (_, y)) in zip(a.values, b.values) {
                    #expect(Checks.close(x, y), "query \(i), \(name): \(String(describing: x)) vs \(String(describing: y))")
                }
            }
            #expect(!expected.isEmpty, "query \(i) has an answer to compare")
        }
    }

    @Test func questionsAskedTogetherReadTheRowsOnceAndAnswerAsTheTableDoes() async throws {
        let path = PairingTests.newPath()
        let store = try Self.open(path)
        defer { try? store.close() }
        let reference = try Self.open(path, scanRows: 0)
        defer { try? reference.close() }
        let checks = Checks.checks(seed: 31, count: 1200)
        try await OperationTests.write(store, checks.enumerated().map { Checks.event($0, $1) })
        let since = OperationTests.base, until = OperationTests.base + 3 * Checks.hour
        let before = store.statsScansRead
        try await Self.expectSameAnswers(store, reference, Self.queries(since: since, until: until))
        // Six of the seven share the rows of the whole range; the tenant's query has its own.
        #expect(store.statsScansRead - before == 3, "one scan for all tenants, one for each tenant asked")
        #expect(reference.statsScansRead == 0)
    }

    @Test func eventsWrittenAfterAScanAreCounted() async throws {
        let path = PairingTests.newPath()
        let store = try Self.open(path)
        defer { try? store.close() }
        let reference = try Self.open(path, scanRows: 0)
        defer { try? reference.close() }
        let checks = Checks.checks(seed: 32, count: 900)
        let since = OperationTests.base, until = OperationTests.base + 3 * Checks.hour
        // Three writes, each followed by every question: the later ones take in what was written
        // since the scan was read (times spread over the whole range, not only the newest).
        for part in 0..<3 {
            let slice = Array(checks.enumerated())[(part * 300)..<((part + 1) * 300)]
            try await OperationTests.write(store, slice.map { Checks.event($0.offset, $0.element) })
            try await Self.expectSameAnswers(store, reference, Self.queries(since: since, until: until))
        }
        let total = try await store.stats(StatsQuery(source: .events(eventType: Self.type), field: "eval_ms", aggregates: [.count], since: since, until: until, nowMicros: 0))
        #expect(total.first?.count == 900)
        // Written through another store on the same file, as a `consume` process beside the collector.
        let more = Checks.checks(seed: 33, count: 50)
        try await OperationTests.write(reference, more.enumerated().map { Checks.event(1000 + $0, $1) })
        let after = try await store.stats(StatsQuery(source: .events(eventType: Self.type), field: "eval_ms", aggregates: [.count], since: since, until: until, nowMicros: 0))
        #expect(after.first?.count == 950)
    }

    @Test func eventsDeletedByRetentionAfterAScanAreNotCounted() async throws {
        let path = PairingTests.newPath()
        let store = try Self.open(path)
        defer { try? store.close() }
        let checks = Checks.checks(seed: 34, count: 600)
        try await OperationTests.write(store, checks.enumerated().map { Checks.event($0, $1) })
        let query = StatsQuery(
            source: .events(eventType: Self.type), field: "eval_ms", aggregates: [.count, .sum], groupBy: ["denial_source"],
            since: OperationTests.base, until: OperationTests.base + 3 * Checks.hour, nowMicros: 0)
        #expect(try await store.stats(query).reduce(0) { $0 + $1.count } == 600)
        let cutoff = OperationTests.base + Checks.hour
        let deleted = try await store.deleteEvents(before: cutoff, limit: 10_000)
        let kept = checks.filter { $0.at >= cutoff }
        #expect(deleted == checks.count - kept.count)
        let groups = try await store.stats(query)
        #expect(groups.reduce(0) { $0 + $1.count } == kept.count)
        for group in groups {
            guard case .string(let denial)? = group.key.first?.1 else { continue }
            let values = kept.filter { $0.denial == denial }.compactMap(\.evalMs)
            #expect(Checks.close(group.values.first { $0.0 == .sum }?.1, values.reduce(0, +)))
        }
    }

    @Test func rowsBeyondTheLimitAreReadFromTheTableForEachQuery() async throws {
        let path = PairingTests.newPath()
        let store = try Self.open(path, scanRows: 600)
        defer { try? store.close() }
        let reference = try Self.open(path, scanRows: 0)
        defer { try? reference.close() }
        let checks = Checks.checks(seed: 35, count: 800)
        try await OperationTests.write(store, checks.enumerated().map { Checks.event($0, $1) })
        let queries = Self.queries(since: OperationTests.base, until: OperationTests.base + 3 * Checks.hour)
        try await Self.expectSameAnswers(store, reference, queries)
        // Either tenant's rows (~480 and ~320) fit; the 800 of both do not, and are not read again.
        let reads = store.statsScansRead
        try await Self.expectSameAnswers(store, reference, queries)
        #expect(store.statsScansRead == reads)
    }

    /// A scan nobody asked of for longer than its keep time is let go, and read again when asked.
    @Test func aScanUnusedForItsKeepTimeIsReadAgain() async throws {
        let path = PairingTests.newPath()
        let store = try PairingTests.open(path, scanKeep: .milliseconds(300))
        defer { try? store.close() }
        let checks = Checks.checks(seed: 36, count: 400)
        try await OperationTests.write(store, checks.enumerated().map { Checks.event($0, $1) })
        let query = Self.queries(since: OperationTests.base, until: OperationTests.base + 3 * Checks.hour)[0]
        let first = try await store.stats(query)
        let reads = store.statsScansRead
        #expect(reads >= 1)
        #expect(try await store.stats(query).map(\.count) == first.map(\.count))
        try await Task.sleep(for: .milliseconds(900))
        #expect(try await store.stats(query).map(\.count) == first.map(\.count))
        #expect(store.statsScansRead > reads, "read again after its keep time")
    }

    @Test func theLeastRecentlyUsedScansGoBeyondTheMemoryBudget() async throws {
        // Scans of at most 600 rows, four of them held: five of ~500 rows each do not all fit.
        let path = PairingTests.newPath()
        let store = try Self.open(path, scanRows: 600)
        defer { try? store.close() }
        try await OperationTests.write(store, Checks.checks(seed: 36, count: 1200).enumerated().map { Checks.event($0, $1) })
        let minute: Int64 = 60_000_000
        func ask(_ range: Int64) async throws -> Int {
            let since = OperationTests.base + range * 10 * minute
            let groups = try await store.stats(
                StatsQuery(source: .events(eventType: Self.type), field: "eval_ms", aggregates: [.avg], since: since, until: since + 75 * minute, nowMicros: 0))
            return groups.first?.count ?? 0
        }
        for range in Int64(0)..<5 { #expect((400..<600).contains(try await ask(range))) }
        #expect(store.statsScansRead == 5)
        _ = try await ask(4)
        #expect(store.statsScansRead == 5, "the newest is held")
        _ = try await ask(0)
        #expect(store.statsScansRead == 6, "the oldest went")
    }
}
