import ArgumentParser
import CompressNIO
import Foundation
import NIOCore
import TelemetryClient

#if canImport(Glibc)
import Glibc
#endif

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a file of NDJSON events to a collector.",
        discussion: """
            Reads the file (or - for standard input) as NDJSON, posts it in batches, gzip-encoded, and \
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
        let connection = url.connection()
        var reader = LineReader(fd: fd, maxLineBytes: 16 << 20)
        defer { reader.close() }
        var progress = ProgressBar(total: total, minimumTotal: 1 << 20)
        var summary = SendSummary()
        var batch: [UInt8] = []
        var lines: [Int] = []
        var lineNumber = 0
        var failure: String? = nil
        do {
            try reader.forEachLine { line, bytesRead in
                lineNumber += 1
                guard failure == nil, case .bytes(let bytes) = line, !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else {
                    if case .tooLong = line { summary.tooLong.append(lineNumber) }
                    return
                }
                batch.append(contentsOf: bytes)
                batch.append(UInt8(ascii: "\n"))
                lines.append(lineNumber)
                if lines.count >= batchSize {
                    do {
                        try post(batch, lines, connection, &summary)
                    } catch {
                        failure = "\(error)"
                    }
                    batch.removeAll(keepingCapacity: true)
                    lines.removeAll(keepingCapacity: true)
                    progress.update(bytes: bytesRead, items: summary.sent)
                }
            }
            if failure == nil && !lines.isEmpty { try post(batch, lines, connection, &summary) }
        } catch {
            failure = "\(error)"
        }
        progress.finish()
        print(summary.report(limit: showRejections))
        if let failure { CommandFailure.exit("stopped: \(failure)") }
        if !summary.rejected.isEmpty || !summary.tooLong.isEmpty { throw ExitCode(1) }
    }

    private func post(_ body: [UInt8], _ lines: [Int], _ connection: HTTPConnection, _ summary: inout SendSummary) throws {
        var headers = [("Content-Type", "application/x-ndjson")]
        var payload = body
        if gzip {
            var buffer = ByteBuffer(bytes: body)
            var compressed = try buffer.compress(with: .gzip())
            payload = compressed.readBytes(length: compressed.readableBytes) ?? []
            headers.append(("Content-Encoding", "gzip"))
        }
        var attempt = 0
        var delay = 0.1
        while true {
            attempt += 1
            var retryAfter: Double? = nil
            var reason: String
            do {
                let response = try connection.request("POST", "/v1/events", headers: headers, body: payload)
                if response.status == 200 {
                    try summary.add(response.body, lines: lines)
                    return
                }
                reason = "HTTP \(response.status): \(response.text.prefix(300))"
                guard response.status == 429 || response.status == 503 else {
                    throw CommandFailure("the collector refused a batch (lines \(lines.first!)-\(lines.last!)): \(reason)")
                }
                retryAfter = response.header("retry-after").flatMap(Double.init)
            } catch let error as HTTPClientError where error.isRetryable {
                reason = error.message
            }
            summary.retries += 1
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
