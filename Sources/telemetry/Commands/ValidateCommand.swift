import ArgumentParser
import TelemetryCatalog

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a file of NDJSON events against the catalog, offline.",
        discussion: """
            Reads one event per line (blank lines are skipped) and checks each against the catalog, \
            reporting every problem of every invalid event. The file is streamed: memory stays \
            bounded whatever its size. On a terminal a progress bar shows for large files.

            Output (text): one line per invalid event, then a summary by event type and error code.
            Output (--format json): one object per line, for every event:
              {"line":N,"valid":BOOL,"event_type":"…",
               "errors":[{"field":"…","code":"…","message":"…"}]}
            and the summary on standard error.

            Exit status: 0 all events valid; 1 some invalid; 2 usage or I/O error.

            Examples:
              telemetry validate examples/events.ndjson
              gunzip -c events.ndjson.gz | telemetry validate - --format json
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Argument(help: ArgumentHelp("The NDJSON file to check, or - for standard input.", valueName: "FILE|-"))
    var file: String

    @Option(help: "Output format: text or json.")
    var format: Format = .text

    @Option(help: "Lines longer than this many bytes are reported as too_large without being parsed.")
    var maxLineBytes: Int = 16 << 20

    func validate() throws {
        guard maxLineBytes > 0 else { throw ValidationError("--max-line-bytes must be positive") }
    }

    func run() throws {
        let input = InputFile(file)
        defer { input.close() }
        let fd = input.fd
        let total = input.size

        var reader = LineReader(fd: fd, maxLineBytes: maxLineBytes)
        defer { reader.close() }
        var validator = EventValidator()
        var summary = ValidationSummary()
        var progress = ProgressBar(total: total)
        var output = OutputBuffer()
        var lineNumber = 0
        let json = format == .json
        let started = MonotonicClock.now()
        do {
            try reader.forEachLine { line, bytesRead in
                lineNumber += 1
                let result: ValidationResult
                switch line {
                case .tooLong(let length):
                    let issue = ValidationIssue(
                        field: "", code: .tooLarge,
                        message: "the line is \(length) bytes, more than --max-line-bytes (\(maxLineBytes)); not parsed")
                    result = .invalid(InvalidEvent(eventType: nil, eventID: nil, issues: [issue]))
                case .bytes(let bytes):
                    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
                    result = validator.validate(bytes)
                }
                summary.add(result)
                if json {
                    output.write(Self.jsonLine(lineNumber, result))
                } else if case .invalid(let invalid) = result {
                    output.write(Self.textLine(lineNumber, invalid))
                }
                if lineNumber & 1023 == 0 { progress.update(bytes: bytesRead, items: summary.total) }
            }
        } catch {
            progress.finish()
            output.flush()
            CommandFailure.exit("\(file): \(error)")
        }
        progress.finish()
        let seconds = Double(MonotonicClock.now() - started) / 1e9
        let report = summary.report(bytes: reader.bytesRead, seconds: seconds)
        if json {
            output.flush()
            writeStandardError(report)
        } else {
            output.write(report)
            output.flush()
        }
        if summary.invalid > 0 { throw ExitCode(1) }
    }

    static func jsonLine(_ line: Int, _ result: ValidationResult) -> String {
        var object: JSONValue = ["line": .integer(Int64(line))]
        switch result {
        case .valid(let event):
            object["valid"] = true
            object["event_type"] = .string(event.eventType)
            object["event_id"] = .string(event.eventID.description)
            object["errors"] = []
        case .invalid(let invalid):
            object["valid"] = false
            object["event_type"] = invalid.eventType.map { .string($0) } ?? .null
            if let id = invalid.eventID { object["event_id"] = .string(id) }
            object["errors"] = .array(
                invalid.issues.map { ["field": .string($0.field), "code": .string($0.code.rawValue), "message": .string($0.message)] })
        }
        return object.render() + "\n"
    }

    static func textLine(_ line: Int, _ invalid: InvalidEvent) -> String {
        var prefix = "line \(line)"
        if let type = invalid.eventType { prefix += " (\(type))" }
        return invalid.issues.map { "\(prefix): \($0)\n" }.joined()
    }
}

/// Counts of valid and invalid events by event type and by error code.
struct ValidationSummary {
    private(set) var valid = 0
    private(set) var invalid = 0
    private var byType: [String: (valid: Int, invalid: Int)] = [:]
    private var byCode: [String: Int] = [:]

    var total: Int { valid + invalid }

    mutating func add(_ result: ValidationResult) {
        switch result {
        case .valid(let event):
            valid += 1
            byType[event.eventType, default: (0, 0)].valid += 1
        case .invalid(let event):
            invalid += 1
            byType[event.eventType ?? "(unknown)", default: (0, 0)].invalid += 1
            for code in Set(event.issues.map(\.code.rawValue)) { byCode[code, default: 0] += 1 }
        }
    }

    func report(bytes: Int, seconds: Double) -> String {
        var out = "\(total) events: \(valid) valid, \(invalid) invalid (\(formatBytes(bytes)) in \(String(format1: seconds)) s"
        if let peak = peakResidentBytes() { out += ", peak memory \(formatBytes(peak))" }
        out += ")\n"
        guard total > 0 else { return out }
        let width = max(10, byType.keys.map(\.count).max() ?? 0)
        out += "by event type:\n"
        out += "  " + "event_type".padding(to: width) + "  valid  invalid\n"
        for (type, counts) in byType.sorted(by: { $0.key < $1.key }) {
            out += "  " + type.padding(to: width) + "  " + pad(counts.valid, 5) + "  " + pad(counts.invalid, 7) + "\n"
        }
        if !byCode.isEmpty {
            out += "invalid events by error code:\n"
            for (code, count) in byCode.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
                out += "  " + code.padding(to: width) + "  " + pad(count, 5) + "\n"
            }
        }
        return out
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return String(repeating: " ", count: max(0, width - s.count)) + s
    }
}

/// Buffers standard output and writes it in large blocks.
struct OutputBuffer {
    private var buffer: [UInt8] = []

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(STDOUT_FILENO, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
