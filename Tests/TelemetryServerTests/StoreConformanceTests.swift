import Foundation
import TelemetryCatalog
import TelemetryStore
import Testing

/// The store contract, run against every store (SQLite and ClickHouse): ingest, dedupe, filters,
/// pagination, rejections, retention. The operations and stats halves of the suite are in
/// OperationTests and StatsTests, run the same way.
@Suite struct StoreConformanceTests {
    static let base: Int64 = 1_795_000_000_000_000
    static let day: Int64 = 86_400_000_000

    /// `count` sampled events of every type, a few seconds apart.
    static func sample(_ count: Int, seed: UInt64, startMicros: Int64 = base) -> [JSONValue] {
        var sampler = EventSampler(seed: seed, startMicros: startMicros)
        return (0..<count).map { _ in sampler.sample() }
    }

    static func incoming(_ events: [JSONValue], receivedMicros: Int64 = base) throws -> [IncomingEvent] {
        var validator = EventValidator()
        return try events.map { event in
            guard case .valid(let normalized) = validator.validate(event.render()) else {
                Issue.record("invalid test event: \(validator.validate(event.render()).issues)")
                throw CancellationError()
            }
            return IncomingEvent(event: normalized, receivedMicros: receivedMicros, requestID: "req-1")
        }
    }

    static func string(_ value: JSONValue?) -> String? {
        if case .string(let text)? = value { return text }
        return nil
    }

