import Foundation
import TelemetryCatalog
import TelemetryClickHouse
import TelemetryClient
import TelemetryProcess
import Testing

/// The stores `serve` runs on in these tests.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case clickhouse

    var testDescription: String { rawValue }

    /// `serve`'s arguments for a new store of this kind: none for SQLite (DIR/telemetry.sqlite),
    /// `--store clickhouse:…` with a database of its own on the process's shared local server.
    func serveArguments() throws -> [String] {
        switch self {
        case .sqlite: return []
        case .clickhouse:
            let database = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            return ["--store", try ClickHouseLocalServer.shared().location(database: database).description]
        }
    }
}

@Suite struct CollectorProcessTests {
    /// Another process ingests under load; the collector is killed with SIGKILL mid-stream and
    /// restarted on the same data: every acknowledged event is there exactly once, every stored
    /// half of a generation is in exactly one operation (pairing neither lost nor repeated across
    /// the crash), and SQLite's integrity check passes.
    @Test(arguments: StoreKind.allCases) func killNineLosesNothingAcknowledged(_ kind: StoreKind) async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let storeArguments = try kind.serveArguments()
        let server = try await ServerProcess.start(data: data, extraArguments: storeArguments)
        let acknowledged = AcknowledgedIDs()
        let port = server.port
        // Four connections post fresh events, without end, until the server dies under them: however
        // slow the machine, the kill comes while requests are in flight.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    try await offThePool {
                        var sampler = EventSampler(seed: 31 + UInt64(client))
                        sampler.linksLifecycles = true
                        let connection = HTTPConnection(host: "127.0.0.1", port: port)
                        while true {
                            let batch = (0..<100).map { _ in sampler.sample().render() }
                            let body = Array(batch.joined(separator: "\n").utf8)
                            guard let response = try? connection.request("POST", "/v1/events", body: body), response.status == 200
                            else { return }
                            acknowledged.add(batch.map(Self.id))
                        }
                    }
                }
            }
            group.addTask {
                // Kill once a fair amount is acknowledged, from a thread of its own (not the
                // cooperative pool, which a busy machine may leave waiting).
                try await offThePool {
                    while acknowledged.count < 3_000 { usleep(2_000) }
                    server.stop(signal: SIGKILL)
                }
            }
            try await group.waitForAll()
        }
        let acked = acknowledged.ids
        #expect(acked.count >= 3_000)

        let restarted = try await ServerProcess.start(data: data, extraArguments: storeArguments)
        let connection = HTTPConnection(host: "127.0.0.1", port: restarted.port)
        var stored: [String] = []
        var storedHalves: (starts: Set<String>, completions: Set<String>) = ([], [])
        var cursor: String? = nil
        repeat {
            let page = try await connection.request("GET", "/v1/events?limit=1000" + (cursor.map { "&cursor=\($0)" } ?? ""))
            let object = try #require(JSONSerialization.jsonObject(with: Data(page.body)) as? [String: Any])
            for event in object["events"] as? [[String: Any]] ?? [] {
                guard let id = event["event_id"] as? String else { continue }
                stored.append(id)
                if event["event_type"] as? String == "xumi.generation.start" { storedHalves.starts.insert(id) }
                if event["event_type"] as? String == "xumi.generation.complete" { storedHalves.completions.insert(id) }
            }
            cursor = object["next_cursor"] as? String
        } while cursor != nil
        var pairedStarts: [String] = []
        var pairedCompletions: [String] = []
        cursor = nil
        repeat {
            let page = try await connection.request(
                "GET", "/v1/operations?kind=generation&limit=1000" + (cursor.map { "&cursor=\($0)" } ?? ""))
            let object = try #require(JSONSerialization.jsonObject(with: Data(page.body)) as? [String: Any])
            for operation in object["operations"] as? [[String: Any]] ?? [] {
                if let id = operation["start_event_id"] as? String { pairedStarts.append(id) }
                if let id = operation["complete_event_id"] as? String { pairedCompletions.append(id) }
            }
            cursor = object["next_cursor"] as? String
        } while cursor != nil
        try await offThePool { restarted.stop() }
        #expect(Set(stored).count == stored.count, "no event stored twice")
        let missing = acked.subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) acknowledged events lost")
        #expect(storedHalves.starts.count > 20 && storedHalves.completions.count > 20)
        #expect(pairedStarts.count == Set(pairedStarts).count && Set(pairedStarts) == storedHalves.starts)
        #expect(pairedCompletions.count == Set(pairedCompletions).count && Set(pairedCompletions) == storedHalves.completions)
        guard kind == .sqlite else { return }

        let check = try await ChildProcess.run(
            "/usr/bin/env",
            ["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])", data.appendingPathComponent("telemetry.sqlite").path])
        let verdict = check.output
        #expect(verdict.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
    }

    @Test(arguments: StoreKind.allCases) func sendQueryAndTailAgainstARunningCollector(_ kind: StoreKind) async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data, extraArguments: try kind.serveArguments())
        defer { server.stop() }
        var sampler = EventSampler(seed: 32)
        var lines = (0..<250).map { _ in sampler.sample().render() }
        lines.insert(#"{"event_type":"xumi.generation.start","event_id":"nope"}"#, at: 10)
        // One in the third batch too: batches are sent while the next is read, and each answer's
        // indexes must still map to that batch's lines.
        lines.insert(#"{"event_type":"xumi.generation.start","event_id":"nein"}"#, at: 229)
        let file = data.appendingPathComponent("events.ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)

        let sent = try await CLI.runOffPool(["send", file.path, "--url", server.url, "--batch-size", "100"])
        #expect(sent.status == 1, "two events are invalid")
        #expect(sent.stdout.contains("252 events: 250 accepted, 0 duplicate, 2 rejected"), "\(sent.stdout)")
        #expect(sent.stdout.contains("line 11: event_id: bad_uuid"))
        #expect(sent.stdout.contains("line 230: event_id: bad_uuid"), "\(sent.stdout)")
        let again = try await CLI.runOffPool(["send", file.path, "--url", server.url, "--no-gzip"])
        #expect(again.stdout.contains("250 duplicate"), "\(again.stdout)")

        let query = try await CLI.runOffPool(["query", "--url", server.url, "--event-type", "pbac.agent.start", "--all", "--format", "json"])
        #expect(query.status == 0)
        let expected = lines.filter { $0.contains(#""event_type":"pbac.agent.start""#) }.count
        #expect(query.stdout.split(separator: "\n").count == expected)
        let table = try await CLI.runOffPool(["query", "--url", server.url, "--limit", "5"])
        #expect(table.stdout.contains("EVENT TYPE"))
        #expect(table.stdout.split(separator: "\n").count == 6)
        // --since and --until take a duration ago, as `stats` and `query ops` do: the sampled
        // events are dated 2026-11-18, so none is from the last second, and all are older.
        let recent = try await CLI.runOffPool(["query", "--url", server.url, "--since", "1s", "--format", "json"])
        #expect(recent.status == 0 && recent.stdout.isEmpty, "\(recent.stdout)\(recent.stderr)")
        let older = try await CLI.runOffPool(
            ["query", "--url", server.url, "--event-type", "pbac.agent.start", "--until", "1s", "--all", "--format", "json"])
        #expect(older.stdout.split(separator: "\n").count == expected, "\(older.stderr)")
        let unclear = try await CLI.runOffPool(["query", "--url", server.url, "--since", "yesterday"])
        #expect(unclear.status != 0 && unclear.stderr.contains("--since"), "\(unclear.stderr)")

        // tail prints what arrives after it connects: keep posting fresh events until it has two.
        let finished = Flag()
        let url = server.url
        let tailing = Task {
            defer { finished.set() }
            return try await CLI.runOffPool(["tail", "--url", url, "--topic", "pbac_service", "--count", "2"], timeoutSeconds: 60)
        }
        let poster = HTTPConnection(host: "127.0.0.1", port: server.port)
        var rounds = 0
        while rounds < 100 && !finished.isSet {
            try await Task.sleep(for: .milliseconds(300))
            let fresh = (0..<20).map { _ in sampler.sample().render() }
            let post = try await poster.request("POST", "/v1/events", body: Array(fresh.joined(separator: "\n").utf8))
            #expect(post.status == 200)
            rounds += 1
        }
        let tail = try await tailing.value
        #expect(tail.status == 0, "\(tail.stderr)")
        let printed = tail.stdout.split(separator: "\n")
        #expect(printed.count == 2)
        #expect(printed.allSatisfy { $0.contains(#""event_type":"pbac.agent."#) })
    }

    /// A port already taken is said plainly, with what to do, and exits 2 (an I/O error), for
    /// `serve` as for `demo`; the socket's own error read `bind(descriptor:ptr:bytes:): Address
    /// already in use) (errno: 98)`.
    @Test func aTakenPortIsSaidPlainly() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data.appendingPathComponent("first"))
        defer { server.stop() }
        for command in ["serve", "demo"] {
            let second = try await CLI.runOffPool(
                [command, "--port", String(server.port), "--data", data.appendingPathComponent(command).path], timeoutSeconds: 60)
            #expect(second.status == 2, "\(command): \(second.stderr)")
            #expect(
                second.stderr.contains("telemetry: cannot listen on 127.0.0.1:\(server.port): the port is taken")
                    && second.stderr.contains("--port 0"), "\(command): \(second.stderr)")
        }
    }

    /// `send` has two requests in flight, and the collector stores its batches in the file's
    /// order (within a batch, a transaction, the store orders events by id).
    @Test func sendStoresTheFilesBatchesInOrder() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data)
        defer { server.stop() }
        var sampler = EventSampler(seed: 34)
        let lines = (0..<2_000).map { _ in sampler.sample().render() }
        try await Self.sendAndExpectTheFilesBatchesInOrder(lines, batchSize: 100, to: server, in: data)
    }

    /// Batches too large for the collector's --max-body (here after gzip: the padding compresses
    /// well) are sent in halves, in the file's order, rather than stopping the run.
    @Test func sendSplitsBatchesTooLargeForOneRequest() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data, extraArguments: ["--max-body", "65536"])
        defer { server.stop() }
        var sampler = EventSampler(seed: 35)
        let lines = (0..<600).map { _ -> String in
            var event = sampler.sample()
            event["metadata"] = .object([("pad", .string(String(repeating: "x", count: 3_000)))])
            return event.render()
        }
        // 250 events of ~3.9 KB a batch: ~1 MB, 15 times the limit.
        try await Self.sendAndExpectTheFilesBatchesInOrder(lines, batchSize: 250, to: server, in: data)
    }

    /// Sends `lines` as a file with `send --batch-size batchSize`, and expects every line accepted
    /// and each batch stored in its place (within a transaction the store orders events by id).
    static func sendAndExpectTheFilesBatchesInOrder(_ lines: [String], batchSize: Int, to server: ServerProcess, in data: URL) async throws {
        let file = data.appendingPathComponent("events.ndjson")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        let sent = try await CLI.runOffPool(["send", file.path, "--url", server.url, "--batch-size", String(batchSize)])
        #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        #expect(sent.stdout.contains("\(lines.count) events: \(lines.count) accepted, 0 duplicate, 0 rejected"), "\(sent.stdout)")
        let query = try await CLI.runOffPool(["query", "--url", server.url, "--all", "--format", "json"])
        let stored = query.stdout.split(separator: "\n").reversed().map { id(String($0)) }
        #expect(stored.count == lines.count)
        guard stored.count == lines.count else { return }
        for start in stride(from: 0, to: lines.count, by: batchSize) {
            let range = start..<min(lines.count, start + batchSize)
            #expect(Set(stored[range]) == Set(lines[range].map(id)), "the batch of lines \(range) in its place")
        }
    }

    /// The collector is down when `send` starts: it retries with backoff until the collector is up.
    @Test func sendRetriesUntilTheCollectorIsUp() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let port = try freePort()
        let file = data.appendingPathComponent("events.ndjson")
        var sampler = EventSampler(seed: 33)
        try ((0..<50).map { _ in sampler.sample().render() }.joined(separator: "\n")).write(to: file, atomically: true, encoding: .utf8)
        let sending = Task { try await CLI.runOffPool(["send", file.path, "--url", "http://127.0.0.1:\(port)", "--max-attempts", "12"], timeoutSeconds: 120) }
        try await Task.sleep(for: .milliseconds(1500))
        let server = try await ServerProcess.start(data: data, port: port)
        defer { server.stop() }
        let result = try await sending.value
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("50 events: 50 accepted"))
        #expect(result.stdout.contains("retries"))
        #expect(result.stderr.contains("retrying in"))
    }

    static func id(_ line: String) -> String {
        let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        return object["event_id"] as! String
    }
}

final class AcknowledgedIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var set: Set<String> = []
    func add(_ ids: [String]) { lock.withLock { set.formUnion(ids) } }
    var count: Int { lock.withLock { set.count } }
    var ids: Set<String> { lock.withLock { set } }
}

/// Runs blocking work on a thread of its own, never on the cooperative pool (nor Dispatch's small
/// shared pool).
@discardableResult
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Checks `condition` every 50 ms until it holds, for at most `seconds`.
func waitUntil(_ seconds: Double = 30, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// A flag set from another thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
