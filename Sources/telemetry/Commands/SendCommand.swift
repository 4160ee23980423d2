import ArgumentParser
import Foundation
import TelemetryClient

#if canImport(Glibc)
import Glibc
#endif

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a file of NDJSON events to a collector.",
        discussion: """
            Reads the file (or - for standard input) as NDJSON, posts it in batches, gzip-encoded (zlib's \
            fastest level), one request in flight while the next batch is read and compressed, and \
            retries a batch with exponential backoff and jitter when the collector is unreachable or \
            answers 429 or 503 (honouring Retry-After): the collector's dedupe makes a retried batch \
            safe. Ends with a summary of accepted, duplicate and rejected events, the rejections \
            with their line numbers and reasons.

            Exit status: 0 every event accepted or duplicate; 1 some rejected; 2 usage, I/O or a batch \
            that could not be delivered.

            Examples:
              telemetry send examples/events.ndjson
              telemetry sample --count 100000 | telemetry send - --url http://127.0.0.1:9000
            """
    )

    @Argument(help: ArgumentHelp("The NDJSON file, or - for standard input.", valueName: "FILE|-"))
    var file: String

    @Option(help: "The collector.")
    var url: CollectorURL = CollectorURL(argument: "http://127.0.0.1:8080")!

    @Option(help: "Events per request.")
    var batchSize: Int = 1000

    @Flag(inversion: .prefixedNo, help: "Compress request bodies with gzip.")
    var gzip: Bool = true

    @Option(help: "Attempts per batch before giving up.")
    var maxAttempts: Int = 8

    @Option(help: "Rejections listed in the summary (all are counted).")
    var showRejections: Int = 20

    func validate() throws {
        guard batchSize > 0, maxAttempts > 0 else { throw ValidationError("--batch-size and --max-attempts must be positive") }
    }

    func run() throws {
        let input = InputFile(file)
        defer { input.close() }
        let fd = input.fd
        let total = input.size
        var reader = LineReader(fd: fd, maxLineBytes: 16 << 20)
        defer { reader.close() }
        var progress = ProgressBar(total: total, minimumTotal: 1 << 20)
        // Batches are read and compressed here while the one before is on its way (one request
        // in flight, so they arrive in order): gzip and the collector's answer used to take turns.
        let sender = BatchSender(connection: url.connection(), maxAttempts: maxAttempts)
        var tooLong: [Int] = []
        var batch: [UInt8] = []
        var lines: [Int] = []
        var lineNumber = 0
        var readFailure: String? = nil
        func hand(_ batch: [UInt8], _ lines: [Int]) {
            sender.submit(body: gzip ? Gzip.compress(batch) : batch, lines: lines)
        }
        do {
            try reader.forEachLine { line, bytesRead in
                lineNumber += 1
                guard !sender.hasFailed, case .bytes(let bytes) = line, !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else {
                    if case .tooLong = line { tooLong.append(lineNumber) }
                    return
                }
                batch.append(contentsOf: bytes)
                batch.append(UInt8(ascii: "\n"))
                lines.append(lineNumber)
                if lines.count >= batchSize {
                    hand(batch, lines)
                    batch.removeAll(keepingCapacity: true)
                    lines.removeAll(keepingCapacity: true)
                    progress.update(bytes: bytesRead, items: sender.sent)
                }
            }
            if !lines.isEmpty && !sender.hasFailed { hand(batch, lines) }
        } catch {
            readFailure = "\(error)"
        }
        var (summary, failure) = sender.finish()
        summary.tooLong = tooLong
        progress.finish()
        print(summary.report(limit: showRejections))
        if let failure = failure ?? readFailure { CommandFailure.exit("stopped: \(failure)") }
        if !summary.rejected.isEmpty || !summary.tooLong.isEmpty { throw ExitCode(1) }
    }
}

/// Posts `send`'s batches on a thread of its own, one request in flight and in order, retrying
/// each with backoff; the caller prepares the next meanwhile. At most two batches wait for it.
final class BatchSender: @unchecked Sendable {
    // @unchecked: the state is guarded by `condition`; `connection` is used by the thread alone.
    private let connection: HTTPConnection
    private let maxAttempts: Int
    private let condition = NSCondition()
    private var waiting: [(body: [UInt8], lines: [Int])] = []
    private var closed = false
    private var done = false
    private var summary = SendSummary()
    private var failure: String? = nil
    private static let capacity = 2

    init(connection: HTTPConnection, maxAttempts: Int) {
        self.connection = connection
        self.maxAttempts = maxAttempts
        Thread { [self] in loop() }.start()
    }

    /// Whether a batch could not be delivered (nothing more is sent then).
    var hasFailed: Bool { withLock { failure != nil } }

    /// Events the collector answered for so far.
    var sent: Int { withLock { summary.sent } }

    /// Queues a batch (gzipped or not: a body that starts with gzip's magic bytes is sent as
    /// gzip); waits while two are queued. False once a batch failed: this one is not sent.
    @discardableResult
    func submit(body: [UInt8], lines: [Int]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while waiting.count >= Self.capacity && failure == nil { condition.wait() }
        guard failure == nil else { return false }
        waiting.append((body, lines))
        condition.broadcast()
        return true
    }