    @Test(arguments: StoreKind.allCases) func everyEventReadsBackAsStored(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let events = Self.sample(300, seed: 3)
            let batch = try Self.incoming(events)
            let outcome = try await store.write(WriteBatch(events: batch))
            #expect(outcome.stored == 300)
            #expect(Set(outcome.sequences.compactMap { $0 }).count == 300, "every event has a sequence number of its own")
            #expect(try await store.counts().events == 300)
            #expect(try await store.latestSequence() == outcome.sequences.compactMap { $0 }.max())
            #expect(try await store.sizeBytes() > 0)
            for incoming in batch.prefix(40) {
                let found = try #require(try await store.event(id: incoming.event.eventID, tenant: nil))
                #expect(found.json == incoming.event.jsonString)
                // Restricted to another tenant, it is not there.
                let other = UUIDValue("99999999-9999-4999-8999-999999999999")!
                #expect(try await store.event(id: incoming.event.eventID, tenant: other) == nil)
                #expect(try await store.event(id: incoming.event.eventID, tenant: incoming.event.tenantID) != nil)
            }
            #expect(try await store.event(id: UUIDValue("88888888-8888-4888-8888-888888888888")!, tenant: nil) == nil)
        }
    }

    @Test(arguments: StoreKind.allCases) func dedupeWithinAcrossBatchesAndAcrossReopening(_ kind: StoreKind) async throws {
        let name = reopenableStoreName(kind)
        defer { removeReopenableStore(kind, name) }
        let events = Self.sample(50, seed: 5)
        try await withStore(kind, name: name) { store in
            // The batch holds its first ten events twice.
            let outcome = try await store.write(WriteBatch(events: try Self.incoming(events + events.prefix(10))))
            #expect(outcome.stored == 50)
            #expect(outcome.duplicates == 10)
            #expect(outcome.sequences.suffix(10).allSatisfy { $0 == nil }, "the first copy is the one stored")
            let again = try await store.write(WriteBatch(events: try Self.incoming(Array(events.prefix(20)))))
            #expect(again.stored == 0 && again.duplicates == 20)
        }
        try await withStore(kind, name: name) { store in
            let more = Self.sample(60, seed: 5)  // the same 50, then 10 new
            let outcome = try await store.write(WriteBatch(events: try Self.incoming(more)))
            #expect(outcome.duplicates == 50)
            #expect(outcome.stored == 10)
            #expect(try await store.counts().events == 60)
            let page = try await store.events(EventQuery(limit: 1000))
            #expect(page.events.count == 60)
            #expect(Set(page.events.map(\.json)).count == 60)
        }
    }

    @Test(arguments: StoreKind.allCases) func filtersByEnvelopeAndCatalogFields(_ kind: StoreKind) async throws {
        let events = Self.sample(400, seed: 9)
        let batch = try Self.incoming(events)
        let type = "xumi.generation.complete"
        let topic = Catalog.builtin.latest(type)!.topic.name
        let typesOfTopic = Set(Catalog.builtin.events.filter { $0.topic.name == topic }.map(\.eventType))
        let tenant = try #require(Self.string(events[0]["tenant_id"]))
        let source = try #require(Self.string(events[1]["source"]))
        let times = events.compactMap { Self.string($0["timestamp"]).flatMap(ISO8601Timestamp.microseconds) }.sorted()
        let (since, until) = (times[100], times[300])
        let completions = events.filter { Self.string($0["event_type"]) == type }
        let model = try #require(completions.compactMap { Self.string($0["model"]) }.first)
        // (query, expected count)
        let cases: [(EventQuery, Int)] = [
            (EventQuery(eventType: type), completions.count),
            (EventQuery(topic: topic), events.filter { typesOfTopic.contains(Self.string($0["event_type"]) ?? "") }.count),
            (EventQuery(tenantID: tenant.uppercased()), events.filter { Self.string($0["tenant_id"]) == tenant }.count),
            (EventQuery(source: source), events.filter { Self.string($0["source"]) == source }.count),
            (EventQuery(since: since, until: until), times.filter { $0 >= since && $0 < until }.count),
            (EventQuery(eventType: type, fields: [FieldFilter(field: "model", value: model)]),
             completions.filter { Self.string($0["model"]) == model }.count),
            (EventQuery(eventType: type, fields: [FieldFilter(field: "result", value: "false")]),
             completions.filter { $0["result"] == .bool(false) }.count),
        ]
        try await withStore(kind) { store in
            _ = try await store.write(WriteBatch(events: batch))
            for (query, expected) in cases {
                let found = try await Self.count(store, query)
                #expect(found == expected, "\(query)")
            }
            let bad = [FieldFilter(field: "nope", value: "1"), FieldFilter(field: "result", value: "maybe")]
            for filter in bad {
                await #expect(throws: StoreError.self) { try await store.events(EventQuery(fields: [filter])) }
            }
        }
    }

    static func count(_ store: any TestableStore, _ query: EventQuery) async throws -> Int {
        var query = query
        query.limit = 10_000
        return try await store.events(query).events.count
    }

    @Test(arguments: StoreKind.allCases) func pagesMissAndRepeatNothingNewestFirst(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var batches: [[Int64]] = []
            for seed in 0..<5 {
                let outcome = try await store.write(WriteBatch(events: try Self.incoming(Self.sample(50, seed: 100 + UInt64(seed)))))
                batches.append(outcome.sequences.compactMap { $0 })
            }
            // Within a batch the store picks the order; a later write gets larger numbers.
            #expect(zip(batches, batches.dropFirst()).allSatisfy { $0.max()! < $1.min()! })
            let sequences = batches.flatMap { $0 }.sorted()
            #expect(Set(sequences).count == 250)
            var seen: [Int64] = []
            var before: Int64? = nil
            repeat {
                let page = try await store.events(EventQuery(limit: 40, before: before))
                seen += page.events.map(\.sequence)
                before = page.nextBefore
            } while before != nil
            #expect(seen == sequences.reversed())
            // Following: oldest first after a position.
            let after = try await store.events(EventQuery(limit: 30, after: sequences[99]))
            #expect(after.events.map(\.sequence) == Array(sequences[100..<130]))
        }
    }

    @Test(arguments: StoreKind.allCases) func rejectionsKeepTheirBytesAndReasons(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tenant = "11111111-1111-4111-8111-111111111111"
            // Bytes that are not UTF-8, with tabs, newlines, a backslash and a NUL.
            let odd: [UInt8] = Array("{\"event_type\":\"x\",\"a\":\"".utf8) + [0xFF, 0xFE, 0x09, 0x0A, 0x5C, 0x00, 0x22, 0x7D]
            var rejected: [RejectedEvent] = []
            for index in 0..<12 {
                let issues = [
                    ValidationIssue(field: "timestamp", code: .badTimestamp, message: "timestamp is not RFC 3339: \"yesterday\""),
                    ValidationIssue(field: index % 2 == 0 ? "model" : "task_id", code: index % 2 == 0 ? .missing : .badUUID, message: "m\(index)"),
                ]
                rejected.append(
                    RejectedEvent(
                        raw: index == 0 ? odd : Array("{\"i\":\(index)}".utf8), issues: issues, eventType: "xumi.generation.start",
                        eventID: "not-a-uuid-\(index)", tenantID: index < 8 ? tenant : nil, index: index,
                        receivedMicros: Self.base + Int64(index), requestID: "req-\(index / 4)"))
            }
            _ = try await store.write(WriteBatch(rejected: rejected))
            #expect(try await store.counts().rejected == 12)
            let all = try await store.rejected(RejectedQuery(limit: 100)).rejected
            #expect(all.count == 12)
            #expect(all.map(\.index) == Array((0..<12).reversed()), "newest first")
            let first = try #require(all.last)
            #expect(first.raw == odd)
            #expect(first.issues == rejected[0].issues)
            #expect(first.eventID == "not-a-uuid-0" && first.requestID == "req-0" && first.tenantID == tenant)
            #expect(try await store.rejected(RejectedQuery(tenantID: tenant, limit: 100)).rejected.count == 8)
            #expect(try await store.rejected(RejectedQuery(code: "bad_uuid", limit: 100)).rejected.count == 6)
            #expect(try await store.rejected(RejectedQuery(code: "bad_u", limit: 100)).rejected.isEmpty, "codes match whole")
            var paged: [Int] = []
            var before: Int64? = nil
            repeat {
                let page = try await store.rejected(RejectedQuery(limit: 5, before: before))
                paged += page.rejected.map(\.index)
                before = page.nextBefore
            } while before != nil
            #expect(paged == Array((0..<12).reversed()))
        }
    }

    @Test(arguments: StoreKind.allCases) func retentionRemovesOldEventsAndKeepsRecentOnes(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let now = Self.base + 41 * Self.day
            let old = Self.sample(80, seed: 12, startMicros: Self.base)  // 41 days before now
            let recent = Self.sample(70, seed: 13, startMicros: now - Self.day)
            _ = try await store.write(WriteBatch(events: try Self.incoming(old + recent)))
            var deleted = 0
            while true {
                let n = try await store.deleteEvents(before: now - 30 * Self.day, limit: 25)
                if n == 0 { break }
                deleted += n
            }
            #expect(deleted == 80)
            #expect(try await store.counts().events == 70)
            let left = try await store.events(EventQuery(limit: 1000)).events.map(\.json)
            let recentJSON = Set(try Self.incoming(recent).map(\.event.jsonString))
            #expect(Set(left) == recentJSON)
            // An old event sent again after its retention is stored again, not a duplicate.
            let outcome = try await store.write(WriteBatch(events: try Self.incoming(Array(old.prefix(3)))))
            #expect(outcome.stored == 3)
        }
    }
}
