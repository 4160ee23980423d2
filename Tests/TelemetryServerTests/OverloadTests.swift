import Foundation
import Synchronization
import TelemetryClient
import TelemetryPipeline
import TelemetryServer
import TelemetryStore
import Testing

/// `POST /v1/events` past `maxQueuedEvents`: 429 with Retry-After, nothing of the request taken,
/// and the same request accepted once the queue has drained.
@Suite(.timeLimit(.minutes(1))) struct OverloadTests {
    @Test func aFullQueueAnswers429AndTakesNothingUntilItDrains() async throws {
        try await TestCollector.run { collector in
            let sink = GatedSink(store: collector.store)
            try await TestCollector.serve(store: collector.store, limits: IngestLimits(maxQueuedEvents: 3), sink: sink) { port in
                // Opened on any way out, so that a failing test does not leave a request at the
                // gate (the collector's shutdown waits for it).
                defer { sink.open() }
                let lines = sampleLines(5, seed: 61)
                let first = lines[0..<3].joined(separator: "\n")
                let second = lines[3..<5].joined(separator: "\n")
                // Three events wait at the gate: the queue holds its bound.
                let waiting = Task { () -> (status: Int, accepted: Int?) in
                    let answer = try await HTTPConnection(host: "127.0.0.1", port: port).post(first)
                    return (answer.status, answer.json["accepted"] as? Int)
                }
                try await EmitterTests.waitUntil(30) { sink.pendingEvents == 3 }

                let connection = HTTPConnection(host: "127.0.0.1", port: port)
                let refused = try await connection.request("POST", "/v1/events", body: Array(second.utf8), timeoutSeconds: 10)
                #expect(refused.status == 429)
                #expect(refused.header("retry-after") == "1")
                let answer = try JSONSerialization.jsonObject(with: Data(refused.body)) as? [String: Any]
                #expect((answer?["error"] as? [String: Any])?["code"] as? String == "overloaded", "\(refused.text)")
                #expect(sink.submitted == 3, "nothing of the refused request reached the store's queue")

                sink.open()
                let accepted = try await waiting.value
                #expect(accepted.status == 200 && accepted.accepted == 3)
                let retried = try await connection.post(second)
                #expect(retried.status == 200 && retried.json["accepted"] as? Int == 2)
                #expect(try await collector.store.counts().events == 5)

                let metrics = try await connection.request("GET", "/metrics")
                #expect(metrics.text.contains("telemetry_ingest_overloaded_requests_total 1"), "\(metrics.text.prefix(200))")
            }
        }
    }
}

extension OverloadTests {
    /// The bound is checked again after validation: requests validated side by side all passed
    /// the check before parsing.
    @Test func ingestRefusesAValidatedRequestWhenTheQueueFilledMeanwhile() async throws {
        try await TestCollector.run { collector in
            let sink = GatedSink(store: collector.store)
            defer { sink.open() }
            let ingestor = Ingestor(limits: IngestLimits(maxQueuedEvents: 2), sink: sink)
            let lines = sampleLines(4, seed: 62)
            #expect(sink.pendingEvents == 0)
            let held = Task {
                try await ingestor.ingest(Array(lines[0..<2].joined(separator: "\n").utf8), ndjson: true, requestID: "a", receivedMicros: 1).accepted
            }
            try await EmitterTests.waitUntil(30) { sink.pendingEvents == 2 }
            let refused = Task {
                try await ingestor.ingest(Array(lines[2..<4].joined(separator: "\n").utf8), ndjson: true, requestID: "b", receivedMicros: 1)
            }
            // Were it not refused it would wait at the gate: opened after 10 s at the latest, so
            // that a failing test ends.
            let opener = Task {
                try await Task.sleep(for: .seconds(10))
                sink.open()
            }
            let outcome = await refused.result
            opener.cancel()
            #expect(throws: Overloaded.self) { try outcome.get() }
            #expect(sink.submitted == 2, "the refused request's events never reached the sink")
            sink.open()
            #expect(try await held.value == 2)
            #expect(try await ingestor.ingest(Array(lines[2..<4].joined(separator: "\n").utf8), ndjson: true, requestID: "b", receivedMicros: 1).accepted == 2)
        }
    }
}

extension OverloadTests {
    /// Bodies being validated at once are bounded in bytes, but one is always taken, whatever its
    /// size (a body under --max-body must be answered some day).
    @Test func bodiesBeingValidatedAreBoundedButOneIsAlwaysTaken() throws {
        let validating = ValidatingBytes()
        try validating.take(100, bound: 15)
        #expect(throws: Overloaded.self) { try validating.take(1, bound: 15) }
        validating.release(100)
        try validating.take(10, bound: 15)
        try validating.take(5, bound: 15)
        #expect(throws: Overloaded.self) { try validating.take(1, bound: 15) }
        try validating.take(1, bound: nil)
        validating.release(16)
        try validating.take(15, bound: 15)
    }
}

/// Holds every batch until opened, then writes it into the store.
final class GatedSink: EventSink {
    private struct State {
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var pending = 0
        var submitted = 0
    }

    private let store: any EventStore
    private let state = Mutex(State())

    init(store: any EventStore) {
        self.store = store
    }

    var pendingEvents: Int { state.withLock { $0.pending } }
    var submitted: Int { state.withLock { $0.submitted } }

    func open() {
        let waiters = state.withLock { state in
            state.isOpen = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func submit(_ batch: consuming WriteBatch) async throws -> WriteOutcome {
        let count = batch.events.count
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isOpen = state.withLock { state in
                state.pending += count
                state.submitted += count
                if !state.isOpen { state.waiters.append(continuation) }
                return state.isOpen
            }
            if isOpen { continuation.resume() }
        }
        defer { state.withLock { $0.pending -= count } }
        return try await store.write(batch)
    }
}
