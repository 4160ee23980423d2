import CompressNIO
import Foundation
import NIOCore
import TelemetryCatalog
import TelemetryClient
import TelemetryServer
import TelemetryStore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Bodies and clients meant to hurt: each is answered with a 4xx (or cut off), and the collector
/// stays healthy, storing what it should and nothing else.
@Suite struct HostileInputTests {
    /// Posts `body`, expects `status` and error `code`, then checks the collector still answers and
    /// still stores a good event.
    static func expectRefusedAndHealthy(
        _ collector: TestCollector, _ body: [UInt8], headers: [(String, String)] = [], status: Int, code: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let response = try await collector.connection().request("POST", "/v1/events", headers: headers, body: body)
        #expect(response.status == status, "\(response.text.prefix(300))", sourceLocation: sourceLocation)
        #expect(response.text.contains(#""code":"\#(code)""#), "\(response.text.prefix(300))", sourceLocation: sourceLocation)
        try await expectHealthy(collector, sourceLocation: sourceLocation)
    }

    static func expectHealthy(_ collector: TestCollector, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let http = collector.connection()
        #expect(try await http.request("GET", "/healthz").status == 200, sourceLocation: sourceLocation)
        let good = sampleLines(1, seed: UInt64.random(in: 1...UInt64.max))[0]
        #expect(try await http.post(good).json["accepted"] as? Int == 1, sourceLocation: sourceLocation)
    }

