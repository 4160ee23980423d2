import Foundation
import TelemetryClickHouse
import Logging
import ServiceLifecycle
import Synchronization
import TelemetryCatalog
import TelemetryClient
import TelemetryEvents
import TelemetryPipeline
import TelemetryServer
import TelemetryStore
import Testing

/// The SDK's emitter against a real collector on loopback (and against no collector at all).
@Suite struct EmitterTests {
    static let tenant = UUID(uuidString: "11111111-1111-4111-8111-111111111111")!
    static let node = UUID(uuidString: "33333333-3333-4333-8333-333333333333")!

    static func configuration(port: Int, spool: String? = nil) -> TelemetryEmitterConfiguration {
        var configuration = TelemetryEmitterConfiguration(port: port, tenantID: tenant, source: "emitter-test")
        configuration.spoolDirectory = spool
        configuration.flushInterval = .milliseconds(50)
        configuration.initialBackoff = .milliseconds(20)
        configuration.maxBackoff = .milliseconds(200)
        configuration.environment = EventEnvironment(nodeID: node, vmType: "g5.2xlarge", hostName: "gpu-test", storageType: "nvme")
        return configuration
    }

    static var logger: Logger {
        var logger = Logger(label: "test.emitter")
        logger.logLevel = .critical
        return logger
    }

