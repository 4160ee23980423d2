import Foundation
import Synchronization
import TelemetryClient
import TelemetryPipeline
import TelemetryServer
import TelemetryStore
import Testing

/// Requests that name the batch they follow (`Telemetry-After`): validated at once, stored only
/// after that batch, refused when it was not stored.
@Suite(.timeLimit(.minutes(1))) struct BatchOrderTests {
    static func body(_ lines: ArraySlice<String>) -> String { lines.joined(separator: "\n") }

    /// Whether the store holds `first`'s events, then `second`'s (within a transaction the store
    /// orders events by id, so each batch is compared as a set).
    static func storedInOrder(_ store: any EventStore, _ first: ArraySlice<String>, _ second: ArraySlice<String>) async throws -> Bool {
        let stored = try await EmitterTests.storedIDs(store)
        return stored.count == first.count + second.count && Set(stored.prefix(first.count)) == Set(first.map(eventID(of:)))
            && Set(stored.suffix(second.count)) == Set(second.map(eventID(of:)))
    }

    static func errorCode(_ json: [String: Any]) -> String? { (json["error"] as? [String: Any])?["code"] as? String }

    /// POSTs `body` to the collector at `port` on a connection of its own: the status, and how
    /// many events were accepted.
    static func post(_ port: Int, _ body: String, _ headers: [(String, String)]) async throws -> (status: Int, accepted: Int?) {
        let answer = try await HTTPConnection(host: "127.0.0.1", port: port).post(body, headers: headers)
        return (answer.status, answer.json["accepted"] as? Int)
    }

    @Test func aFollowerThatArrivesFirstIsStoredAfterTheBatchItFollows() async throws {
        let order = BatchOrder()
        try await TestCollector.run(order: order) { collector in
            let lines = sampleLines(6, seed: 71)
            let follower = Task { try await Self.post(collector.port, Self.body(lines[3..<6]), [("Telemetry-Batch", "b"), ("Telemetry-After", "a")]) }
            // Validated and waiting for "a", which has not arrived.
            try await EmitterTests.waitUntil(30) { order.waiting == 1 }
            #expect(try await collector.store.counts().events == 0)
            let first = try await Self.post(collector.port, Self.body(lines[0..<3]), [("Telemetry-Batch", "a")])
            #expect(first.status == 200 && first.accepted == 3)
            let second = try await follower.value
            #expect(second.status == 200 && second.accepted == 3)
            #expect(try await Self.storedInOrder(collector.store, lines[0..<3], lines[3..<6]), "a's events, then b's")
        }
    }

    @Test func aFollowerWaitsWhileTheBatchItFollowsIsBeingStored() async throws {
        let order = BatchOrder()
        try await TestCollector.run(sink: { GatedSink(store: $0) }, order: order) { collector, port, sink in
            defer { sink.open() }
            let lines = sampleLines(5, seed: 72)
            let first = Task { try await Self.post(port, Self.body(lines[0..<2]), [("Telemetry-Batch", "a")]) }
            try await EmitterTests.waitUntil(30) { sink.pendingEvents == 2 }
            let second = Task { try await Self.post(port, Self.body(lines[2..<5]), [("Telemetry-Batch", "b"), ("Telemetry-After", "a")]) }
            try await EmitterTests.waitUntil(30) { order.waiting == 1 }
            #expect(sink.submitted == 2, "b is held back while a is being stored")
            sink.open()
            #expect(try await first.value.status == 200)
            #expect(try await second.value.status == 200)
            #expect(sink.submitted == 5)
            #expect(try await Self.storedInOrder(collector.store, lines[0..<2], lines[2..<5]))
        }
    }

    @Test func aFollowerOfAFailedBatchIsRefusedAndNothingOfItIsStored() async throws {
        try await TestCollector.run { collector in
            let connection = HTTPConnection(host: "127.0.0.1", port: collector.port)
            let lines = sampleLines(3, seed: 73)
            let refused = try await connection.post("this is not json", headers: [("Telemetry-Batch", "a")])
            #expect(refused.status == 400)
            let follower = try await connection.post(Self.body(lines[0..<3]), headers: [("Telemetry-Batch", "b"), ("Telemetry-After", "a")])
            #expect(follower.status == 409)
            #expect(Self.errorCode(follower.json) == "out_of_order")
            let message = (follower.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains("batch a") && message.contains("answered 400"), "\(message)")
            #expect(try await collector.store.counts().events == 0)
            // Sent again on its own, it is stored.
            let again = try await connection.post(Self.body(lines[0..<3]))
            #expect(again.status == 200 && again.json["accepted"] as? Int == 3)
            let metrics = try await connection.request("GET", "/metrics")
            #expect(metrics.text.contains("telemetry_ingest_out_of_order_requests_total 1"))
        }
    }

    @Test func aFollowerOfABatchThatNeverArrivesIsRefusedAfterTheWait() async throws {
        let order = BatchOrder(wait: .milliseconds(300))
        try await TestCollector.run(order: order) { collector in
            let started = ContinuousClock.now
            let follower = try await HTTPConnection(host: "127.0.0.1", port: collector.port).post(
                Self.body(sampleLines(2, seed: 74)[...]), headers: [("Telemetry-After", "ghost")])
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            #expect(follower.status == 409)
            let message = (follower.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains("no request naming it"), "\(message)")
            #expect(try await collector.store.counts().events == 0)
            #expect(order.count == 0, "a batch nobody sent is forgotten once nobody waits for it")
        }
    }

    /// Followers hold their validated events while they wait: their bodies are bounded like the
    /// bodies being validated (one is always taken).
    @Test func followersWaitingAreBoundedInBytes() async throws {
        try await TestCollector.run { collector in
            let sink = GatedSink(store: collector.store)
            defer { sink.open() }
            let order = BatchOrder(wait: .seconds(30))
            let ingestor = Ingestor(limits: IngestLimits(maxValidatingBytes: 10), sink: sink, order: order)
            let lines = sampleLines(4, seed: 76)
            let first = Task {
                try await ingestor.ingest(
                    Array(Self.body(lines[0..<2]).utf8), ndjson: true, requestID: "a", receivedMicros: 1,
                    after: BatchOrder.Key(sender: "", batch: "x"))
            }
            try await EmitterTests.waitUntil(30) { order.waiting == 1 }
            await #expect(throws: Overloaded.self, "a second follower is past the bound") {
                try await ingestor.ingest(
                    Array(Self.body(lines[2..<4]).utf8), ndjson: true, requestID: "b", receivedMicros: 1,
                    after: BatchOrder.Key(sender: "", batch: "y"))
            }
            #expect(sink.submitted == 0)
            // The first is let through once the batch it follows is stored.
            let x = BatchOrder.Key(sender: "", batch: "x")
            order.begin(x)
            order.finish(x, failure: nil)
            sink.open()
            #expect(try await first.value.accepted == 2)
            #expect(sink.submitted == 2)
        }
    }

    @Test func malformedBatchNamesAreRefused() async throws {
        try await TestCollector.run { collector in
            let connection = HTTPConnection(host: "127.0.0.1", port: collector.port)
            let body = Self.body(sampleLines(1, seed: 75)[...])
            for (headers, why) in [
                ([("Telemetry-After", String(repeating: "x", count: 129))], "it is 129 bytes"),
                ([("Telemetry-Batch", "two words")], "it has a space"),
                ([("Telemetry-Batch", "a"), ("Telemetry-After", "a")], "names this request's own batch"),
            ] {
                let answer = try await connection.post(body, headers: headers)
                #expect(answer.status == 400, "\(headers)")
                #expect(Self.errorCode(answer.json) == "bad_header", "\(headers)")
                let message = (answer.json["error"] as? [String: Any])?["message"] as? String ?? ""
                #expect(message.contains(why), "\(message)")
            }
            #expect(try await collector.store.counts().events == 0)
        }
    }

    @Test func namesBelongToTheirSenderAndOnlyTheNewestAreRemembered() async throws {
        let order = BatchOrder(wait: .milliseconds(100), rememberedBatches: 3)
        let first = BatchOrder.Key(sender: "key-1", batch: "a")
        order.begin(first)
        order.finish(first, failure: nil)
        try await order.waitUntilStored(first)
        await #expect(throws: OutOfOrder.self, "another sender's batch of the same name") {
            try await order.waitUntilStored(BatchOrder.Key(sender: "key-2", batch: "a"))
        }
        for n in 0..<5 {
            let key = BatchOrder.Key(sender: "key-1", batch: "n\(n)")
            order.begin(key)
            order.finish(key, failure: n == 4 ? "it was answered 503" : nil)
        }
        #expect(order.count == 3)
        await #expect(throws: OutOfOrder.self, "forgotten") { try await order.waitUntilStored(first) }
        try await order.waitUntilStored(BatchOrder.Key(sender: "key-1", batch: "n3"))
        await #expect(throws: OutOfOrder.self, "failed") { try await order.waitUntilStored(BatchOrder.Key(sender: "key-1", batch: "n4")) }
    }
}

