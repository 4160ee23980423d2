import Foundation

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

    /// Runs `telemetry` with `arguments`, feeding `stdin` (written from another thread, so large
    /// inputs do not dead-lock against a full output pipe).
    static func run(
        _ arguments: [String], stdin: Data? = nil, executable: URL = executable, environment: [String: String] = [:], timeoutSeconds: Int = 300
    ) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.currentDirectoryURL = packageRoot
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        // A command that hangs fails its test instead of the whole run.
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(timeoutSeconds), execute: watchdog)
        defer { watchdog.cancel() }
        if let stdin {
            Thread.detachNewThread {
                input.fileHandleForWriting.write(stdin)
                try? input.fileHandleForWriting.close()
            }
        }
        let stderrBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        Thread.detachNewThread {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let stderrData = stderrBox.data
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self))
    }

    /// ``run(_:stdin:executable:environment:timeoutSeconds:)`` on a thread of its own: async tests
    /// must not hold one of the cooperative pool's two threads while a child process runs.
    static func runOffPool(
        _ arguments: [String], stdin: Data? = nil, executable: URL = executable, environment: [String: String] = [:],
        timeoutSeconds: Int = 300
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Swift.Result {
                        try run(arguments, stdin: stdin, executable: executable, environment: environment, timeoutSeconds: timeoutSeconds)
                    })
            }.start()
        }
    }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Carries the bytes read on another thread; the DispatchGroup orders the write before the read.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
