import Foundation

/// A batch could not be delivered: refused for good, or still failing after every attempt.
public struct SendFailure: Error, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Posts batches of NDJSON (`telemetry send`'s), two requests in flight (a thread and a connection
/// each), retrying each with backoff; the caller prepares the next meanwhile. At most two batches
/// wait to be taken.
///
/// Each request names its batch (`Telemetry-Batch`) and, while the batch before it is on its way,
/// that batch (`Telemetry-After`): the collector stores a batch only after the one it follows, so
/// the file's batches are stored in order while the collector validates one during the commit of
/// the other. A request refused because the batch before it was not stored (409) is sent again once
/// that batch is.
public final class BatchSender: @unchecked Sendable {
    // @unchecked: the state is guarded by `condition`; each connection is used by its thread alone.
    private struct Batch {
        var number: Int
        var body: [UInt8]
        var lines: [Int]
    }

    private let maxAttempts: Int
    /// Told of each retry, with its wait and reason (`send` prints it).
    private let onRetry: @Sendable (String) -> Void
    private let condition = NSCondition()
    private var waiting: [Batch] = []
    private var submitted = 0
    /// Batches taken by a thread and not finished yet.
    private var unfinished: Set<Int> = []
    /// Unfinished batches whose last attempt failed: the collector holds them as not stored until
    /// their next attempt begins, so a batch named to follow one now would be refused (409).
    private var retrying: Set<Int> = []
    private var closed = false
    private var running: Int
    private var summary = SendSummary()
    private var failure: String? = nil
    /// Names this run's batches: `send-<uuid>-<number>`.
    private let run = "send-\(UUID().uuidString.lowercased())"
    private static let capacity = 2

    /// Starts a thread for each connection.
    public init(connections: [HTTPConnection], maxAttempts: Int, onRetry: @escaping @Sendable (String) -> Void = { _ in }) {
        self.maxAttempts = maxAttempts
        self.onRetry = onRetry
        self.running = connections.count
        for connection in connections {
            Thread { [self] in loop(connection) }.start()
        }
    }

    /// Whether a batch could not be delivered (nothing more is sent then).
    public var hasFailed: Bool { withLock { failure != nil } }

    /// Events the collector answered for so far.
    public var sent: Int { withLock { summary.sent } }

    /// Queues a batch (gzipped or not: a body that starts with gzip's magic bytes is sent as
    /// gzip); waits while two are queued. False once a batch failed: this one is not sent.
    @discardableResult
    public func submit(body: [UInt8], lines: [Int]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while waiting.count >= Self.capacity && failure == nil { condition.wait() }
        guard failure == nil else { return false }
        waiting.append(Batch(number: submitted, body: body, lines: lines))
        submitted += 1
        condition.broadcast()
        return true
    }

    /// Waits until every queued batch is sent (or one failed); the totals, and the failure.
    public func finish() -> (SendSummary, String?) {
        condition.lock()
        defer { condition.unlock() }
        closed = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        return (summary, failure)
    }

    private func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    private func name(_ number: Int) -> String { "\(run)-\(number)" }

    private func loop(_ connection: HTTPConnection) {
        while true {
            condition.lock()
            while waiting.isEmpty && !closed && failure == nil { condition.wait() }
            guard !waiting.isEmpty, failure == nil else {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = waiting.removeFirst()
            unfinished.insert(batch.number)
            // Taken in order, so the batch before this one is finished or on the other thread.
            // One being retried is waited for here instead of named.
            let previousRetrying = retrying.contains(batch.number - 1)
            let after = unfinished.contains(batch.number - 1) && !previousRetrying ? name(batch.number - 1) : nil
            condition.broadcast()
            condition.unlock()
            let outcome = Result {
                if previousRetrying { try waitForPrevious(of: batch.number) }
                return try post(batch, after: after, on: connection)
            }
            condition.lock()
            unfinished.remove(batch.number)
            retrying.remove(batch.number)
            switch outcome {
            case .success(let answer): summary.merge(answer)
            case .failure(let error): failure = failure ?? "\(error)"
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Posts one batch until the collector answers 200, retrying 429, 503 and connection errors
    /// with exponential backoff and jitter (never sooner than Retry-After, and spread past it; the
    /// collector's own turn when it sends Retry-After-Ms: ``RetryAfter/wait(_:backoff:)``), and
    /// a 409 (the batch it follows was not stored) once that batch has been; its answer.
    ///
    /// A batch too large for one request (413: the collector's `--max-body`, before or after gzip,
    /// or `--max-events`) is sent as two halves, one after the other, each halved again while it
    /// is too large (`named` false: the halves carry no batch name, and the batch after this one
    /// waits for them here, as for a retry). A single line too large is refused for good.
    private func post(_ batch: Batch, after: String?, on connection: HTTPConnection, named: Bool = true) throws -> SendSummary {
        let lines = batch.lines
        var after = after
        var attempt = 0
        var delay = 0.1
        while true {
            attempt += 1
            var headers = [("Content-Type", "application/x-ndjson")]
            if named { headers.append(("Telemetry-Batch", name(batch.number))) }
            if Gzip.isGzip(batch.body) { headers.append(("Content-Encoding", "gzip")) }
            if let after { headers.append(("Telemetry-After", after)) }
            var hint: RetryAfter.Hint? = nil
            var reason: String
            do {
                let response = try connection.request("POST", "/v1/events", headers: headers, body: batch.body)
                if response.status == 200 {
                    var answer = SendSummary()
                    try answer.add(response.body, lines: lines)
                    return answer
                }
                if response.status == 409 {
                    // Sent again, on its own, once the batch before it is stored; if that one
                    // could not be, nothing more is sent anyway.
                    withLock { _ = retrying.insert(batch.number) }
                    try waitForPrevious(of: batch.number)
                    after = nil
                    attempt -= 1
                    continue
                }
                if response.status == 413 && lines.count > 1 {
                    withLock { _ = retrying.insert(batch.number) }
                    return try postHalves(of: batch, on: connection)
                }
                reason = "HTTP \(response.status): \(response.text.prefix(300))"
                guard response.status == 429 || response.status == 503 else {
                    throw SendFailure("the collector refused a batch (lines \(lines.first!)-\(lines.last!)): \(reason)")
                }
                hint = RetryAfter.hint(retryAfter: response.header("retry-after"), milliseconds: response.header("retry-after-ms"))
            } catch let error as HTTPClientError where error.isRetryable {
                reason = error.message
            }
            withLock {
                summary.retries += 1
                retrying.insert(batch.number)
            }
            guard attempt < maxAttempts else {
                throw SendFailure("gave up on lines \(lines.first!)-\(lines.last!) after \(attempt) attempts: \(reason)")
            }
            let jitter = Double.random(in: 0.5...1.5)
            let wait = RetryAfter.wait(hint, backoff: delay * jitter)
            onRetry("retrying in \(String(format: wait < 1 ? "%.2f" : "%.1f", wait)) s: \(reason)")
            usleep(UInt32(min(wait, 30) * 1_000_000))
            delay = min(delay * 2, 10)
        }
    }

    /// ``post(_:after:on:named:)`` of each half of `batch`, in order; their answers merged. Once
    /// the batch before it is finished: it may be too large as well (refused before the collector
    /// waited for its predecessor), and its halves must not be overtaken.
    private func postHalves(of batch: Batch, on connection: HTTPConnection) throws -> SendSummary {
        try waitForPrevious(of: batch.number)
        guard let halves = Gzip.halves(of: batch.body, count: batch.lines.count) else {
            throw SendFailure("the collector refused a batch (lines \(batch.lines.first!)-\(batch.lines.last!)) as too large, and it could not be split")
        }
        var summary = SendSummary()
        for half in halves {
            let part = Batch(number: batch.number, body: half.body, lines: Array(batch.lines[half.events]))
            summary.merge(try post(part, after: nil, on: connection, named: false))
        }
        return summary
    }

    /// Waits until batch `number - 1` is finished; throws when a batch failed meanwhile.
    private func waitForPrevious(of number: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        while unfinished.contains(number - 1) && failure == nil { condition.wait() }
        if let failure { throw SendFailure("stopped after an earlier batch failed: \(failure)") }
    }
}

/// Totals of a `send`, and the rejections with their line numbers.
public struct SendSummary: Sendable {
    public var accepted = 0
    public var duplicates = 0
    public var retries = 0
    public var rejected: [(line: Int, errors: [(field: String, code: String, message: String)])] = []
    /// Lines not sent: longer than the reader takes.
    public var tooLong: [Int] = []

    public init() {}

    public var sent: Int { accepted + duplicates + rejected.count }

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
        else { throw SendFailure("the collector's answer is not the API's: \(String(decoding: body.prefix(200), as: UTF8.self))") }
        self.accepted += accepted
        self.duplicates += duplicates
        for entry in rejected {
            let index = entry["index"] as? Int ?? 0
            let errors = (entry["errors"] as? [[String: String]] ?? []).map { ($0["field"] ?? "", $0["code"] ?? "", $0["message"] ?? "") }
            self.rejected.append((index < lines.count ? lines[index] : -1, errors))
        }
    }

    /// The summary `send` prints: the totals, the first `limit` rejections by line, the codes.
    public func report(limit: Int) -> String {
        var out = "\(sent + tooLong.count) events: \(accepted) accepted, \(duplicates) duplicate, \(rejected.count + tooLong.count) rejected"
        if retries > 0 { out += " (\(retries) retries)" }
        // Answers arrive from two requests in flight: listed by line.
        for (line, errors) in rejected.sorted(by: { $0.line < $1.line }).prefix(limit) {
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