    /// Runs `emitter` as a service while `body` runs, then shuts it down gracefully.
    static func running<T: Sendable>(_ emitter: TelemetryEmitter, _ body: @Sendable () async throws -> T) async throws -> T {
        let group = ServiceGroup(configuration: .init(services: [emitter], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let result = try await body()
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    /// Waits for `condition`, checked every 20 ms. The default is generous: in a full test run
    /// this suite shares Swift's cooperative pool with the Kafka and ClickHouse suites, and its
    /// tests, ~1 s alone, have taken 40-55 s there.
    static func waitUntil(_ seconds: Double = 90, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while try await !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func temporaryDirectory() -> String {
        TestScratch.path("emitter-\(UUID().uuidString)").path
    }

    /// A free loopback port, found by binding port 0.
    /// A loopback port for a collector started later, where no server binding port 0 can take it
    /// in the meantime (see `LoopbackPorts`).
    static func freePort() throws -> Int {
        guard let port = LoopbackPorts.free(in: LoopbackPorts.reserved) else { throw CancellationError() }
        return port
    }

    /// Every stored event id, oldest first.
    static func storedIDs(_ store: any EventStore) async throws -> [String] {
        var ids: [String] = []
        var before: Int64? = nil
        repeat {
            let page = try await store.events(EventQuery(limit: 1000, before: before))
            for event in page.events {
                let object = try JSONSerialization.jsonObject(with: Data(event.json.utf8)) as? [String: Any]
                ids.append(object?["event_id"] as? String ?? "")
            }
            before = page.nextBefore
        } while before != nil
        return ids.reversed()
    }

    static func event(_ i: Int) -> any TelemetryEvent {
        switch i % 3 {
        case 0: GenerationStarted(model: "sdxl-1.0", taskID: UUID())
        case 1: PolicyChecked(user: ["id": EventJSON.string("u\(i)")], action: "read", resource: ["id": EventJSON.string("r\(i)")], result: i % 7 != 0, evalMs: 0.5)
        default: AssetDownloaded(resourceURL: "s3://assets/\(i).png", objectSize: Int64(i), result: true, avgSpeed: 1e6)
        }
    }

    static func emit(_ emitter: TelemetryEmitter, _ i: Int) -> String {
        func send<E: TelemetryEvent>(_ event: E) -> String { emitter.emit(event).envelope.eventID!.uuidString.lowercased() }
        return send(event(i))
    }

    @Test func collectorDownThenUpDeliversEverythingOnceInOrder() async throws {
        let port = try Self.freePort()
        let spool = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: spool) }
        var configuration = Self.configuration(port: port, spool: spool)
        configuration.batchSize = 200
        let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
        try await Self.running(emitter) {
            let emitted = (0..<2_500).map { Self.emit(emitter, $0) }
            // Nobody listens: the batches go to the spool, none is lost.
            try await Self.waitUntil { emitter.counts.spooled == 2_500 }
            #expect(emitter.counts.sent == 0)
            // At least 13 batches of at most 200 (fewer events a batch when the sending loop
            // wakes while the test is still emitting).
            let batches = try FileManager.default.contentsOfDirectory(atPath: spool).count
            #expect(batches >= 13)
            try await TestCollector.run(configure: { $0.port = port }) { collector in
                try await Self.waitUntil { emitter.counts.sent == 2_500 }
                let stored = try await Self.storedIDs(collector.store)
                #expect(stored.count == 2_500, "every event exactly once")
                #expect(stored == emitted, "in the order they were emitted")
                #expect(emitter.counts.retried >= batches)
                #expect(emitter.counts.dropped == 0)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: spool).isEmpty)
        }
    }

    /// Many emitters in one process (a service with many components, or the demo) each keep a
    /// connection waiting on the collector; none may starve the others, nor a collector running
    /// in the same process.
    @Test func manyEmittersInOneProcessAllDeliverPromptly() async throws {
        try await TestCollector.run { collector in
            let emitters = try (0..<40).map { _ in
                try TelemetryEmitter(configuration: Self.configuration(port: collector.port), logger: Self.logger)
            }
            let group = ServiceGroup(configuration: .init(services: emitters, logger: Self.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                for round in 0..<5 {
                    for (n, emitter) in emitters.enumerated() { _ = Self.emit(emitter, round * 100 + n) }
                    try await Task.sleep(for: .milliseconds(60))
                }
                let started = ContinuousClock.now
                try await Self.waitUntil(20) { emitters.allSatisfy { $0.counts.sent == 5 } }
                let waited = ContinuousClock.now - started
                // The stall this guards against took 39 s; a loaded two-core machine running the
                // whole suite took 5.2 s once, against 0.5 s alone.
                #expect(waited < .seconds(15), "delivered in \(waited), well past the 50 ms flush interval")
                #expect(emitters.allSatisfy { $0.counts.retried == 0 }, "no request failed")
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(try await collector.store.counts().events == 200)
        }
    }

    /// The collector closes idle keep-alive connections (its header timeout); the next batch goes
    /// on a new connection at once, not after a failed attempt and a backoff.
    @Test func anIdleConnectionClosedByTheCollectorIsReopenedWithoutARetry() async throws {
        try await TestCollector.run(configure: { $0.headerTimeout = .milliseconds(300) }) { collector in
            let emitter = try TelemetryEmitter(configuration: Self.configuration(port: collector.port), logger: Self.logger)
            try await Self.running(emitter) {
                for i in 0..<5 { _ = Self.emit(emitter, i) }
                try await Self.waitUntil { emitter.counts.sent == 5 }
                try await Task.sleep(for: .milliseconds(900))
                for i in 5..<10 { _ = Self.emit(emitter, i) }
                try await Self.waitUntil { emitter.counts.sent == 10 }
            }
            #expect(emitter.counts.retried == 0)
        }
    }

    @Test func aFullSpoolDropsTheOldestAndCountsThem() async throws {
        let port = try Self.freePort()
        let spool = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: spool) }
        var configuration = Self.configuration(port: port, spool: spool)
        configuration.batchSize = 100
        configuration.gzip = false
        configuration.spoolMaxBytes = 200_000
        let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
        try await Self.running(emitter) {
            // Every emit returns at once, collector or not.
            let emitted = (0..<3_000).map { Self.emit(emitter, $0) }
            #expect(emitter.counts.queued == 3_000)
            try await Self.waitUntil { emitter.queuedCount == 0 && emitter.counts.spooled == 3_000 }
            let dropped = emitter.counts.dropped
            #expect(dropped > 0)
            let onDisk = try FileManager.default.contentsOfDirectory(atPath: spool).reduce(0) { total, name in
                total + ((try? FileManager.default.attributesOfItem(atPath: spool + "/" + name)[.size] as? Int) ?? 0)
            }
            #expect(onDisk <= 200_000)
            try await TestCollector.run(configure: { $0.port = port }) { collector in
                try await Self.waitUntil { emitter.counts.sent == 3_000 - dropped }
                let stored = try await Self.storedIDs(collector.store)
                #expect(stored == Array(emitted.suffix(3_000 - dropped)), "the newest survive, the oldest were dropped")
            }
        }
    }

    @Test func aFullQueueDropsWithoutBlocking() throws {
        var configuration = Self.configuration(port: 9)
        configuration.queueCapacity = 10
        let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
        for i in 0..<25 { _ = Self.emit(emitter, i) }
        #expect(emitter.counts.queued == 10)
        #expect(emitter.counts.dropped == 15)
        #expect(emitter.queuedCount == 10)
    }

    @Test func gracefulShutdownFlushesWhatIsQueued() async throws {
        try await TestCollector.run { collector in
            var configuration = Self.configuration(port: collector.port)
            configuration.flushInterval = .seconds(3600)
            configuration.batchSize = 10_000
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            try await Self.running(emitter) {
                for i in 0..<300 { _ = Self.emit(emitter, i) }
                try await Task.sleep(for: .milliseconds(100))
                #expect(emitter.counts.sent == 0, "nothing is due before the shutdown")
            }
            #expect(emitter.counts.sent == 300)
            #expect(try await collector.store.counts().events == 300)
        }
    }

    @Test func theEnvelopeAndEnvironmentAreFilled() async throws {
        try await TestCollector.run { collector in
            let emitter = try TelemetryEmitter(configuration: Self.configuration(port: collector.port), logger: Self.logger)
            let user = UUID()
            let session = UUID()
            let ids = try await Self.running(emitter) {
                let ids = (0..<50).map { _ in
                    EventContext.$userID.withValue(user) {
                        EventContext.$sessionID.withValue(session) {
                            emitter.emit(GenerationStarted(model: "flux-1-dev", taskID: UUID())).envelope.eventID!
                        }
                    }
                }
                try await Self.waitUntil { emitter.counts.sent == 50 }
                return ids
            }
            #expect(ids == ids.sorted { $0.uuidString.lowercased() < $1.uuidString.lowercased() }, "UUIDv7 ids sort by time")
            #expect(ids.allSatisfy { $0.uuidString.dropFirst(14).first == "7" })
            let stored = try #require(try await collector.store.event(id: UUIDValue(ids[0].uuidString)!, tenant: nil))
            let object = try #require(JSONSerialization.jsonObject(with: Data(stored.json.utf8)) as? [String: Any])
            #expect(object["tenant_id"] as? String == Self.tenant.uuidString.lowercased())
            #expect(object["source"] as? String == "emitter-test")
            #expect(object["user_id"] as? String == user.uuidString.lowercased())
            #expect(object["session_id"] as? String == session.uuidString.lowercased())
            #expect(object["node_id"] as? String == Self.node.uuidString.lowercased())
            #expect(object["vm_type"] as? String == "g5.2xlarge")
            #expect(object["storage_type"] as? String == "nvme")
        }
    }

    /// A batch larger than the collector takes in one request (its --max-body, here after gzip:
    /// the prompts compress well) is sent in halves rather than dropped: every event is stored, in
    /// order. An event too large alone is dropped and counted. (The whole batch was dropped.)
    @Test func aBatchTooLargeForOneRequestIsSentInHalves() async throws {
        try await TestCollector.run(configure: { $0.maxBodyBytes = 64 << 10 }) { collector in
            var configuration = Self.configuration(port: collector.port)
            configuration.batchSize = 200
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            // ~2.7 KB an event: a batch of 200 is ~540 KB of NDJSON, eight times the limit.
            let prompt = String(repeating: "p", count: 2_000)
            let ids = (0..<400).map { _ in
                emitter.emit(GenerationStarted(model: "sdxl-1.0", prompt: prompt, taskID: UUID())).envelope.eventID!.uuidString.lowercased()
            }
            emitter.emit(GenerationStarted(model: "sdxl-1.0", prompt: String(repeating: "q", count: 70_000), taskID: UUID()))
            try await Self.running(emitter) {
                try await Self.waitUntil { emitter.counts.sent + emitter.counts.dropped == 401 }
            }
            #expect(emitter.counts.sent == 400 && emitter.counts.dropped == 1, "\(emitter.counts)")
            #expect(try await Self.storedIDs(collector.store) == ids)
        }
    }

    @Test func rejectionsAreCountedAndNotRetried() async throws {
        try await TestCollector.run { collector in
            var configuration = Self.configuration(port: collector.port)
            configuration.environment = EventEnvironment()  // no node id: xumi events lack a required field
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            try await Self.running(emitter) {
                emitter.emit(GenerationStarted(model: "m", taskID: UUID()))
                emitter.emit(PolicyCacheReset(result: true))
                try await Self.waitUntil { emitter.counts.sent + emitter.counts.rejected == 2 }
            }
            #expect(emitter.counts.rejected == 1)
            #expect(emitter.counts.sent == 1)
            #expect(emitter.counts.retried == 0)
            let rejected = try await collector.store.rejected(RejectedQuery())
            #expect(rejected.rejected.first?.issues.map(\.field) == ["node_id"])
        }
    }

    @Test func handlesCompleteOperationsTheCollectorPairs() async throws {
        try await TestCollector.run { collector in
            let emitter = try TelemetryEmitter(configuration: Self.configuration(port: collector.port), logger: Self.logger)
            let user = UUID()
            let resource = UUID()
            try await Self.running(emitter) {
                let load = emitter.start(WeightsLoadStarted(model: "flux-1-dev", url: "s3://weights/flux"))
                try await Task.sleep(for: .milliseconds(30))
                let completed = load.complete(result: true, size: 3_000_000)
                #expect(completed.originEventID == load.start.envelope.eventID)
                #expect((completed.speed ?? 0) > 0 && (completed.speed ?? .infinity) < 3_000_000 / 0.03)

                var generation = emitter.start(GenerationStarted(model: "sdxl-1.0", taskID: UUID()))
                generation.markWorkBegan()
                generation.complete(result: false, userID: user, detail: "CUDA out of memory")

                let deploy = emitter.start(PodDeployStarted(result: true, resourceID: resource, hardware: "nvidia-h100-80gb"))
                deploy.complete(result: true)
                let free = emitter.start(PodFreeStarted(result: true, resourceID: resource))
                free.complete(result: true)
                try await Self.waitUntil { emitter.counts.sent == 8 }
            }
            let operations = try await collector.store.operations(OperationQuery(limit: 100, nowMicros: Int64(Date().timeIntervalSince1970 * 1e6)))
                .operations
            let byKind = Dictionary(grouping: operations, by: \.kind)
            #expect(byKind["weights_load"]?.first?.status == .succeeded)
            #expect((byKind["weights_load"]?.first?.durationMilliseconds ?? 0) >= 25)
            #expect(byKind["generation"]?.first?.status == .failed)
            let attributes = Dictionary(uniqueKeysWithValues: byKind["generation"]?.first?.attributes ?? [])
            #expect(attributes["queue_ms"] != nil)
            #expect(byKind["pod_deploy"]?.first?.status == .succeeded)
            #expect(byKind["pod_free"]?.first?.status == .succeeded)
            #expect(byKind["pod_lifetime"]?.first?.status == .succeeded)
        }
    }
}

/// Two requests in flight: the collector validates the second while it stores the first, and
/// stores them in the order they were sent.
extension EmitterTests {
    @Test func twoRequestsInFlightAreStoredInTheOrderTheyWereSent() async throws {
        let order = BatchOrder()
        try await TestCollector.run(sink: { GatedSink(store: $0) }, order: order) { collector, port, sink in
            defer { sink.open() }
            var configuration = Self.configuration(port: port)
            configuration.batchSize = 100
            #expect(configuration.maxRequestsInFlight == 2)
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            try await Self.running(emitter) {
                let emitted = (0..<300).map { Self.emit(emitter, $0) }
                // The first batch is held in the store; the second is on its way meanwhile,
                // validated, and waits for it.
                try await Self.waitUntil(30) { sink.pendingEvents == 100 && order.waiting == 1 }
                #expect(sink.submitted == 100)
                sink.open()
                try await Self.waitUntil { emitter.counts.sent == 300 }
                #expect(try await Self.storedIDs(collector.store) == emitted)
                #expect(emitter.counts.retried == 0)
            }
        }
    }

    /// Batches are taken from the front of a long queue (past the point where the taken events
    /// are let go of) without losing, repeating or reordering any.
    @Test func aLongQueueIsSentWholeAndInOrder() async throws {
        try await TestCollector.run { collector in
            var configuration = Self.configuration(port: collector.port)
            configuration.batchSize = 1000
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            // Queued before the emitter runs: 10 batches wait at once.
            let emitted = (0..<10_000).map { Self.emit(emitter, $0) }
            #expect(emitter.queuedCount == 10_000)
            try await Self.running(emitter) {
                try await Self.waitUntil { emitter.counts.sent == 10_000 }
            }
            #expect(emitter.queuedCount == 0)
            #expect(try await Self.storedIDs(collector.store) == emitted)
        }
    }

    /// The first of two requests in flight fails: the second, already on its way, is refused
    /// (409) rather than stored before it, and both are sent again from the spool, in order.
    @Test func aFailedBatchAndTheOneOnItsWayAfterItAreResentInOrder() async throws {
        let order = BatchOrder()
        try await TestCollector.run(sink: { FailFirstSink(store: $0) }, order: order) { collector, port, sink in
            defer { sink.release() }
            var configuration = Self.configuration(port: port)
            configuration.batchSize = 100
            let emitter = try TelemetryEmitter(configuration: configuration, logger: Self.logger)
            try await Self.running(emitter) {
                let emitted = (0..<300).map { Self.emit(emitter, $0) }
                try await Self.waitUntil(30) { sink.isHolding && order.waiting == 1 }
                sink.release()
                try await Self.waitUntil { emitter.counts.sent == 300 }
                #expect(try await Self.storedIDs(collector.store) == emitted)
                #expect(emitter.counts.retried >= 2, "the failed batch and the one refused after it")
                #expect(emitter.counts.dropped == 0)
            }
        }
    }
}

/// A sink whose first batch waits until ``release()`` and then fails as a store error (503); the
/// others are written to the store.
final class FailFirstSink: EventSink {
    private struct State {
        var submits = 0
        var holding = false
        var released = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let store: any EventStore
    private let state = Mutex(State())

    init(store: any EventStore) {
        self.store = store
    }

    var pendingEvents: Int { 0 }
    var isHolding: Bool { state.withLock { $0.holding } }

    func release() {
        let waiter = state.withLock { state in
            state.released = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func submit(_ batch: consuming WriteBatch) async throws -> WriteOutcome {
        let first = state.withLock { state in
            state.submits += 1
            return state.submits == 1
        }
        guard first else { return try await store.write(batch) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let released = state.withLock { state in
                state.holding = true
                if !state.released { state.waiter = continuation }
                return state.released
            }
            if released { continuation.resume() }
        }
        throw StoreError(.unavailable, "the test's store refuses its first batch")
    }
}
