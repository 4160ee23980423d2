import CompressNIO
import Foundation
import NIOCore
import TelemetryCatalog
import TelemetryClient
import TelemetryStore
import TelemetryPipeline
import TelemetryServer
import Testing

@Suite struct IngestTests {
    @Test func everyBodyFormIsAccepted() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            let lines = sampleLines(9, seed: 11)
            let one = try await http.post(lines[0])
            #expect(one.status == 200)
            #expect(one.json["accepted"] as? Int == 1)
            let array = try await http.post("[" + lines[1...3].joined(separator: ",") + "]")
            #expect(array.json["accepted"] as? Int == 3)
            let ndjson = try await http.post(lines[4...6].joined(separator: "\n") + "\n", headers: [("Content-Type", "application/x-ndjson")])
            #expect(ndjson.json["accepted"] as? Int == 3)
            // NDJSON without the content type, CRLF line ends and blank lines.
            let loose = try await http.post("\r\n" + lines[7] + "\r\n\r\n" + lines[8] + "\r\n")
            #expect(loose.json["accepted"] as? Int == 2)
            let counts = try await collector.store.counts()
            #expect(counts.events == 9)
        }
    }

    @Test func gzipBodies() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            let body = sampleLines(50, seed: 12).joined(separator: "\n")
            var buffer = ByteBuffer(string: body)
            var compressed = try buffer.compress(with: .gzip())
            let bytes = compressed.readBytes(length: compressed.readableBytes)!
            let response = try await http.request("POST", "/v1/events", headers: [("Content-Encoding", "gzip")], body: bytes)
            #expect(response.status == 200)
            #expect(response.text.contains(#""accepted":50"#))
            let bad = try await http.request("POST", "/v1/events", headers: [("Content-Encoding", "gzip")], body: Array("not gzip".utf8))
            #expect(bad.status == 400)
            #expect(bad.text.contains("bad_gzip"))
            let brotli = try await http.request("POST", "/v1/events", headers: [("Content-Encoding", "br")], body: Array(body.utf8))
            #expect(brotli.status == 415)
        }
    }

    @Test func gzipBombIs413() async throws {
        try await TestCollector.run(configure: { $0.maxBodyBytes = 1 << 20 }) { collector in
            // 16 MiB of spaces compresses to ~16 KiB: inflating it must stop at the 1 MiB limit.
            var buffer = ByteBuffer(repeating: UInt8(ascii: " "), count: 16 << 20)
            var compressed = try buffer.compress(with: .gzip())
            let bytes = compressed.readBytes(length: compressed.readableBytes)!
            #expect(bytes.count < 1 << 20)
            let response = try await collector.connection().request("POST", "/v1/events", headers: [("Content-Encoding", "gzip")], body: bytes)
            #expect(response.status == 413)
            #expect(try await collector.connection().request("GET", "/healthz").status == 200)
        }
    }

    /// A large request is validated in parts side by side; the answer and the store are as if it
    /// had been one: every rejection with its index, in order, and every good event stored once.
    @Test func aLargeRequestValidatedInPartsAnswersInOrder() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            var lines = sampleLines(1_500, seed: 19)
            let bad = [7, 749, 750, 1_499]
            for index in bad { lines[index] = #"{"event_type":"xumi.generation.start","event_id":"bad-\#(index)"}"# }
            // A repeat of an earlier event in a later part is a duplicate, not a second row.
            lines[1_200] = lines[3]
            let result = try await http.post(lines.joined(separator: "\n"))
            #expect(result.status == 200)
            #expect(result.json["accepted"] as? Int == 1_500 - bad.count - 1)
            #expect(result.json["duplicates"] as? Int == 1)
            let rejected = try #require(result.json["rejected"] as? [[String: Any]])
            #expect(rejected.map { $0["index"] as? Int } == bad)
            #expect(rejected.map { $0["event_id"] as? String } == bad.map { "bad-\($0)" })
            let stored = try await collector.store.counts()
            #expect(stored.events == 1_500 - bad.count - 1)
            #expect(stored.rejected == bad.count)
        }
    }

    /// NDJSON lines: `\n` or `\r\n` ends a line, blank and whitespace-only lines are skipped, the
    /// last line needs no newline, and the event count is bounded.
    @Test func ndjsonLinesAreSplitWhereTheyEnd() throws {
        func lines(_ text: String, maxEvents: Int = 100) throws -> [String] {
            let bytes = Array(text.utf8)
            let split = bytes.withUnsafeBytes { raw in
                Result { () throws(EventBody.Failure) in try EventBody.split(raw, ndjson: true, maxEvents: maxEvents, maxDepth: 32) }
            }
            return try split.get().map { String(decoding: bytes[$0], as: UTF8.self) }
        }
        #expect(throws: EventBody.Failure.self) { try lines("") }  // empty: not JSON
        #expect(throws: EventBody.Failure.self) { try lines("\n \r\n") }  // whitespace only: empty
        #expect(try lines("{\"a\":1}") == [#"{"a":1}"#])
        #expect(try lines("{\"a\":1}\n{\"b\":2}\n") == [#"{"a":1}"#, #"{"b":2}"#])
        #expect(try lines("{\"a\":1}\r\n \t \r\n\n{\"b\":2}") == [#"{"a":1}"#, #"{"b":2}"#])
        #expect(try lines("\r\n{\"a\":1}\r\n") == [#"{"a":1}"#])
        #expect(try lines(String(repeating: "{}\n", count: 3), maxEvents: 3).count == 3)
        #expect(throws: EventBody.Failure.self) { try lines(String(repeating: "{}\n", count: 4), maxEvents: 3) }
    }

    /// How the validated parts of a request, and the batches of a group commit, are joined:
    /// order kept, the source left empty, and a source whose storage is shared left intact for
    /// its other holder.
    @Test func appendMovingKeepsOrderAndSharedStorage() {
        final class Box { let value: Int; init(_ value: Int) { self.value = value } }
        var joined: [Box] = []
        var first = (0..<3).map(Box.init)
        joined.appendMoving(&first)  // into an empty array: storage handed over
        #expect(first.isEmpty)
        var second = (3..<7).map(Box.init)
        let kept = second  // shared: moving must not disturb this holder
        joined.appendMoving(&second)
        #expect(second.isEmpty)
        #expect(kept.map(\.value) == [3, 4, 5, 6])
        var third = (7..<10).map(Box.init)
        joined.appendMoving(&third)
        #expect(joined.map(\.value) == Array(0..<10))
        // Nothing was retained twice: each box of the unshared parts has the joined array alone.
        #expect(isKnownUniquelyReferenced(&joined[8]))
        #expect(!isKnownUniquelyReferenced(&joined[4]))  // also in `kept`
        withExtendedLifetime(kept) {}
    }

    @Test func partialAcceptanceReportsEveryRejection() async throws {
        try await TestCollector.run { collector in
            let http = collector.connection()
            var lines = sampleLines(4, seed: 13)
            lines.insert(#"{"event_type":"xumi.generation.start","event_id":"e-1"}"#, at: 1)
            lines.insert("{not json", at: 3)
            let result = try await http.post(lines.joined(separator: "\n"))
            #expect(result.status == 200)
            #expect(result.json["accepted"] as? Int == 4)
            let rejected = try #require(result.json["rejected"] as? [[String: Any]])
            #expect(rejected.map { $0["index"] as? Int } == [1, 3])
            #expect(rejected[0]["event_id"] as? String == "e-1")
            let codes = (rejected[0]["errors"] as? [[String: String]])?.map { $0["code"]! } ?? []
            #expect(codes.contains("bad_uuid") && codes.contains("missing"))
            #expect((rejected[1]["errors"] as? [[String: String]])?.first?["code"] == "malformed_json")
            // Kept in the rejected store, raw bytes and reasons.
            let stored = try await http.getJSON("/v1/rejected")
            let items = try #require(stored.json["rejected"] as? [[String: Any]])
            #expect(items.count == 2)
            #expect(items.contains { $0["raw"] as? String == "{not json" })
            let byCode = try await http.getJSON("/v1/rejected?code=bad_uuid")
            #expect((byCode.json["rejected"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test func dedupeWithinAcrossBatchesAndAcrossRestarts() async throws {
        let directory = TestScratch.path("dedupe-\(UUID().uuidString)")
        let path = directory.appendingPathComponent("t.sqlite").path
        let lines = sampleLines(20, seed: 14)
        try await TestCollector.run(path: path) { collector in
            let http = collector.connection()
            let first = try await http.post((lines[0..<10] + lines[0..<3]).joined(separator: "\n"))
            #expect(first.json["accepted"] as? Int == 10)
            #expect(first.json["duplicates"] as? Int == 3)
            let second = try await http.post(lines[5..<15].joined(separator: "\n"))
            #expect(second.json["accepted"] as? Int == 5)
            #expect(second.json["duplicates"] as? Int == 5)
        }
        try await TestCollector.run(path: path) { collector in
            let third = try await collector.connection().post(lines.joined(separator: "\n"))
            #expect(third.json["accepted"] as? Int == 5)
            #expect(third.json["duplicates"] as? Int == 15)
            #expect(try await collector.store.counts().events == 20)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    @Test func concurrentRequestsAreGroupCommittedWithoutLossOrDoubles() async throws {
        try await TestCollector.run { collector in
            let lines = sampleLines(2_000, seed: 15)
            let totals = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for client in 0..<8 {
                    group.addTask {
                        let http = collector.connection()
                        var accepted = 0
                        var duplicates = 0
                        // Every client sends its own quarter twice over, overlapping its neighbour's.
                        for batch in 0..<10 {
                            let start = (client * 250 + batch * 50) % 2_000
                            let result = try await http.post(lines[start..<(start + 50)].joined(separator: "\n"))
                            accepted += result.json["accepted"] as? Int ?? 0
                            duplicates += result.json["duplicates"] as? Int ?? 0
                        }
                        return (accepted, duplicates)
                    }
                }
                return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
            }
            let distinct = Set((0..<8).flatMap { client in (0..<10).flatMap { batch -> [Int] in
                let start = (client * 250 + batch * 50) % 2_000
                return Array(start..<(start + 50))
            } })
            #expect(totals.0 == distinct.count)
            #expect(totals.0 + totals.1 == 8 * 10 * 50)
            #expect(try await collector.store.counts().events == distinct.count)
        }
    }

    /// A client that sends `Expect: 100-continue` (curl does for bodies over 1 MiB) waits for
    /// `100 Continue` before it sends the body: it gets it as soon as the head is in, then the
    /// final answer after the body.
    @Test func expectContinueIsAnsweredBeforeTheBody() async throws {
        try await TestCollector.run { collector in
            let body = sampleLines(3, seed: 18).joined(separator: "\n")
            let head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                + "Content-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\n\r\n"
            let port = collector.port
            let (interim, final) = try await offThePool { () throws -> (String, String) in
                // The 100 and the final answer both come from the route, on the cooperative pool,
                // which the whole suite shares: a full run starved it for over 10 s once. Waits
                // allow 90 s, as elsewhere.
                let socket = try RawSocket(port: port, timeoutSeconds: 90)
                try socket.send(Array(head.utf8))
                // Nothing of the body is sent until the collector answers (a client would wait).
                let interim = try socket.receive(until: "\r\n\r\n")
                try socket.send(Array(body.utf8))
                let final = try socket.receive(until: #""rejected":"#)
                return (interim, final)
            }
            #expect(interim.hasPrefix("HTTP/1.1 100 Continue\r\n"), "\(interim)")
            #expect(final.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(final)")
            #expect(final.contains(#""accepted":3"#), "\(final)")
        }
    }

    /// A chunked body declares no length: it is read as it comes, and bounded by `--max-body` all
    /// the same. The requests go over one connection, so the second reads into the array the
    /// first was read into (the collector keeps a few between requests).
    @Test func aChunkedBodyIsReadWholeAndBoundedByTheLimit() async throws {
        try await TestCollector.run(configure: { $0.maxBodyBytes = 64 << 10 }) { collector in
            @Sendable func chunked(_ body: [UInt8], pieces: Int) -> [UInt8] {
                var out = Array("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                let size = (body.count + pieces - 1) / pieces
                for start in stride(from: 0, to: body.count, by: size) {
                    let piece = body[start..<min(body.count, start + size)]
                    out += Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + Array("\r\n".utf8)
                }
                return out + Array("0\r\n\r\n".utf8)
            }
            let first = sampleLines(20, seed: 19)
            let second = sampleLines(7, seed: 20)
            let tooLarge = Array(String(repeating: " ", count: 70 << 10).utf8) + Array(first[0].utf8)
            let port = collector.port
            let answers = try await offThePool { () throws -> [String] in
                let socket = try RawSocket(port: port, timeoutSeconds: 90)
                var answers: [String] = []
                for (body, pieces) in [(first, 5), (second, 3)] {
                    try socket.send(chunked(Array(body.joined(separator: "\n").utf8), pieces: pieces))
                    // The answer's last bytes, when no event is rejected: the next answer starts after.
                    answers.append(try socket.receive(until: #""rejected":[]}"#))
                }
                try socket.send(chunked(tooLarge, pieces: 4))
                answers.append(try socket.receive(until: #""too_large""#))
                return answers
            }
            #expect(answers[0].hasPrefix("HTTP/1.1 200 OK\r\n") && answers[0].contains(#""accepted":20"#), "\(answers[0])")
            #expect(answers[1].hasPrefix("HTTP/1.1 200 OK\r\n") && answers[1].contains(#""accepted":7"#), "\(answers[1])")
            #expect(answers[2].hasPrefix("HTTP/1.1 413 "), "\(answers[2])")
            // Every event of both bodies is stored as sent: none took bytes of the other body.
            for line in first + second {
                let sent = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let id = try #require(UUIDValue(sent["event_id"] as? String ?? ""))
                let stored = try #require(try await collector.store.event(id: id, tenant: nil), "event \(id)")
                let json = try #require(try JSONSerialization.jsonObject(with: Data(stored.json.utf8)) as? [String: Any])
                for field in ["event_id", "event_type", "tenant_id", "timestamp"] {
                    #expect(json[field] as? String == sent[field] as? String, "\(field) of \(id)")
                }
            }
            #expect(try await collector.store.counts().events == 27)
        }
    }

    /// A body declared larger than the limit is refused on its head, before any of it is sent: a
    /// sender waiting for `100 Continue` gets the 413 instead (and the connection is not kept, its
    /// next bytes being unknown); one that did not wait gets it as soon as its head is read.
    @Test func aBodyDeclaredTooLargeIsRefusedOnItsHead() async throws {
        try await TestCollector.run(configure: { $0.maxBodyBytes = 64 << 10 }) { collector in
            let port = collector.port
            let answers = try await offThePool { () throws -> [String] in
                var answers: [String] = []
                for expect in [true, false] {
                    let socket = try RawSocket(port: port, timeoutSeconds: 10)
                    var head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                    head += "Content-Length: \((64 << 10) + 1)\r\n" + (expect ? "Expect: 100-continue\r\n" : "") + "\r\n"
                    try socket.send(Array(head.utf8))
                    // Nothing of the body was sent: the answer comes on the head alone.
                    answers.append(try socket.receive(until: "send smaller batches"))
                }
                return answers
            }
            for answer in answers {
                #expect(answer.hasPrefix("HTTP/1.1 413 "), "\(answer)")
                #expect(answer.contains("65537 bytes, more than 65536"), "\(answer)")
            }
            #expect(answers[0].lowercased().contains("connection: close"), "\(answers[0])")
            #expect(try await collector.connection().post(sampleLines(3, seed: 40).joined(separator: "\n")).status == 200)
        }
    }

    @Test func statusesOfTheContract() async throws {
        try await TestCollector.run(configure: { $0.maxBodyBytes = 64 << 10 }, limits: .init(maxEventsPerRequest: 5)) { collector in
            let http = collector.connection()
            #expect(try await http.post("").status == 400)
            #expect(try await http.post("<xml/>").status == 400)
            #expect(try await http.post("[1, 2").status == 400)
            #expect(try await http.post("{{{{").status == 400, "nothing in it is JSON")
            let big = String(repeating: " ", count: 100 << 10) + "{}"
            #expect(try await http.post(big).status == 413)
            let many = try await http.post(sampleLines(6, seed: 16).joined(separator: "\n"))
            #expect(many.status == 413)
            #expect((many.json["error"] as? [String: String])?["code"] == "too_many_events")
            // Nothing readable in the body (one event, too deep): refused whole, as over a limit.
            let deep = #"{"metadata":"# + String(repeating: "[", count: 20_000) + "}"
            let deepResult = try await http.post(deep)
            #expect(deepResult.status == 413)
            #expect((deepResult.json["error"] as? [String: String])?["code"] == "too_deep")
            // Next to a good event, the deep one is just rejected (partial acceptance).
            let mixed = try await http.post(sampleLines(1, seed: 17)[0] + "\n" + deep)
            #expect(mixed.status == 200)
            #expect(mixed.json["accepted"] as? Int == 1)
            let deepErrors = (mixed.json["rejected"] as? [[String: Any]])?.first?["errors"] as? [[String: String]]
            #expect(deepErrors?.first?["code"] == "too_deep")
            #expect(try await http.request("GET", "/healthz").status == 200)
            #expect(try await http.request("GET", "/readyz").status == 200)
            #expect(try await http.request("GET", "/v1/events/not-a-uuid").status == 400)
            #expect(try await http.request("GET", "/v1/events/0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11").status == 404)
            #expect(try await http.request("GET", "/v1/events?limit=0").status == 400)
            #expect(try await http.request("GET", "/v1/events?no_such_field=1").status == 400)
            #expect(try await http.request("GET", "/v1/catalog/xumi.generation.start").status == 200)
            #expect(try await http.request("GET", "/v1/catalog/nope").status == 404)
        }
    }

    @Test func storeFullIs503WithNothingStoredAndRecovers() async throws {
        try await TestCollector.run(maxBytes: 256 << 10) { collector in
            let http = collector.connection()
            var acknowledged: Set<String> = []
            var sawFull = false
            for batch in 0..<200 {
                let lines = sampleLines(100, seed: 1000 + UInt64(batch))
                let result = try await http.post(lines.joined(separator: "\n"))
                if result.status == 503 {
                    sawFull = true
                    #expect((result.json["error"] as? [String: String])?["code"] == "store_full")
                    break
                }
                #expect(result.status == 200)
                acknowledged.formUnion(lines.map(eventID))
            }
            #expect(sawFull, "the store never filled")
            #expect(try await collector.store.counts().events == acknowledged.count, "nothing unacknowledged was stored")
            // Room again: ingest resumes by itself.
            try collector.store.setMaxBytes(64 << 20)
            let after = try await http.post(sampleLines(10, seed: 99).joined(separator: "\n"))
            #expect(after.status == 200)
            #expect(after.json["accepted"] as? Int == 10)
            #expect(try await collector.store.integrityCheck() == "ok")
        }
    }
}
