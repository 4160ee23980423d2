import Foundation
import TelemetryCatalog
import TelemetryClient
import TelemetryProcess
import TelemetryServer
import TelemetryStore
import Testing

@Suite struct QueryTests {
    @Test func filtersByEnvelopeAndCatalogFields() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            var sampler = EventSampler(seed: 21)
            let catalog = Catalog.builtin
            var events: [JSONValue] = []
            for i in 0..<60 {
                var event = sampler.sample(catalog.latest(i % 2 == 0 ? "xumi.generation.complete" : "pbac.agent.politics.check")!)
                event["tenant_id"] = .string(i % 3 == 0 ? "5c1e7a52-0d6a-4c3e-8b59-1f2d3e4a5b6c" : "0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11")
                event["result"] = .bool(i % 4 != 0)
                event["timestamp"] = .string(ISO8601Timestamp.string(fromMicroseconds: 1_795_000_000_000_000 + Int64(i) * 60_000_000))
                events.append(event)
            }
            let posted = try await http.post(events.map { $0.render() }.joined(separator: "\n"))
            #expect(posted.json["accepted"] as? Int == 60)

            func count(_ query: String) async throws -> Int {
                let page = try await http.getJSON("/v1/events?limit=1000&" + query)
                #expect(page.status == 200, "\(query): \(page.json)")
                return (page.json["events"] as? [Any])?.count ?? -1
            }
            #expect(try await count("event_type=xumi.generation.complete") == 30)
            #expect(try await count("topic=pbac_access") == 30)
            #expect(try await count("tenant_id=5C1E7A52-0D6A-4C3E-8B59-1F2D3E4A5B6C") == 20, "uuids match in either case")
            #expect(try await count("result=false") == 15)
            #expect(try await count("event_type=xumi.generation.complete&result=false") == 15)
            #expect(try await count("source=pbac-agent") == 30)
            let since = ISO8601Timestamp.string(fromMicroseconds: 1_795_000_000_000_000 + 10 * 60_000_000)
            let until = ISO8601Timestamp.string(fromMicroseconds: 1_795_000_000_000_000 + 20 * 60_000_000)
            #expect(try await count("since=\(since)&until=\(until)") == 10)
            #expect(try await count("resource_Id=0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11") == 0, "aliases are accepted as filters")
            #expect(try await http.request("GET", "/v1/events?result=maybe").status == 400)
            #expect(try await http.request("GET", "/v1/events?since=yesterday").status == 400)
            // A type or topic the catalog does not have is a typo, told as such (not an empty page),
            // on the list and on the stream alike.
            for (query, named) in [
                ("/v1/events?event_type=xumi.generation.started", "xumi.generation.started is not an event type"),
                ("/v1/events?topic=xumi_tasks", "xumi_tasks is not a topic; topics: xumi_load, xumi_task"),
                ("/v1/stream?event_type=nope", "nope is not an event type"),
            ] {
                let answer = try await http.getJSON(query)
                #expect(answer.status == 400, "\(query)")
                let error = answer.json["error"] as? [String: Any]
                #expect(error?["code"] as? String == "bad_query")
                #expect((error?["message"] as? String)?.hasPrefix(named) == true, "\(query): \(answer.json)")
            }

