#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a file descriptor as lines, in large chunks, holding at most one chunk plus the longest
/// line (up to a limit) in memory, whatever the file's size.
struct LineReader {
    /// What the reader hands out for each line.
    enum Line {
        /// The line's bytes, without the newline (and without a trailing `\r`).
        case bytes(UnsafeRawBufferPointer)
        /// The line was longer than the limit; its bytes were skipped.
        case tooLong(length: Int)
    }

    let fd: Int32
    let maxLineBytes: Int
    private(set) var bytesRead: Int = 0
    private var buffer: UnsafeMutableRawBufferPointer
    private var carry: [UInt8] = []
    private var skippingLongLine = false
    private var skippedLength = 0

    init(fd: Int32, chunkSize: Int = 4 << 20, maxLineBytes: Int) {
        self.fd = fd
        self.maxLineBytes = maxLineBytes
        self.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
    }

    func close() { buffer.deallocate() }

    /// Calls `body` for every line, in order, with the bytes read so far; the line's bytes are valid
    /// only during the call.
    ///
    /// - Throws: `CommandFailure` when reading fails.
    mutating func forEachLine(_ body: (Line, _ bytesRead: Int) -> Void) throws {
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw CommandFailure("read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytesRead += n
            var start = 0
            let base = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            while start < n {
                guard let newline = memchr(base + start, Int32(UInt8(ascii: "\n")), n - start) else {
                    appendCarry(UnsafeRawBufferPointer(start: base + start, count: n - start))
                    break
                }
                let end = UnsafeRawPointer(newline) - UnsafeRawPointer(base)
                let piece = UnsafeRawBufferPointer(start: base + start, count: end - start)
                if skippingLongLine {
                    body(.tooLong(length: skippedLength + piece.count), bytesRead)
                    skippingLongLine = false
                    skippedLength = 0
                } else if carry.isEmpty {
                    if piece.count > maxLineBytes {
                        body(.tooLong(length: piece.count), bytesRead)
                    } else {
                        body(.bytes(trimCR(piece)), bytesRead)
                    }
                } else {
                    appendCarry(piece)
                    if skippingLongLine {
                        body(.tooLong(length: skippedLength), bytesRead)
                        skippingLongLine = false
                        skippedLength = 0
                    } else {
                        carry.withUnsafeBytes { body(.bytes(trimCR($0)), bytesRead) }
                    }
                    carry.removeAll(keepingCapacity: carry.capacity <= 1 << 20)
                }
                start = end + 1
            }
        }
        if skippingLongLine {
            body(.tooLong(length: skippedLength), bytesRead)
        } else if !carry.isEmpty {
            carry.withUnsafeBytes { body(.bytes(trimCR($0)), bytesRead) }
        }
        carry = []
    }

    private mutating func appendCarry(_ piece: UnsafeRawBufferPointer) {
        if skippingLongLine {
            skippedLength += piece.count
            return
        }
        if carry.count + piece.count > maxLineBytes {
            skippingLongLine = true
            skippedLength = carry.count + piece.count
            carry = []
            return
        }
        carry.append(contentsOf: piece)
    }

    private func trimCR(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if let last = line.last, last == UInt8(ascii: "\r") {
            return UnsafeRawBufferPointer(rebasing: line.dropLast())
        }
        return line
    }
}

/// A file named on the command line, or standard input for `-`.
struct InputFile {
    let fd: Int32
    /// The size in bytes, for regular files.
    let size: Int?

    /// Opens `path` for reading; exits with status 2 when it cannot be read.
    init(_ path: String) {
        guard path != "-" else {
            fd = STDIN_FILENO
            size = nil
            return
        }
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { CommandFailure.exit("cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        var size: Int? = nil
        if fstat(fd, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFDIR { CommandFailure.exit("\(path) is a directory") }
            if (info.st_mode & S_IFMT) == S_IFREG { size = Int(info.st_size) }
        }
        self.size = size
    }

    func close() {
        if fd != STDIN_FILENO { _ = Glibc.close(fd) }
    }
}
