import Foundation
import TelemetryClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The client's side of `Expect: 100-continue` (`HTTPConnection`), against a loopback listener
/// that answers as a server might: the collector refusing on the head, a server that never answers
/// the expectation, and one that refuses expectations (417).
@Suite(.timeLimit(.minutes(1))) struct ExpectContinueClientTests {
    static let large = [UInt8](repeating: UInt8(ascii: "x"), count: HTTPConnection.expectContinueBytes + 10)

    @Test func aBodyRefusedOnItsHeadIsNeverSent() async throws {
        let listener = try Listener()
        let served = listener.serve { client in
            let head = try client.readHead()
            try client.write("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
            // Whatever comes after the head, until the client closes: nothing.
            return (head, try client.readToEnd(seconds: 5).count)
        }
        let answer = try await offThePool { try HTTPConnection(host: "127.0.0.1", port: listener.port, expectsContinue: true).request("POST", "/v1/events", body: Self.large) }
        let (head, sent) = try await served.value
        #expect(head.lowercased().contains("expect: 100-continue"), "\(head)")
        #expect(answer.status == 429 && answer.text == "{}")
        #expect(sent == 0, "the body was not sent")
    }

    @Test func withoutAnAnswerTheBodyGoesAfterASecond() async throws {
        let listener = try Listener()
        let served = listener.serve { client in
            _ = try client.readHead()
            let started = Date()
            let body = try client.read(count: Self.large.count, seconds: 10)
            let waited = Date().timeIntervalSince(started)
            try client.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return (body.count, waited)
        }
        let answer = try await offThePool { try HTTPConnection(host: "127.0.0.1", port: listener.port, expectsContinue: true).request("POST", "/v1/events", body: Self.large) }
        let (received, waited) = try await served.value
        #expect(answer.status == 200 && answer.text == "ok")
        #expect(received == Self.large.count)
        #expect(waited >= 0.9, "the client waited for an answer before sending the body: \(waited) s")
    }

    @Test func anExpectationRefusedIsSentAgainWithout() async throws {
        let listener = try Listener()
        let served = listener.serve(connections: 2) { client in
            let head = try client.readHead()
            if head.lowercased().contains("expect:") {
                try client.write("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                return (head, 0)
            }
            let body = try client.read(count: Self.large.count, seconds: 10)
            try client.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return (head, body.count)
        }
        let answer = try await offThePool { try HTTPConnection(host: "127.0.0.1", port: listener.port, expectsContinue: true).request("POST", "/v1/events", body: Self.large) }
        let exchanges = try await served.value
        #expect(answer.status == 200)
        #expect(exchanges.count == 2 && exchanges[1].1 == Self.large.count, "\(exchanges.map(\.1))")
        #expect(exchanges.last.map { !$0.0.lowercased().contains("expect:") } == true)
    }

    @Test func aSmallBodyIsSentWithItsHead() async throws {
        let listener = try Listener()
        let served = listener.serve { client in
            let head = try client.readHead()
            let body = try client.read(count: 5, seconds: 10)
            try client.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return (head, body.count)
        }
        let answer = try await offThePool { try HTTPConnection(host: "127.0.0.1", port: listener.port, expectsContinue: true).request("POST", "/v1/events", body: Array("hello".utf8)) }
        let (head, received) = try await served.value
        #expect(answer.status == 200 && received == 5)
        #expect(!head.lowercased().contains("expect:"), "\(head)")
    }
}

/// A listening socket on loopback that plays the server, one connection after another, on a
/// thread of its own.
private final class Listener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, listen(s, 4) == 0 else {
            close(s)
            throw RawSocket.Failure(description: "cannot listen on loopback")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(s, $0, &length) }
        }
        fd = s
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// Accepts `connections` connections in turn and runs `exchange` on each, on a thread started
    /// now (not on the cooperative pool, which the tests running beside may hold for seconds, longer
    /// than the client waits for an answer to its expectation); `await` the returned value for
    /// their results in order.
    func serve<T: Sendable>(connections: Int = 1, _ exchange: @escaping @Sendable (Accepted) throws -> T) -> Served<[T]> {
        let served = Served<[T]>()
        let fd = self.fd
        Thread {
            served.finish(
                Result {
                    try (0..<connections).map { _ in
                        let client = accept(fd, nil, nil)
                        guard client >= 0 else { throw RawSocket.Failure(description: "accept failed") }
                        defer { close(client) }
                        return try exchange(Accepted(fd: client))
                    }
                })
        }.start()
        return served
    }

    func serve<T: Sendable>(_ exchange: @escaping @Sendable (Accepted) throws -> T) -> Served<T> {
        let one = Served<T>()
        let all = serve(connections: 1, exchange)
        Thread { one.finish(Result { try all.wait()[0] }) }.start()
        return one
    }

    /// The result of a thread's work, awaited off the pool.
    final class Served<T: Sendable>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<T, any Error>?

        func finish(_ result: Result<T, any Error>) {
            self.result = result
            done.signal()
        }

        func wait() throws -> T {
            done.wait()
            return try result!.get()
        }

        var value: T {
            get async throws { try await offThePool { try self.wait() } }
        }
    }

    final class Accepted: @unchecked Sendable {
        let fd: Int32
        private var pending: [UInt8] = []

        init(fd: Int32) { self.fd = fd }

        /// Reads up to `limit` more bytes within `seconds`; empty at the end of the stream or on timeout.
        private func receive(seconds: Double) throws -> [UInt8] {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(seconds * 1000)) > 0 else { return [] }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return count > 0 ? Array(chunk[..<count]) : []
        }

        func readHead() throws -> String {
            while true {
                if let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
                    let head = String(decoding: pending[..<end.upperBound], as: UTF8.self)
                    pending.removeFirst(end.upperBound)
                    return head
                }
                let more = try receive(seconds: 10)
                guard !more.isEmpty else { throw RawSocket.Failure(description: "no request head") }
                pending += more
            }
        }

        func read(count: Int, seconds: Double) throws -> [UInt8] {
            let deadline = Date().addingTimeInterval(seconds)
            while pending.count < count && Date() < deadline {
                let more = try receive(seconds: deadline.timeIntervalSinceNow)
                if more.isEmpty { break }
                pending += more
            }
            defer { pending.removeFirst(min(count, pending.count)) }
            return Array(pending.prefix(count))
        }

        /// Everything until the peer closes (or `seconds` pass).
        func readToEnd(seconds: Double) throws -> [UInt8] {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let more = try receive(seconds: deadline.timeIntervalSinceNow)
                if more.isEmpty { break }
                pending += more
            }
            defer { pending.removeAll() }
            return pending
        }

        func write(_ text: String) throws {
            let bytes = Array(text.utf8)
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent == bytes.count else { throw RawSocket.Failure(description: "send failed") }
        }
    }
}
