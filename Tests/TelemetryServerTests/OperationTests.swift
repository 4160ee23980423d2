import Foundation
import Logging
import TelemetryCatalog
import TelemetryStore
import Testing

/// Hand-made lifecycles through each real store (SQLite, ClickHouse): pairing in any order, duplicates, tenants,
/// stuck and late, failures, restarts.
@Suite struct OperationTests {
    static let tenantA = "11111111-1111-4111-8111-111111111111"
    static let tenantB = "22222222-2222-4222-8222-222222222222"
    static let node = "33333333-3333-4333-8333-333333333333"
    static let base: Int64 = 1_795_000_000_000_000

    /// Validates and writes `events` in one batch; returns how many were stored.
    @discardableResult
    static func write(_ store: any EventStore, _ events: [JSONValue]) async throws -> Int {
        var validator = EventValidator()
        let incoming = try events.map { event -> IncomingEvent in
            guard case .valid(let normalized) = validator.validate(event.render()) else {
                Issue.record("invalid test event: \(validator.validate(event.render()).issues)")
                throw CancellationError()
            }
            return IncomingEvent(event: normalized, receivedMicros: base, requestID: UUID().uuidString.lowercased())
        }
        return try await store.write(WriteBatch(events: incoming)).stored
    }

    static func id(_ n: Int) -> String { String(format: "a0000000-0000-4000-8000-%012d", n) }
    static func task(_ n: Int) -> String { String(format: "b0000000-0000-4000-8000-%012d", n) }
    static func time(_ seconds: Double) -> JSONValue {
        .string(ISO8601Timestamp.string(fromMicroseconds: base + Int64((seconds * 1_000_000).rounded())))
    }

    static func envelope(_ id: Int, _ type: String, at seconds: Double, tenant: String = tenantA) -> [(String, JSONValue)] {
        [
            ("event_id", .string(Self.id(id))), ("event_type", .string(type)), ("timestamp", time(seconds)),
            ("tenant_id", .string(tenant)), ("source", "test"), ("version", "1.0"),
        ]
    }

    static func generationStart(_ id: Int, task: Int, at seconds: Double, model: String = "sdxl", tenant: String = tenantA) -> JSONValue {
        .object(
            envelope(id, "xumi.generation.start", at: seconds, tenant: tenant) + [
                ("model", .string(model)), ("task_id", .string(Self.task(task))), ("node_id", .string(node)),
            ])
    }

    static func generationComplete(
        _ id: Int, task: Int, at seconds: Double, result: Bool = true, model: String = "sdxl", tenant: String = tenantA,
        queuedUntil: Double? = nil
    ) -> JSONValue {
        var members =
            envelope(id, "xumi.generation.complete", at: seconds, tenant: tenant) + [
                ("model", .string(model)), ("result", .bool(result)), ("task_id", .string(Self.task(task))),
                ("user_id", .string(node)), ("node_id", .string(node)),
            ]
        if !result { members.append(("detail", "CUDA out of memory")) }
        if let queuedUntil { members.append(("start_generation", time(queuedUntil))) }
        return .object(members)
    }

    static func operations(_ store: any EventStore, kind: String? = nil, status: OperationStatus? = nil, now: Int64 = base)
        async throws -> [TelemetryStore.Operation]
    {
        try await store.operations(OperationQuery(kind: kind, status: status, limit: 1000, nowMicros: now)).operations
    }