extension BatchOrderTests {
    /// `send`'s poster, two requests in flight: the first batch fails (503) while the second
    /// waits for it; the second is refused (409), sent again once the first is stored, and the
    /// file's batches are stored in order.
    @Test func sendsBatchesAreStoredInOrderWhenTheFirstFails() async throws {
        let order = BatchOrder()
        try await TestCollector.run(sink: { FailFirstSink(store: $0) }, order: order) { collector, port, sink in
            defer { sink.release() }
            let lines = sampleLines(500, seed: 77)
            let retries = RetryLog()
            let sender = BatchSender(
                connections: [HTTPConnection(host: "127.0.0.1", port: port), HTTPConnection(host: "127.0.0.1", port: port)],
                maxAttempts: 4, onRetry: { retries.add($0) })
            // `submit` and `finish` block: on a thread of their own, off the pool the collector runs on.
            let sending = Task {
                await withCheckedContinuation { (continuation: CheckedContinuation<(SendSummary, String?), Never>) in
                    Thread {
                        for batch in 0..<5 {
                            let range = (batch * 100)..<(batch * 100 + 100)
                            sender.submit(body: Array(Self.body(lines[range]).utf8), lines: Array(range.map { $0 + 1 }))
                        }
                        continuation.resume(returning: sender.finish())
                    }.start()
                }
            }
            try await EmitterTests.waitUntil(30) { sink.isHolding && order.waiting == 1 }
            sink.release()
            let (summary, failure) = await sending.value
            #expect(failure == nil, "\(failure ?? "")")
            #expect(summary.accepted == 500 && summary.rejected.isEmpty)
            #expect(retries.lines.count == 1 && retries.lines[0].contains("HTTP 503"), "\(retries.lines)")
            let metrics = try await HTTPConnection(host: "127.0.0.1", port: port).request("GET", "/metrics")
            // The second batch was refused (409), and no other: a batch taken while the one before
            // it is being retried waits for it instead of naming it.
            #expect(metrics.text.contains("telemetry_ingest_out_of_order_requests_total 1\n"), "the second batch was refused once")
            let stored = try await EmitterTests.storedIDs(collector.store)
            #expect(stored.count == 500)
            for batch in 0..<5 {
                let range = (batch * 100)..<(batch * 100 + 100)
                #expect(Set(stored[range]) == Set(lines[range].map(eventID(of:))), "batch \(batch) in its place")
            }
        }
    }
}

/// The retries a `BatchSender` reported.
final class RetryLog: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ line: String) { list.withLock { $0.append(line) } }
    var lines: [String] { list.withLock { $0 } }
}