    /// Waits until every queued batch is sent (or one failed); the totals, and the failure.
    func finish() -> (SendSummary, String?) {
        condition.lock()
        defer { condition.unlock() }
        closed = true
        condition.broadcast()
        while !done { condition.wait() }
        return (summary, failure)
    }

    private func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    private func loop() {
        while true {
            condition.lock()
            while waiting.isEmpty && !closed { condition.wait() }
            guard let (body, lines) = waiting.first, failure == nil else {
                done = true
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()
            let outcome = Result { try post(body, lines) }
            condition.lock()
            waiting.removeFirst()
            switch outcome {
            case .success(let answer): summary.merge(answer)
            case .failure(let error): failure = "\(error)"
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Posts one batch until the collector answers 200, retrying 429, 503 and connection errors
    /// with exponential backoff and jitter (never sooner than Retry-After); its answer.
    private func post(_ body: [UInt8], _ lines: [Int]) throws -> SendSummary {
        var headers = [("Content-Type", "application/x-ndjson")]
        if body.count > 2, body[0] == 0x1f, body[1] == 0x8b { headers.append(("Content-Encoding", "gzip")) }
        var attempt = 0
        var delay = 0.1
        while true {
            attempt += 1
            var retryAfter: Double? = nil
            var reason: String
            do {
                let response = try connection.request("POST", "/v1/events", headers: headers, body: body)
                if response.status == 200 {
                    var answer = SendSummary()
                    try answer.add(response.body, lines: lines)
                    return answer
                }
                reason = "HTTP \(response.status): \(response.text.prefix(300))"
                guard response.status == 429 || response.status == 503 else {
                    throw CommandFailure("the collector refused a batch (lines \(lines.first!)-\(lines.last!)): \(reason)")
                }
                retryAfter = response.header("retry-after").flatMap(Double.init)
            } catch let error as HTTPClientError where error.isRetryable {
                reason = error.message
            }
            withLock { summary.retries += 1 }
            guard attempt < maxAttempts else {
                throw CommandFailure("gave up on lines \(lines.first!)-\(lines.last!) after \(attempt) attempts: \(reason)")
            }
            let jitter = Double.random(in: 0.5...1.5)
            let wait = max(retryAfter ?? 0, delay * jitter)
            writeStandardError("telemetry: retrying in \(String(format: "%.1f", wait)) s: \(reason)\n")
            usleep(UInt32(min(wait, 30) * 1_000_000))
            delay = min(delay * 2, 10)
        }
    }
}

/// Totals of a `send`, and the rejections with their line numbers.
struct SendSummary {
    var accepted = 0
    var duplicates = 0
    var retries = 0
    var rejected: [(line: Int, errors: [(field: String, code: String, message: String)])] = []
    var tooLong: [Int] = []

    var sent: Int { accepted + duplicates + rejected.count }

    /// Adds the counts and rejections of one batch's answer (its retries are counted as they happen).
    mutating func merge(_ other: SendSummary) {
        accepted += other.accepted
        duplicates += other.duplicates
        rejected += other.rejected
        tooLong += other.tooLong
    }

    mutating func add(_ body: [UInt8], lines: [Int]) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let accepted = object["accepted"] as? Int, let duplicates = object["duplicates"] as? Int,
            let rejected = object["rejected"] as? [[String: Any]]
        else { throw CommandFailure("the collector's answer is not the API's: \(String(decoding: body.prefix(200), as: UTF8.self))") }
        self.accepted += accepted
        self.duplicates += duplicates
        for entry in rejected {
            let index = entry["index"] as? Int ?? 0
            let errors = (entry["errors"] as? [[String: String]] ?? []).map { ($0["field"] ?? "", $0["code"] ?? "", $0["message"] ?? "") }
            self.rejected.append((index < lines.count ? lines[index] : -1, errors))
        }
    }

    func report(limit: Int) -> String {
        var out = "\(sent + tooLong.count) events: \(accepted) accepted, \(duplicates) duplicate, \(rejected.count + tooLong.count) rejected"
        if retries > 0 { out += " (\(retries) retries)" }
        for (line, errors) in rejected.prefix(limit) {
            for error in errors {
                out += "\nline \(line): \(error.field.isEmpty ? "" : error.field + ": ")\(error.code): \(error.message)"
            }
        }
        for line in tooLong.prefix(limit) { out += "\nline \(line): too_large: longer than 16 MiB; not sent" }
        if rejected.count + tooLong.count > limit { out += "\n… and \(rejected.count + tooLong.count - limit) more rejected" }
        var byCode: [String: Int] = [:]
        for (_, errors) in rejected { for code in Set(errors.map(\.code)) { byCode[code, default: 0] += 1 } }
        if !byCode.isEmpty {
            out += "\nrejected by error code: " + byCode.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        return out
    }
}
