import Foundation
import TelemetryProcess

/// Runs the built `telemetry` executable, as a user would.
struct CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The `telemetry` binary next to the test bundle (SwiftPM builds it for the test target).
    static let executable: URL = {
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            bundleDirectory.appendingPathComponent("telemetry"),
            bundleDirectory.deletingLastPathComponent().appendingPathComponent("telemetry"),
            packageRoot.appendingPathComponent(".build/debug/telemetry"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[2]
    }()

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Runs `telemetry` with `arguments`, feeding it `stdin`, on a thread of its own (a test must
    /// not hold one of the cooperative pool's two threads while a child process runs); killed
    /// after `timeoutSeconds`, so that a command that hangs fails its test instead of the run.
    static func runOffPool(
        _ arguments: [String], stdin: Data? = nil, executable: URL = executable, environment: [String: String] = [:],
        timeoutSeconds: Int = 300
    ) async throws -> Result {
        let completed = try await ChildProcess.run(
            executable.path, arguments, input: stdin,
            environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 },
            directory: packageRoot.path, timeout: .seconds(timeoutSeconds))
        return Result(status: completed.status, stdout: completed.output, stderr: completed.errors)
    }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
