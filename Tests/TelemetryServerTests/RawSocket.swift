import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP connection to a loopback port, for requests our HTTP client would not send.
final class RawSocket {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The socket, for callers that send in their own way (one byte at a time).
    let fd: Int32
    private var received: [UInt8] = []

    /// Connects; reads give up after `timeoutSeconds` of silence (a failure, not a wait forever).
    init(port: Int, timeoutSeconds: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw Failure(description: "cannot connect to 127.0.0.1:\(port)")
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "send failed: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    /// What arrives up to and including the first `marker`; the rest stays for the next call.
    func receive(until marker: String) throws -> String {
        let pattern = Array(marker.utf8)
        while true {
            if let range = received.firstRange(of: pattern) {
                let taken = Array(received[..<range.upperBound])
                received.removeFirst(range.upperBound)
                return String(decoding: taken, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else {
                throw Failure(description: "no \(marker) before the connection \(count == 0 ? "closed" : "timed out"): \(String(decoding: received, as: UTF8.self))")
            }
            received += chunk[..<count]
        }
    }
}
