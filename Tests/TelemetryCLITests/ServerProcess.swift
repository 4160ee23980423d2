import Foundation
import TelemetryClickHouse
import TelemetryProcess

/// `telemetry serve` as a child process on a loopback port, stopped by its PID.
final class ServerProcess: @unchecked Sendable {
    let process: ChildProcess
    let port: Int

    /// Starts the collector (`serve`, or `demo`) on `data` with a free port and waits until it listens.
    init(command: String = "serve", data: URL, port listenPort: Int = 0, extraArguments: [String] = []) throws {
        process = try ChildProcess(
            executable: CLI.executable.path,
            arguments: [command, "--port", String(listenPort), "--data", data.path] + (command == "serve" ? ["--log-level", "error"] : [])
                + extraArguments,
            standardOutput: .pipe)
        // The collector prints "telemetry: collector listening on http://127.0.0.1:PORT …" once bound.
        var seen = Data()
        let handle = process.standardOutput!
        let deadline = Date().addingTimeInterval(30)
        var found: Int? = nil
        while found == nil && Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
            let text = String(decoding: seen, as: UTF8.self)
            if let match = text.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/) { found = Int(match.1) }
        }
        guard let found else {
            process.signal(SIGKILL)
            process.waitUntilExit()
            throw CLIError("the collector did not start: \(String(decoding: seen, as: UTF8.self))")
        }
        port = found
    }

    /// Starts a collector from async code, waiting for it on a thread of its own.
    static func start(command: String = "serve", data: URL, port: Int = 0, extraArguments: [String] = []) async throws -> ServerProcess {
        try await offThePool { try ServerProcess(command: command, data: data, port: port, extraArguments: extraArguments) }
    }

    var pid: Int32 { process.pid }
    var url: String { "http://127.0.0.1:\(port)" }

    /// Sends `signal` to the server and waits for it to exit.
    func stop(signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        process.signal(signal)
        process.waitUntilExit()
    }

    deinit { stop(signal: SIGKILL) }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A loopback port that was free a moment ago, where no server binding port 0 can take it (see
/// `LoopbackPorts`).
func freePort() throws -> Int {
    guard let port = LoopbackPorts.free(in: LoopbackPorts.reserved) else { throw CLIError("cannot find a free port") }
    return port
}