            // By id: the stored event is the normalised one.
            let id = events[5]["event_id"]!
            guard case .string(let idText) = id else { return }
            let one = try await http.getJSON("/v1/events/\(idText)")
            #expect(one.status == 200)
            #expect(one.json["event_id"] as? String == idText)
            #expect(one.json["resource_Id"] == nil)
        }
    }

    /// Pages through the store while another client keeps ingesting: every event that existed when
    /// paging began is seen exactly once.
    @Test func paginationMissesAndRepeatsNothingWhileIngestGoesOn() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            let initial = sampleLines(1_000, seed: 22)
            for chunk in stride(from: 0, to: 1_000, by: 250) {
                _ = try await http.post(initial[chunk..<(chunk + 250)].joined(separator: "\n"))
            }
            let expected = Set(initial.map(eventID))
            let writer = Task {
                let other = collector.connection()
                for batch in 0..<20 {
                    _ = try await other.post(sampleLines(50, seed: 500 + UInt64(batch)).joined(separator: "\n"))
                }
            }
            var seen: [String] = []
            var cursor: String? = nil
            repeat {
                let page = try await http.getJSON("/v1/events?limit=37" + (cursor.map { "&cursor=\($0)" } ?? ""))
                let events = try #require(page.json["events"] as? [[String: Any]])
                seen += events.compactMap { $0["event_id"] as? String }
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil
            try await writer.value
            #expect(seen.count == Set(seen).count, "no event repeated")
            #expect(expected.isSubset(of: Set(seen)), "no event missed")
        }
    }

    @Test func theStreamDeliversNewEventsAndResumesAfterLastEventID() async throws {
        try await TestCollector.run { collector in
            let lines = sampleLines(40, seed: 23)
            let received = LockedLines()
            let connection = collector.connection()
            // The stream starts after the newest event stored when its answer began: post only once
            // its head is in (a fixed sleep lost that race on a loaded machine and hung).
            let (opened, open) = AsyncStream.makeStream(of: Void.self)
            let deadline = Date().addingTimeInterval(60)
            let stream = Task {
                try await offThePool {
                    _ = try connection.stream("GET", "/v1/stream?topic=xumi_task", onHead: { _ in open.yield() }) { chunk in
                        received.append(String(decoding: chunk, as: UTF8.self))
                        return received.events.count < 2 && Date() < deadline
                    }
                }
            }
            for await _ in opened { break }
            _ = try await collector.connection().post(lines.joined(separator: "\n"))
            try await stream.value
            let events = received.events
            #expect(events.count >= 2)
            let xumiTask = lines.filter { $0.contains(#""event_type":"xumi.generation"#) }
            #expect(events.allSatisfy { $0.data.contains(#""event_type":"xumi.generation"#) }, "filtered by topic")
            #expect(events.first.map { xumiTask.map(eventID).contains(eventID(of: $0.data)) } == true)

            // Reconnecting after the first id replays what followed it.
            let resumed = LockedLines()
            let second = collector.connection()
            let firstID = events[0].id
            try await offThePool {
                _ = try second.stream("GET", "/v1/stream?topic=xumi_task", headers: [("Last-Event-ID", firstID)]) { chunk in
                    resumed.append(String(decoding: chunk, as: UTF8.self))
                    return resumed.events.count < xumiTask.count - 1 && Date() < deadline
                }
            }
            #expect(resumed.events.count == xumiTask.count - 1)
            #expect(resumed.events.first?.id == events[1].id)
        }
    }

    @Test func openAPIDocumentPassesAValidator() async throws {
        try await TestCollector.run { collector in
            let response = try await collector.connection().request("GET", "/openapi.json")
            #expect(response.status == 200)
            let file = TestScratch.path("openapi-\(UUID().uuidString).json")
            try Data(response.body).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let validator = try await ChildProcess.run(
                "/usr/bin/env", ["python3", "-m", "openapi_spec_validator", file.path], standardErrorToOutput: true)
            #expect(validator.status == 0, "openapi-spec-validator: \(validator.output)")
            let document = try #require(JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: Any])
            for path in ["/v1/events", "/v1/events/{event_id}", "/v1/rejected", "/v1/stream", "/healthz", "/readyz", "/openapi.json", "/v1/catalog"] {
                #expect(paths[path] != nil, "\(path) is documented")
            }
        }
    }
}

/// Server-sent events parsed from chunks, safe to fill from another thread.
final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""

    func append(_ chunk: String) { lock.withLock { text += chunk } }

    var events: [(id: String, data: String)] {
        lock.withLock {
            text.components(separatedBy: "\n\n").compactMap { message in
                var id: String? = nil
                var data: String? = nil
                for line in message.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                    if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
                }
                guard let id, let data else { return nil }
                return (id, data)
            }
        }
    }
}

/// Runs blocking work on a thread of its own, so it never holds a thread of the cooperative pool
/// (nor of Dispatch's small shared pool).
@discardableResult
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}
