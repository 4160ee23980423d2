import Foundation
import TelemetryCatalog
import TelemetryStore
import Testing

/// `stats` answers checked against a brute-force computation over random data.
@Suite struct StatsTests {
    /// Seeded, so that a failure can be replayed.
    typealias Random = SplitMix64

    struct Check {
        var tenant: String
        var at: Int64
        var evalMs: Double?
        var cacheHit: Bool?
        var denial: String
    }

    static let hour: Int64 = 3_600_000_000

    static func checks(seed: UInt64, count: Int) -> [Check] {
        var random = Random(seed: seed)
        return (0..<count).map { _ in
            Check(
                tenant: random.chance(0.6) ? OperationTests.tenantA : OperationTests.tenantB,
                at: OperationTests.base + Int64(random.below(3 * 3600)) * 1_000_000 + Int64(random.below(1_000_000)),
                evalMs: random.chance(0.9) ? Double(random.below(50_000)) / 100 : nil,
                cacheHit: random.chance(0.8) ? random.chance(0.7) : nil,
                denial: ["none", "system", "tenant"][random.below(3)])
        }
    }

    static func event(_ index: Int, _ check: Check) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("event_id", .string(String(format: "d0000000-0000-4000-8000-%012d", index))),
            ("event_type", "pbac.agent.politics.check"),
            ("timestamp", .string(ISO8601Timestamp.string(fromMicroseconds: check.at))),
            ("tenant_id", .string(check.tenant)), ("source", "pbac-agent"), ("version", "1.0"),
            ("user", ["id": "u1"]), ("action", "read"), ("resource", ["id": "r1"]), ("result", .bool(check.denial == "none")),
            ("denial_source", .string(check.denial)),
        ]
        if let evalMs = check.evalMs { members.append(("eval_ms", .number(evalMs))) }
        if let cacheHit = check.cacheHit { members.append(("cache_hit", .bool(cacheHit))) }
        return .object(members)
    }

    /// The nearest-rank percentile by its definition: the smallest value with at least p% of the
    /// values at or below it.
    static func bruteForcePercentile(_ values: [Double], _ p: Double) -> Double? {
        values.filter { v in Double(values.filter { $0 <= v }.count) >= p / 100 * Double(values.count) }.min()
    }

    static func close(_ a: Double?, _ b: Double?) -> Bool {
        switch (a, b) {
        case (nil, nil): true
        case (let x?, let y?): abs(x - y) <= 1e-9 * max(1, abs(x), abs(y))
        default: false
        }
    }

    @Test(arguments: StoreKind.allCases, [
        ["count", "sum", "avg", "min", "max"],
        ["count", "sum", "avg", "min", "max", "p50", "p95", "p99", "p99.9", "p100"],
    ])
    func numericAggregatesByGroupAndHour(_ kind: StoreKind, _ names: [String]) async throws {
        let checks = Self.checks(seed: 7, count: 1500)
        try await withStore(kind) { store in
            try await OperationTests.write(store, checks.enumerated().map { Self.event($0, $1) })
            let query = StatsQuery(
                source: .events(eventType: "pbac.agent.politics.check"), field: "eval_ms",
                aggregates: names.map { StatsAggregate(name: $0)! }, groupBy: ["denial_source"],
                intervalMicros: Self.hour, nowMicros: 0)
            let groups = try await store.stats(query)
            var expected: [String: [Check]] = [:]
            for check in checks {
                let bucket = (check.at / Self.hour) * Self.hour
                expected["\(check.denial)|\(bucket)", default: []].append(check)
            }
            #expect(groups.count == expected.count)
            for group in groups {
                guard case .string(let denial)? = group.key.first?.1, let bucket = group.bucketMicros,
                    let rows = expected["\(denial)|\(bucket)"]
                else {
                    Issue.record("unexpected group \(group.json.render())")
                    continue
                }
                let values = rows.compactMap(\.evalMs)
                #expect(group.count == rows.count)
                for (aggregate, value) in group.values {
                    let truth: Double? =
                        switch aggregate.name {
                        case "count": Double(rows.count)
                        case "sum": values.isEmpty ? nil : values.reduce(0, +)
                        case "avg": values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
                        case "min": values.min()
                        case "max": values.max()
                        default: Self.bruteForcePercentile(values, aggregate.percentile!)
                        }
                    #expect(Self.close(value, truth), "\(aggregate) of \(denial) at \(bucket): \(String(describing: value)) vs \(String(describing: truth))")
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases) func rateOfABoolFieldByTenant(_ kind: StoreKind) async throws {
        let checks = Self.checks(seed: 11, count: 800)
        try await withStore(kind) { store in
            try await OperationTests.write(store, checks.enumerated().map { Self.event($0, $1) })
            let groups = try await store.stats(
                StatsQuery(
                    source: .events(eventType: "pbac.agent.politics.check"), field: "cache_hit", aggregates: [.rate],
                    groupBy: ["tenant_id"], nowMicros: 0))
            #expect(groups.count == 2)
            for group in groups {
                guard case .string(let tenant)? = group.key.first?.1 else { continue }
                let known = checks.filter { $0.tenant == tenant }.compactMap(\.cacheHit)
                let truth = Double(known.filter { $0 }.count) / Double(known.count)
                #expect(Self.close(group.values.first { $0.0 == .rate }?.1, truth))
                #expect(group.count == checks.filter { $0.tenant == tenant }.count)
            }
        }
    }

    @Test(arguments: StoreKind.allCases) func operationDurationsByModelMatchTheirPairs(_ kind: StoreKind) async throws {
        var random = Random(seed: 99)
        var events: [JSONValue] = []
        var durations: [String: [Double]] = [:]
        var outcomes: [String: [Bool]] = [:]
        for task in 0..<400 {
            let model = ["sdxl", "flux", "llama"][random.below(3)]
            let start = Double(random.below(7200))
            let milliseconds = Double(random.below(90_000))
            events.append(OperationTests.generationStart(10_000 + task, task: task, at: start, model: model))
            if random.chance(0.85) {
                let succeeded = random.chance(0.9)
                events.append(
                    OperationTests.generationComplete(
                        20_000 + task, task: task, at: start + milliseconds / 1000, result: succeeded, model: model))
                durations[model, default: []].append(milliseconds)
                outcomes[model, default: []].append(succeeded)
            }
        }
        // Arrival order must not matter.
        for i in events.indices.reversed() { events.swapAt(i, random.below(i + 1)) }
        try await withStore(kind) { store in
            try await OperationTests.write(store, events)
            let groups = try await store.stats(
                StatsQuery(
                    source: .operations(kind: "generation"), aggregates: [.count, .p50, .p99, .max], groupBy: ["model"],
                    nowMicros: OperationTests.base))
            #expect(groups.count == 3)
            for group in groups {
                guard case .string(let model)? = group.key.first?.1 else { continue }
                let values = durations[model] ?? []
                #expect(Self.close(group.values.first { $0.0 == .p50 }?.1, Self.bruteForcePercentile(values, 50)))
                #expect(Self.close(group.values.first { $0.0 == .p99 }?.1, Self.bruteForcePercentile(values, 99)))
                #expect(Self.close(group.values.first { $0.0 == .max }?.1, values.max()))
            }
            let success = try await store.stats(
                StatsQuery(source: .operations(kind: "generation"), field: "success", aggregates: [.rate], groupBy: ["model"], nowMicros: 0))
            for group in success {
                guard case .string(let model)? = group.key.first?.1, let known = outcomes[model] else { continue }
                #expect(Self.close(group.values.first { $0.0 == .rate }?.1, Double(known.filter { $0 }.count) / Double(known.count)))
            }
        }
    }

    @Test(arguments: StoreKind.allCases) func lastIsTheNewestValueOfEachGroup(_ kind: StoreKind) async throws {
        var random = Random(seed: 5)
        var events: [JSONValue] = []
        var newest: [String: (Int64, Int64)] = [:]
        for i in 0..<300 {
            let user = String(format: "f0000000-0000-4000-8000-%012d", random.below(7))
            let at = OperationTests.base + Int64(random.below(86_400)) * 1_000_000 + Int64(i)
            let used = Int64(random.below(1 << 30))
            events.append(
                .object([
                    ("event_id", .string(String(format: "e0000000-0000-4000-8000-%012d", i))), ("event_type", "assets.access.upload"),
                    ("timestamp", .string(ISO8601Timestamp.string(fromMicroseconds: at))), ("tenant_id", .string(OperationTests.tenantA)),
                    ("user_id", .string(user)), ("source", "asset-store"), ("version", "1.0"), ("resource_url", "s3://a/b"),
                    ("result", true), ("user_space_size", .integer(used)), ("total_space_size", .integer(1 << 31)),
                ]))
            if at > newest[user]?.0 ?? .min { newest[user] = (at, used) }
        }
        try await withStore(kind) { store in
            try await OperationTests.write(store, events)
            let groups = try await store.stats(
                StatsQuery(
                    source: .events(eventType: "assets.access.upload"), field: "user_space_size", aggregates: [.last, .max],
                    groupBy: ["user_id"], nowMicros: 0))
            #expect(groups.count == newest.count)
            for group in groups {
                guard case .string(let user)? = group.key.first?.1 else { continue }
                #expect(group.values.first { $0.0 == .last }?.1 == Double(newest[user]!.1))
            }
        }
    }

    @Test(arguments: StoreKind.allCases, ["topic", "event_type"])
    func eventsOfEveryTypeCountedByTopicOrTypePerBucket(_ kind: StoreKind, _ groupBy: String) async throws {
        var random = Random(seed: 21)
        var sampler = EventSampler(seed: 21)
        var events: [JSONValue] = []
        var expected: [String: Int] = [:]
        for _ in 0..<2_000 {
            var event = sampler.sample()
            let at = OperationTests.base + Int64(random.below(6 * 3600)) * 1_000_000 + Int64(random.below(1_000_000))
            event["timestamp"] = .string(ISO8601Timestamp.string(fromMicroseconds: at))
            guard case .string(let type)? = event["event_type"] else { continue }
            let group = groupBy == "topic" ? Catalog.builtin.latest(type)!.topic.name : type
            expected["\(group)|\((at / Self.hour) * Self.hour)", default: 0] += 1
            events.append(event)
        }
        try await withStore(kind) { store in
            try await OperationTests.write(store, events)
            let groups = try await store.stats(
                StatsQuery(source: .allEvents, groupBy: [groupBy], intervalMicros: Self.hour, nowMicros: 0))
            var seen: [String: Int] = [:]
            for group in groups {
                guard case .string(let key)? = group.key.first?.1, let bucket = group.bucketMicros else { continue }
                seen["\(key)|\(bucket)"] = group.count
            }
            #expect(seen == expected)
            // Sorted by key, then bucket.
            let order = groups.map { (JSONValue.object($0.key).render(), $0.bucketMicros ?? 0) }
            #expect(zip(order, order.dropFirst()).allSatisfy { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) })
        }
    }

    @Test(arguments: StoreKind.allCases) func badQuestionsGetSpecificErrors(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let cases: [(StatsQuery, String)] = [
                (StatsQuery(source: .events(eventType: "nope"), nowMicros: 0), "not an event type"),
                (StatsQuery(source: .operations(kind: "nope"), nowMicros: 0), "not an operation kind"),
                (StatsQuery(source: .events(eventType: "pbac.agent.politics.check"), field: "action", aggregates: [.p99], nowMicros: 0), "numeric"),
                (StatsQuery(source: .events(eventType: "pbac.agent.politics.check"), field: "eval_ms", aggregates: [.rate], nowMicros: 0), "bool"),
                (StatsQuery(source: .events(eventType: "pbac.agent.politics.check"), aggregates: [.avg], nowMicros: 0), "needs a field"),
                (StatsQuery(source: .events(eventType: "pbac.agent.politics.check"), groupBy: ["model"], nowMicros: 0), "group by"),
            ]
            for (query, words) in cases {
                do {
                    _ = try await store.stats(query)
                    Issue.record("expected an error mentioning \(words)")
                } catch let error as StoreError {
                    #expect(error.code == .badQuery)
                    #expect(error.message.contains(words), "\(error.message)")
                }
            }
        }
    }
}
