#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Why an HTTP exchange with the collector failed.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    /// `connect_failed`, `io`, `timeout`, `bad_response` or `closed`.
    public let code: String
    public let message: String

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    /// Whether the request may be retried on a new connection (the collector was unreachable or
    /// the connection broke; nothing was acknowledged).
    public var isRetryable: Bool { code != "bad_response" }
}

/// A response from the collector.
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names in lower case.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name == lower }?.value
    }

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// One keep-alive HTTP/1.1 connection to a collector, over a plain TCP socket.
///
/// Deliberately small: the SDK and the CLI speak to the collector's own API (no TLS, no redirects,
/// no proxies), and a service embedding the SDK should not pull in an HTTP stack for that. The
/// calls block; the `async` variants run them on a dedicated thread, off Swift's cooperative pool.
public final class HTTPConnection: @unchecked Sendable {
    // @unchecked: a connection is used by one caller at a time (documented); the file descriptor
    // is its only state.
    public let host: String
    public let port: Int
    /// Sent as `Authorization: Bearer KEY` with every request when set.
    public let apiKey: String?
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    /// Whether any byte of the current exchange's response has arrived.
    private var responseStarted = false
    /// Runs the `async` requests. A thread of the connection's own, not Dispatch's global pool:
    /// that pool is small on Linux and grows slowly, so many connections blocked in `recv` there
    /// starved everything else on it (a collector in the same process among them) for seconds.
    private let worker = BlockingWorker(name: "telemetry.http")

    /// Creates a connection; it connects on first use.
    /// Send bodies of ``expectContinueBytes`` or more with `Expect: 100-continue` (see there).
    public let expectsContinue: Bool

