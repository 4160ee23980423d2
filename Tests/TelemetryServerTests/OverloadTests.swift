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
                // The pacer's turn: at least its shortest wait, for what is in flight (the first
                // request's bytes) at the rate it assumes before any is measured.
                let milliseconds = refused.header("retry-after-ms").flatMap(Int.init)
                #expect(milliseconds == Int((RetryPacer.shortest * 1000).rounded(.up)), "\(refused.headers)")
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

/// Requests on raw sockets, for the tests of bodies refused on their head.
private enum HeldBody {
    static func head(_ body: [UInt8], expect: Bool = false) -> [UInt8] {
        Array(
            ("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                + "Content-Length: \(body.count)\r\n" + (expect ? "Expect: 100-continue\r\n" : "") + "\r\n").utf8)
    }

    /// Runs `body` against a collector whose bounds of bodies in flight are 1,000 bytes, with two
    /// bodies of three distinct events each, both over the bound; all six are stored in the end.
    static func withTwoBodies(
        seed: UInt64, _ body: @escaping @Sendable (_ port: Int, _ first: [UInt8], _ second: [UInt8]) async throws -> Void
    ) async throws {
        try await TestCollector.run { collector in
            try await TestCollector.serve(store: collector.store, limits: IngestLimits(maxValidatingBytes: 1_000)) { port in
                let lines = sampleLines(6, seed: seed)
                let first = Array(lines[0..<3].joined(separator: "\n").utf8)
                let second = Array(lines[3..<6].joined(separator: "\n").utf8)
                #expect(first.count > 1_000 && second.count > 1_000)
                try await body(port, first, second)
                #expect(try await collector.store.counts().events == 6)
            }
        }
    }

    /// Sends the head of `first` and a part of its body on a new connection, and returns once the
    /// collector has admitted it: an expecting probe is then refused on its head. The probe
    /// declares an empty body, so that when it comes first it holds nothing of the bound (it gets
    /// its 100, and a 400 for the empty body).
    static func admit(_ first: [UInt8], port: Int) throws -> RawSocket {
        let slow = try RawSocket(port: port, timeoutSeconds: 30)
        try slow.send(head(first) + first[..<100])
        for _ in 0..<1000 {
            let prober = try RawSocket(port: port, timeoutSeconds: 30)
            try prober.send(head([], expect: true))
            let answer = try prober.receive(until: "\r\n\r\n")
            if answer.hasPrefix("HTTP/1.1 429") { return slow }
            _ = try prober.receive(until: "}}")
            usleep(1_000)
        }
        throw RawSocket.Failure(description: "the first body was never admitted")
    }
}

extension OverloadTests {
    /// Past the bound of bodies being received, a request is answered 429 on its head, before
    /// its body is read (a burst of senders otherwise had every body in memory at once), and the
    /// connection stays usable: the server reads the refused body to its end, then takes the next
    /// request.
    @Test func aBodyPastTheReceivingBoundIsRefusedBeforeItIsRead() async throws {
        try await HeldBody.withTwoBodies(seed: 63) { port, first, second in
            // On a thread of their own: the collector's routes (and so its answers) run on the
            // cooperative pool, which a blocking read there would take from them.
            let (refused, error, answered, retried) = try await offThePool { () throws -> (String, String, String, String) in
                // The first request's body arrives in part and then stops: it holds the bound.
                let slow = try HeldBody.admit(first, port: port)
                // The second declares its length and sends nothing more: it is answered at once.
                let eager = try RawSocket(port: port, timeoutSeconds: 30)
                try eager.send(HeldBody.head(second))
                let refused = try eager.receive(until: "\r\n\r\n")
                let error = try eager.receive(until: "}}")
                // The refused body is read and dropped; once the first body is whole (and
                // stored), the same connection takes the request again.
                try eager.send(second)
                try slow.send(Array(first[100...]))
                let answered = try slow.receive(until: "\r\n\r\n")
                _ = try slow.receive(until: "}")
                try eager.send(HeldBody.head(second) + second)
                let retried = try eager.receive(until: "\r\n\r\n")
                _ = try eager.receive(until: "}")
                return (refused, error, answered, retried)
            }
            #expect(refused.hasPrefix("HTTP/1.1 429"), "\(refused)")
            #expect(refused.lowercased().contains("retry-after: 1"), "\(refused)")
            #expect(!refused.lowercased().contains("connection: close"), "\(refused)")
            #expect(error.contains("\"code\":\"overloaded\"") && error.contains("being received"), "\(error)")
            #expect(answered.hasPrefix("HTTP/1.1 200"), "\(answered)")
            #expect(retried.hasPrefix("HTTP/1.1 200"), "\(retried)")
        }
    }
}

extension OverloadTests {
    /// A sender that sends `Expect: 100-continue` and waits is refused without sending its body:
    /// no 100 comes before the 429, which closes the connection (the body it announced may never
    /// come). Admitted, it gets the 100 and then the answer to its body.
    @Test func anExpectingSenderPastTheBoundIsRefusedWithoutSendingItsBody() async throws {
        try await HeldBody.withTwoBodies(seed: 64) { port, first, second in
            let (refused, answered, interim, answer) = try await offThePool { () throws -> (String, String, String, String) in
                let slow = try HeldBody.admit(first, port: port)
                let waiting = try RawSocket(port: port, timeoutSeconds: 30)
                try waiting.send(HeldBody.head(second, expect: true))
                let refused = try waiting.receive(until: "\r\n\r\n")
                try slow.send(Array(first[100...]))
                let answered = try slow.receive(until: "\r\n\r\n")
                _ = try slow.receive(until: "}")
                // Admitted now: the 100 first, then the answer once the body is in.
                let admitted = try RawSocket(port: port, timeoutSeconds: 30)
                try admitted.send(HeldBody.head(second, expect: true))
                let interim = try admitted.receive(until: "\r\n\r\n")
                try admitted.send(second)
                let answer = try admitted.receive(until: "\r\n\r\n")
                return (refused, answered, interim, answer)
            }
            #expect(refused.hasPrefix("HTTP/1.1 429"), "no 100 before the refusal: \(refused)")
            #expect(refused.lowercased().contains("connection: close"), "\(refused)")
            #expect(answered.hasPrefix("HTTP/1.1 200"), "\(answered)")
            #expect(interim.hasPrefix("HTTP/1.1 100 Continue"), "\(interim)")
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            #expect(!answer.lowercased().contains("connection: close"), "\(answer)")
        }
    }
}