    @Test(arguments: StoreKind.allCases) func startThenCompletionPairsWithDurationAndSpans(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [Self.generationStart(1, task: 1, at: 0)])
            var ops = try await Self.operations(store)
            #expect(ops.count == 1)
            #expect(ops[0].status == .running)
            #expect(ops[0].durationMilliseconds == nil)
            try await Self.write(store, [Self.generationComplete(2, task: 1, at: 12.5, queuedUntil: 2)])
            ops = try await Self.operations(store)
            #expect(ops.count == 1)
            let op = try #require(ops.first)
            #expect(op.status == .succeeded)
            #expect(op.durationMilliseconds == 12_500)
            #expect(op.key == Self.task(1))
            #expect(op.startEventID?.description == Self.id(1))
            #expect(op.completeEventID?.description == Self.id(2))
            let attributes = Dictionary(uniqueKeysWithValues: op.attributes)
            #expect(attributes["queue_ms"] == .number(2000))
            #expect(attributes["run_ms"] == .number(10_500))
            #expect(attributes["model"] == .string("sdxl"))
        }
    }

    @Test(arguments: StoreKind.allCases) func completionBeforeStartPairsWhenTheStartArrives(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [Self.generationComplete(2, task: 7, at: 30, result: false, queuedUntil: 5)])
            var ops = try await Self.operations(store)
            #expect(ops.count == 1)
            #expect(ops[0].status == .failed)
            #expect(ops[0].startedMicros == nil)
            #expect(ops[0].durationMilliseconds == nil)
            try await Self.write(store, [Self.generationStart(1, task: 7, at: 1)])
            ops = try await Self.operations(store)
            #expect(ops.count == 1)
            #expect(ops[0].status == .failed)
            #expect(ops[0].durationMilliseconds == 29_000)
            let attributes = Dictionary(uniqueKeysWithValues: ops[0].attributes)
            #expect(attributes["queue_ms"] == .number(4000))
            #expect(attributes["run_ms"] == .number(25_000))
            #expect(attributes["detail"] == .string("CUDA out of memory"))
        }
    }

    @Test(arguments: StoreKind.allCases) func bothHalvesInOneBatchPairInEitherOrder(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [
                Self.generationComplete(10, task: 1, at: 3), Self.generationStart(11, task: 1, at: 1),
                Self.generationStart(12, task: 2, at: 1), Self.generationComplete(13, task: 2, at: 4),
            ])
            let ops = try await Self.operations(store)
            #expect(ops.count == 2)
            #expect(Set(ops.map(\.durationMilliseconds)) == [2000, 3000])
            #expect(ops.allSatisfy { $0.status == .succeeded })
        }
    }

    @Test(arguments: StoreKind.allCases) func duplicatesChangeNothing(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let start = Self.generationStart(1, task: 1, at: 0)
            let complete = Self.generationComplete(2, task: 1, at: 4)
            #expect(try await Self.write(store, [start, start]) == 1)
            #expect(try await Self.write(store, [complete, start, complete]) == 1)
            #expect(try await Self.write(store, [complete]) == 0)
            let ops = try await Self.operations(store)
            #expect(ops.count == 1)
            #expect(ops[0].durationMilliseconds == 4000)
        }
    }

    @Test(arguments: StoreKind.allCases) func neverPairsAcrossTenants(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [
                Self.generationStart(1, task: 1, at: 0, tenant: Self.tenantA),
                Self.generationComplete(2, task: 1, at: 5, tenant: Self.tenantB),
                Self.generationStart(3, task: 2, at: 0, tenant: Self.tenantB),
                Self.generationStart(4, task: 2, at: 0, tenant: Self.tenantA),
                Self.generationComplete(5, task: 2, at: 9, tenant: Self.tenantA),
            ])
            let ops = try await Self.operations(store)
            #expect(ops.count == 4)
            let a1 = ops.first { $0.key == Self.task(1) && $0.tenantID.description == Self.tenantA }
            let b1 = ops.first { $0.key == Self.task(1) && $0.tenantID.description == Self.tenantB }
            #expect(a1?.status == .running)
            #expect(b1?.status == .succeeded && b1?.startedMicros == nil)
            let a2 = ops.first { $0.key == Self.task(2) && $0.tenantID.description == Self.tenantA }
            let b2 = ops.first { $0.key == Self.task(2) && $0.tenantID.description == Self.tenantB }
            #expect(a2?.durationMilliseconds == 9000)
            #expect(b2?.status == .running)
            // By status, the same keys in two tenants stay two operations.
            let running = try await Self.operations(store, status: .running)
            #expect(Set(running.map { "\($0.tenantID)|\($0.key ?? "")" }) == ["\(Self.tenantA)|\(Self.task(1))", "\(Self.tenantB)|\(Self.task(2))"])
            let succeeded = try await Self.operations(store, status: .succeeded)
            #expect(Set(succeeded.map { "\($0.tenantID)|\($0.key ?? "")" }) == ["\(Self.tenantB)|\(Self.task(1))", "\(Self.tenantA)|\(Self.task(2))"])
            let tenantOnly = try await store.operations(
                OperationQuery(kind: "generation", status: .running, tenantID: Self.tenantB, limit: 10, nowMicros: Self.base))
            #expect(tenantOnly.operations.map { $0.key } == [Self.task(2)])
        }
    }

    @Test(arguments: StoreKind.allCases) func stuckAfterTheTimeoutAndLateCompletionStillCompletes(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [Self.generationStart(1, task: 1, at: 0), Self.generationStart(2, task: 2, at: 0)])
            let later = Self.base + 16 * 60 * 1_000_000  // past generation's 15 minutes
            #expect(try await Self.operations(store, now: Self.base + 60_000_000).allSatisfy { $0.status == .running })
            #expect(try await Self.operations(store, status: .stuck, now: later).count == 2)
            #expect(try await Self.operations(store, status: .running, now: later).isEmpty)
            #expect(try await store.stuckOperationCounts(nowMicros: later)["generation"] == 2)
            #expect(try await store.stuckOperationCounts(nowMicros: later)["pod_lifetime"] == 0)
            try await Self.write(store, [Self.generationComplete(3, task: 1, at: 20 * 60)])
            let ops = try await Self.operations(store, now: later)
            #expect(ops.first { $0.key == Self.task(1) }?.status == .succeeded)
            #expect(ops.first { $0.key == Self.task(1) }?.durationMilliseconds == 1_200_000)
            #expect(ops.first { $0.key == Self.task(2) }?.status == OperationStatus.stuck)
            #expect(try await store.stuckOperationCounts(nowMicros: later)["generation"] == 1)
        }
    }

    @Test(arguments: StoreKind.allCases) func podDeployPairsByPrevisionEventIDElseResource(_ kind: StoreKind) async throws {
        let resource1 = "c0000000-0000-4000-8000-000000000001"
        let resource2 = "c0000000-0000-4000-8000-000000000002"
        func deploy(_ id: Int, _ resource: String, at seconds: Double) -> JSONValue {
            .object(
                Self.envelope(id, "kuber.deploy.start", at: seconds) + [
                    ("result", true), ("resource_Id", .string(resource)), ("hardware", "nvidia-h100-80gb"),
                ])
        }
        func deployed(_ id: Int, _ resource: String, at seconds: Double, prevision: Int?, result: Bool = true) -> JSONValue {
            var members =
                Self.envelope(id, "kuber.deploy.start.complete", at: seconds) + [
                    ("result", .bool(result)), ("resource_Id", .string(resource)), ("hardware", "nvidia-h100-80gb"),
                ]
            if let prevision { members.append(("prevision_event_id", .string(Self.id(prevision)))) }
            return .object(members)
        }
        func freed(_ id: Int, _ resource: String, at seconds: Double) -> JSONValue {
            .object(Self.envelope(id, "kuber.deploy.free.complete", at: seconds) + [("result", true), ("resource_id", .string(resource))])
        }
        try await withStore(kind) { store in
            // Completion naming its start by event id arrives first; the other pairs by resource.
            try await Self.write(store, [
                deployed(2, resource1, at: 40, prevision: 1),
                deploy(1, resource1, at: 10),
                deploy(3, resource2, at: 10),
                deployed(4, resource2, at: 70, prevision: nil),
            ])
            let deploys = try await Self.operations(store, kind: "pod_deploy")
            #expect(deploys.count == 2)
            #expect(deploys.first { $0.key == resource1 }?.durationMilliseconds == 30_000)
            #expect(deploys.first { $0.key == resource2 }?.durationMilliseconds == 60_000)
            // Two successful deploys start two pod lifetimes; freeing one ends it.
            try await Self.write(store, [freed(5, resource1, at: 3640)])
            let lifetimes = try await Self.operations(store, kind: "pod_lifetime", now: Self.base + 86_400_000_000)
            #expect(lifetimes.count == 2)
            #expect(lifetimes.first { $0.key == resource1 }?.durationMilliseconds == 3_600_000)
            // A pod lifetime never gets stuck.
            #expect(lifetimes.first { $0.key == resource2 }?.status == .running)
            let attributes = Dictionary(uniqueKeysWithValues: lifetimes.first { $0.key == resource1 }?.attributes ?? [])
            #expect(attributes["hardware"] == .string("nvidia-h100-80gb"))
        }
    }

    @Test(arguments: StoreKind.allCases) func aFailedDeployStartsNoLifetime(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let resource = "c0000000-0000-4000-8000-000000000009"
            try await Self.write(store, [
                .object(
                    Self.envelope(1, "kuber.deploy.start.complete", at: 5) + [
                        ("result", false), ("resource_id", .string(resource)), ("hardware", "nvidia-l4"),
                    ])
            ])
            #expect(try await Self.operations(store, kind: "pod_lifetime").isEmpty)
            #expect(try await Self.operations(store, kind: "pod_deploy").first?.status == .failed)
        }
    }

    @Test(arguments: StoreKind.allCases) func weightsLoadPairsByOriginEventID(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Self.write(store, [
                .object(Self.envelope(1, "xumi.weights.load.start", at: 0) + [("model", "flux"), ("node_id", .string(Self.node)), ("storage_type", "ceph")]),
                .object(
                    Self.envelope(2, "xumi.weights.load.complete", at: 8) + [
                        ("model", "flux"), ("origin_event_id", .string(Self.id(1))), ("result", true), ("speed", .number(1.5e9)),
                        ("size", 12_000_000_000), ("node_id", .string(Self.node)),
                    ]),
            ])
            let op = try #require(try await Self.operations(store, kind: "weights_load").first)
            #expect(op.durationMilliseconds == 8000)
            let attributes = Dictionary(uniqueKeysWithValues: op.attributes)
            #expect(attributes["storage_type"] == .string("ceph"))
            #expect(attributes["speed"] == .number(1.5e9))
            #expect(attributes["size"] == .integer(12_000_000_000))
        }
    }

    @Test(arguments: StoreKind.allCases) func aRestartInTheMiddleOfASequenceLosesNothing(_ kind: StoreKind) async throws {
        let name = reopenableStoreName(kind)
        defer { removeReopenableStore(kind, name) }
        _ = try await withStore(kind, name: name) { store in
            try await Self.write(store, [Self.generationStart(1, task: 1, at: 0), Self.generationComplete(4, task: 2, at: 9)])
        }
        try await withStore(kind, name: name) { store in
            try await Self.write(store, [Self.generationComplete(2, task: 1, at: 3), Self.generationStart(3, task: 2, at: 1)])
            let ops = try await Self.operations(store)
            #expect(ops.count == 2)
            #expect(Set(ops.compactMap(\.durationMilliseconds)) == [3000, 8000])
        }
    }

    @Test(arguments: StoreKind.allCases) func listingFiltersAndPages(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var events: [JSONValue] = []
            for i in 0..<25 {
                let model = i % 2 == 0 ? "sdxl" : "flux"
                events.append(Self.generationStart(100 + i, task: i, at: Double(i), model: model))
                if i % 5 != 0 {
                    events.append(Self.generationComplete(200 + i, task: i, at: Double(i) + 2, result: i % 3 != 0, model: model))
                }
            }
            for i in 0..<9 {
                // Weights loads interleaved in time, some starting at the same instant as a generation.
                events.append(
                    .object(
                        Self.envelope(300 + i, "xumi.weights.load.start", at: Double(i * 3)) + [
                            ("model", "flux"), ("node_id", .string(Self.node)),
                        ]))
            }
            try await Self.write(store, events)
            var seen: [String] = []
            var cursor: OperationCursor? = nil
            repeat {
                let page = try await store.operations(OperationQuery(kind: "generation", limit: 7, before: cursor, nowMicros: Self.base))
                seen += page.operations.compactMap(\.key)
                cursor = page.next
            } while cursor != nil
            #expect(seen.count == 25 && Set(seen).count == 25)
            // Across kinds: every operation once, newest start first.
            var everything: [TelemetryStore.Operation] = []
            repeat {
                let page = try await store.operations(OperationQuery(limit: 4, before: cursor, nowMicros: Self.base))
                everything += page.operations
                cursor = page.next.flatMap { OperationCursor($0.description) }
            } while cursor != nil
            #expect(everything.count == 34)
            #expect(Set(everything.map(\.sequence)).count == 34)
            #expect(zip(everything, everything.dropFirst()).allSatisfy { ($0.atMicros, $0.sequence) > ($1.atMicros, $1.sequence) })
            let failed = try await Self.operations(store, status: .failed)
            #expect(failed.count == (0..<25).filter { $0 % 5 != 0 && $0 % 3 == 0 }.count)
            let flux = try await store.operations(
                OperationQuery(attributes: [FieldFilter(field: "model", value: "flux")], limit: 100, nowMicros: Self.base))
            #expect(flux.operations.count == 12 + 9, "twelve generations and nine weights loads of flux")
            await #expect(throws: StoreError.self) {
                try await store.operations(OperationQuery(attributes: [FieldFilter(field: "nope", value: "1")], nowMicros: Self.base))
            }
            await #expect(throws: StoreError.self) { try await store.operations(OperationQuery(kind: "nope", nowMicros: Self.base)) }
        }
    }
}