    public init(host: String, port: Int, apiKey: String? = nil, expectsContinue: Bool = false) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.expectsContinue = expectsContinue
    }

    deinit {
        close()
        worker.stop()
    }

    /// Closes the socket; the next request reconnects.
    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        buffer.removeAll()
    }

    private func connect() throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw HTTPClientError("connect_failed", "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var lastError = ECONNREFUSED
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let ai = info {
            let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if s >= 0 {
                if Glibc.connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    fd = s
                    return
                }
                lastError = errno
                Glibc.close(s)
            }
            info = ai.pointee.ai_next
        }
        throw HTTPClientError("connect_failed", "cannot connect to \(host):\(port): \(String(cString: strerror(lastError)))")
    }

    /// Sends one request and reads the whole response. Blocks.
    ///
    /// - Throws: ``HTTPClientError``; the connection is closed after any error.
    public func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [], timeoutSeconds: Int = 60
    ) throws -> HTTPResponse {
        let reused = fd >= 0
        do {
            return try exchange(method, path, headers: headers, body: body, timeoutSeconds: timeoutSeconds, onChunk: nil)
        } catch let error as HTTPClientError where reused && (error.code == "closed" || error.code == "io") && !responseStarted {
            // The collector closed the kept-alive connection while it was idle (its header timeout):
            // nothing was answered, so the request goes again on a new connection, once. (A POST of
            // events is safe to repeat: the collector dedupes by event_id.)
            close()
            do {
                return try exchange(method, path, headers: headers, body: body, timeoutSeconds: timeoutSeconds, onChunk: nil)
            } catch {
                close()
                throw error
            }
        } catch {
            close()
            throw error
        }
    }

    /// Sends a request and calls `onChunk` with each piece of the body as it arrives (for streams);
    /// returns when the body ends. Blocks.
    public func stream(
        _ method: String, _ path: String, headers: [(String, String)] = [], onHead: (Int) throws -> Void = { _ in },
        onChunk: @escaping ([UInt8]) throws -> Bool
    ) throws -> HTTPResponse {
        do {
            return try exchange(method, path, headers: headers, body: [], timeoutSeconds: 0, onHead: onHead, onChunk: onChunk)
        } catch {
            close()
            throw error
        }
    }

    /// ``request(_:_:headers:body:timeoutSeconds:)`` on the connection's own thread.
    public func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [], timeoutSeconds: Int = 60
    ) async throws -> HTTPResponse {
        try await withCheckedThrowingContinuation { continuation in
            worker.submit {
                continuation.resume(with: Result { try self.request(method, path, headers: headers, body: body, timeoutSeconds: timeoutSeconds) })
            }
        }
    }

    private func exchange(
        _ method: String, _ path: String, headers: [(String, String)], body: [UInt8], timeoutSeconds: Int,
        onHead: (Int) throws -> Void = { _ in }, onChunk: (([UInt8]) throws -> Bool)?, mayExpect: Bool = true
    ) throws -> HTTPResponse {
        if fd < 0 { try connect() }
        responseStarted = false
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
        if let apiKey { head += "Authorization: Bearer \(apiKey)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        let expecting = expectsContinue && mayExpect && body.count >= Self.expectContinueBytes
        if expecting { head += "Expect: 100-continue\r\n" }
        head += "\r\n"
        try writeAll(Array(head.utf8))

        var response: HTTPResponse
        if expecting {
            // The body goes once the collector says it will read it (100), or after a second
            // without an answer (a server or proxy that does not answer expectations). A final
            // answer instead (429 when it is past what it can take) means the body is not sent.
            var wait = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
            var interim: HTTPResponse? = nil
            do {
                interim = try readHead()
            } catch let error as HTTPClientError where error.code == "timeout" {
                interim = nil
            }
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if interim?.status == 417 {
                // Something on the way does not take expectations: the request again, without.
                close()
                return try exchange(
                    method, path, headers: headers, body: body, timeoutSeconds: timeoutSeconds, onHead: onHead, onChunk: onChunk,
                    mayExpect: false)
            }
            if let interim, interim.status >= 200 {
                // Answered without the body: the connection cannot carry another request.
                response = interim
                response.headers.append((name: "connection", value: "close"))
            } else {
                try writeAll(body)
                response = try readFinalHead()
            }
        } else {
            if !body.isEmpty { try writeAll(body) }
            response = try readFinalHead()
        }
        let status = response.status
        try onHead(status)
        if method == "HEAD" || status == 204 || status == 304 { return response }
        if let length = response.header("content-length").flatMap(Int.init) {
            try readAtLeast(length)
            response.body = Array(buffer[..<length])
            buffer.removeSubrange(..<length)
            if let onChunk { _ = try onChunk(response.body) }
        } else if response.header("transfer-encoding")?.lowercased().contains("chunked") == true {
            while true {
                let lineEnd = try readUntil([13, 10])
                let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingSpaces(), radix: 16) else {
                    throw HTTPClientError("bad_response", "bad chunk size")
                }
                buffer.removeSubrange(..<(lineEnd + 2))
                if size == 0 {
                    _ = try readUntil([13, 10])
                    buffer.removeSubrange(..<2)
                    break
                }
                try readAtLeast(size + 2)
                let chunk = Array(buffer[..<size])
                buffer.removeSubrange(..<(size + 2))
                if let onChunk {
                    if !(try onChunk(chunk)) {
                        close()
                        return response
                    }
                } else {
                    response.body += chunk
                }
            }
        } else {
            // Body until the connection closes.
            while try fill() {}
            response.body = buffer
            buffer.removeAll()
            close()
        }
        if response.header("connection")?.lowercased() == "close" { close() }
        return response
    }

    /// With ``expectsContinue``, bodies this large or larger are sent with `Expect: 100-continue`:
    /// the collector answers 100 once it admits the request, or refuses it on its head (429 when
    /// it is past what it can take) and the body is never sent. Smaller bodies cost less to send
    /// than the round trip. Off by default: it costs a round trip a request, and a server that
    /// does not answer expectations a second (then the body goes anyway).
    public static let expectContinueBytes = 64 << 10

    /// The status line and headers of the next response (interim or final).
    private func readHead() throws -> HTTPResponse {
        let headEnd = try readUntil([13, 10, 13, 10])
        let headText = String(decoding: buffer[..<headEnd], as: UTF8.self)
        buffer.removeSubrange(..<(headEnd + 4))
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw HTTPClientError("bad_response", "not an HTTP response: \(headText.prefix(80))")
        }
        var responseHeaders: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            responseHeaders.append(
                (line[..<colon].lowercased(), String(line[line.index(after: colon)...]).trimmingSpaces()))
        }
        return HTTPResponse(status: status, headers: responseHeaders, body: [])
    }

    /// The head of the final response, past any interim (1xx) ones.
    private func readFinalHead() throws -> HTTPResponse {
        while true {
            let head = try readHead()
            if head.status >= 200 { return head }
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        try bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw HTTPClientError("io", "send failed: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
                responseStarted = true
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw HTTPClientError("timeout", "timed out waiting for the collector") }
            throw HTTPClientError("io", "receive failed: \(String(cString: strerror(errno)))")
        }
    }

    private func readAtLeast(_ count: Int) throws {
        while buffer.count < count {
            guard try fill() else { throw HTTPClientError("closed", "the connection closed mid-response") }
        }
    }

    private func readUntil(_ marker: [UInt8]) throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= marker.count {
                for i in searchFrom...(buffer.count - marker.count) where buffer[i] == marker[0] {
                    if buffer[i..<(i + marker.count)].elementsEqual(marker) { return i }
                }
                searchFrom = buffer.count - marker.count + 1
            }
            guard try fill() else { throw HTTPClientError("closed", "the connection closed mid-response") }
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
