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
            fastest level), two requests in flight (the collector stores them in the order they were \
            sent) while the next batch is read and compressed, and \
            retries a batch with exponential backoff and jitter when the collector is unreachable or \
            answers 429 or 503 (honouring Retry-After, or the turn Retry-After-Ms gives): the collector's dedupe makes a retried batch \
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
        // Batches are read and compressed here while the ones before are on their way (two
        // requests in flight, stored in order): gzip and the collector's answer used to take turns.
        let sender = BatchSender(
            connections: [url.connection(expectsContinue: true), url.connection(expectsContinue: true)], maxAttempts: maxAttempts) { retry in
            writeStandardError("telemetry: \(retry)\n")
        }
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