    @Test func aHundredThousandDeepJSON() async throws {
        try await TestCollector.run { collector in
            let object = #"{"metadata":"# + String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_001)
            try await Self.expectRefusedAndHealthy(collector, Array(object.utf8), status: 413, code: "too_deep")
            let array = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
            try await Self.expectRefusedAndHealthy(collector, Array(array.utf8), status: 400, code: "not_json")
            let unclosed = String(repeating: #"{"a":["#, count: 100_000)
            try await Self.expectRefusedAndHealthy(collector, Array(unclosed.utf8), status: 413, code: "too_deep")
        }
    }

    @Test func aSixtyFourMebibyteBody() async throws {
        try await TestCollector.run { collector in
            let line = Array(sampleLines(1, seed: 3)[0].utf8) + [10]
            var body: [UInt8] = []
            body.reserveCapacity(64 << 20)
            while body.count < 64 << 20 { body += line }
            try await Self.expectRefusedAndHealthy(collector, body, headers: [("Content-Type", "application/x-ndjson")], status: 413, code: "too_large")
            #expect(try await collector.store.counts().events == 1, "only the health check's event")
        }
    }

    @Test func aGzipBomb() async throws {
        try await TestCollector.run { collector in
            // 256 MiB of zeros inside a JSON string: ~250 KiB of gzip, far over the 16 MiB limit inflated.
            var buffer = ByteBuffer(string: #"{"prompt":""#)
            buffer.writeRepeatingByte(UInt8(ascii: "0"), count: 256 << 20)
            buffer.writeString(#""}"#)
            var compressed = try buffer.compress(with: .gzip())
            let bomb = compressed.readBytes(length: compressed.readableBytes)!
            #expect(bomb.count < 1 << 20)
            try await Self.expectRefusedAndHealthy(collector, bomb, headers: [("Content-Encoding", "gzip")], status: 413, code: "too_large")
        }
    }

    @Test func invalidUTF8AndNULBytes() async throws {
        try await TestCollector.run { collector in
            var event = Array(sampleLines(1, seed: 4)[0].utf8)
            let quote = event.firstIndex(of: UInt8(ascii: "\""))!
            let invalid: [[UInt8]] = [
                Array(#"{"event_type":""#.utf8) + [0xFF, 0xFE, 0xC0, 0xAF] + Array(#""}"#.utf8),  // not UTF-8 at all
                Array(#"{"prompt":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8),  // a UTF-16 surrogate
                [UInt8](repeating: 0, count: 4096),  // NUL bytes only
                Array(#"{"prompt":"a"#.utf8) + [0] + Array(#"b"}"#.utf8),  // a raw NUL in a string
            ]
            for body in invalid {
                try await Self.expectRefusedAndHealthy(collector, body, status: 400, code: "not_json")
            }
            // Next to a good event, an invalid one is rejected alone and kept with its reason.
            event.insert(contentsOf: [0xFF], at: quote + 1)
            let mixed = try await collector.connection().post(sampleLines(1, seed: 5)[0] + "\n" + String(decoding: event, as: UTF8.self))
            #expect(mixed.status == 200 && mixed.json["accepted"] as? Int == 1)
            #expect((mixed.json["rejected"] as? [Any])?.count == 1)
            let stored = try await collector.store.rejected(RejectedQuery())
            #expect(stored.rejected.count == invalid.count + 1, "every refusal is on record")
        }
    }

    @Test func tenMegabyteStrings() async throws {
        try await TestCollector.run { collector in
            var sampler = EventSampler(seed: 6)
            var event = sampler.sample(Catalog.builtin.latest("xumi.generation.start")!)
            event["prompt"] = .string(String(repeating: "a photo of a cat ", count: 10 * 1024 * 1024 / 17))
            try await Self.expectRefusedAndHealthy(collector, Array(event.render().utf8), status: 413, code: "too_large")
            // A 300 KiB prompt fits an event but not the string limit: that field is named.
            event["prompt"] = .string(String(repeating: "x", count: 300 << 10))
            let response = try await collector.connection().post(event.render())
            #expect(response.status == 413)
            #expect("\(response.json["error"] ?? "")".contains("prompt"))
            try await Self.expectHealthy(collector)
        }
    }

    /// A client that sends its request one byte at a time is cut off at the header deadline, while
    /// the collector goes on serving everybody else.
    @Test func slowloris() async throws {
        try await TestCollector.run(configure: { $0.headerTimeout = .seconds(1); $0.bodyTimeout = .seconds(1) }) { collector in
            let port = collector.port
            let slowHead = Array("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 100)
            let slowBody = Array("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{".utf8) + [UInt8](repeating: 32, count: 100)
            for dribble in [slowHead, slowBody] {
                async let slow = offThePool { Self.dribble(dribble, port: port, everyMilliseconds: 100) }
                // Meanwhile everybody else is served.
                try await Task.sleep(for: .milliseconds(300))
                try await Self.expectHealthy(collector)
                let (sent, seconds) = try await slow
                #expect(sent < dribble.count, "cut off before it finished (\(sent) of \(dribble.count) bytes)")
                #expect(seconds < 5, "within the deadline and a little (\(seconds) s)")
            }
            try await Self.expectHealthy(collector)
        }
    }

    /// A request answered before its body is in (here a 404, a route that reads no body) still
    /// leaves its connection a deadline for the next head once the body has come: the request's
    /// end used to drop it, and an idle connection then stayed open for good.
    @Test func aConnectionAnsweredBeforeItsBodyStillHasAHeaderDeadline() async throws {
        try await TestCollector.run(configure: { $0.headerTimeout = .seconds(1); $0.bodyTimeout = .seconds(10) }) { collector in
            let port = collector.port
            let (answer, closedAfter) = try await offThePool { () throws -> (String, Double?) in
                let socket = try RawSocket(port: port, timeoutSeconds: 10)
                try socket.send(Array("POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n".utf8))
                let answer = try socket.receive(until: "\r\n\r\n")
                try socket.send(Array("0123456789".utf8))
                // Idle from here: the collector closes the connection at its header deadline.
                let started = Date()
                var byte: UInt8 = 0
                while recv(socket.fd, &byte, 1, 0) > 0 {}
                let seconds = Date().timeIntervalSince(started)
                return (answer, seconds < 9 ? seconds : nil)
            }
            #expect(answer.hasPrefix("HTTP/1.1 404"), "\(answer)")
            let seconds = try #require(closedAfter, "the idle connection was not closed within 9 s")
            #expect(seconds >= 0.5 && seconds < 3, "\(seconds) s")
            try await Self.expectHealthy(collector)
        }
    }

    /// Sends `bytes` one at a time, `everyMilliseconds` apart, until the server closes the
    /// connection; returns how many were sent and the seconds it took. Blocks.
    static func dribble(_ bytes: [UInt8], port: Int, everyMilliseconds: Int) -> (sent: Int, seconds: Double) {
        guard let socket = try? RawSocket(port: port, timeoutSeconds: 10) else { return (0, 0) }
        let started = Date()
        var sent = 0
        for byte in bytes {
            var one = byte
            if send(socket.fd, &one, 1, Int32(MSG_NOSIGNAL)) != 1 { break }
            sent += 1
            // Closed by the server? (a read of 0 bytes without waiting)
            var probe: UInt8 = 0
            if recv(socket.fd, &probe, 1, Int32(MSG_DONTWAIT)) == 0 { break }
            usleep(useconds_t(everyMilliseconds * 1000))
        }
        return (sent, Date().timeIntervalSince(started))
    }
}
