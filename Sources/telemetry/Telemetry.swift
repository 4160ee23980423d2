import ArgumentParser
import TelemetryStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `telemetry` command: one executable for the collector, its tools and its benchmarks.
@main
struct Telemetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telemetry",
        abstract: "The xumi telemetry system: event catalog, validation, collector and tools.",
        discussion: """
            Exit codes: 0 success; 1 the command ran and found a problem (e.g. invalid events); \
            2 a usage or I/O error.
            """,
        subcommands: [
            ServeCommand.self, DemoCommand.self, ValidateCommand.self, CatalogCommand.self, SampleCommand.self, SendCommand.self, QueryCommand.self,
            StatsCommand.self, TailCommand.self, KeysCommand.self, BackupCommand.self, ConsumeCommand.self, BenchCommand.self,
        ]
    )

    /// Runs the command, mapping usage errors to exit code 2 as the CLI contract says (ArgumentParser
    /// would use 64).
    static func main() async {
        SQLiteStore.configureProcess()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            // An I/O problem found while running: said as the command's own message, exit code 2.
            writeStandardError("telemetry: \(failure.message)\n")
            Glibc.exit(2)
        } catch {
            if exitCode(for: error) == .validationFailure {
                let message = fullMessage(for: error)
                writeStandardError(message + (message.hasSuffix("\n") ? "" : "\n"))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// An I/O or usage problem found while running a command: printed to stderr, exit code 2.
struct CommandFailure: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension CommandFailure {
    /// Prints the failure and exits with status 2.
    static func exit(_ message: String) -> Never {
        writeStandardError("telemetry: \(message)\n")
        Glibc.exit(2)
    }
}

/// Writes `text` to standard error, unbuffered.
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}
