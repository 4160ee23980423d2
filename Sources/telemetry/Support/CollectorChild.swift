import Foundation
import TelemetryClient
import TelemetryProcess

/// A `telemetry serve` child process on a free loopback port, for the benchmarks; stopped by its PID.
final class CollectorChild {
    let process: ChildProcess
    let port: Int
    /// Kept open between scrapes (``waitUntilPaired()`` polls every 2 ms).
    private lazy var metricsConnection = HTTPConnection(host: "127.0.0.1", port: port)

    /// Starts `telemetry serve` on `data` (with `--fsync` and `extra` arguments) and waits until it listens.
    init(data: URL, fsync: String, extra: [String] = []) throws {
        process = try ChildProcess(
            executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
            arguments: ["serve", "--port", "0", "--data", data.path, "--fsync", fsync, "--log-level", "error"] + extra,
            standardOutput: .pipe, standardError: .inherit)
        var seen = ""
        var port: Int? = nil
        while port == nil {
            let chunk = process.standardOutput!.availableData
            guard !chunk.isEmpty else { throw CommandFailure("the collector did not start") }
            seen += String(decoding: chunk, as: UTF8.self)
            if let match = seen.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/) { port = Int(match.1) }
        }
        self.port = port!
    }

    /// What ``post(_:connections:)`` measured: the seconds it took, every answer's latency and
    /// status (200s and 429s alike; a batch answered 429, the collector's queue being full, was
    /// sent again after its Retry-After), and each batch's delivery: from its first try to its 200,
    /// the waits for its turns included.
    struct Posted {
        var seconds: Double
        var answers: [(seconds: Double, status: Int)]
        var deliveries: [Double]
        /// The share of the machine's cores that were busy meanwhile (everything on it: the
        /// collector, this load generator, the brokers), 0-1; `nil` without `/proc/stat`.
        var busy: Double?

        var latencies: [Double] { answers.map(\.seconds) }
        /// The latencies of the answers 200 (stored) and 429 (refused).
        var stored: [Double] { answers.filter { $0.status == 200 }.map(\.seconds) }
        var refused: [Double] { answers.filter { $0.status == 429 }.map(\.seconds) }
        /// Batches answered 429.
        var overloaded: Int { answers.count { $0.status == 429 } }
    }

    /// Posts every batch (NDJSON) over `connections` connections, each on its own thread, as a
    /// well-behaved client does: a batch answered 429 waits its Retry-After and goes again. With
    /// `expectContinue`, batches of 64 KiB or more wait for `100 Continue` before their body.
    func post(_ batches: [[UInt8]], connections: Int, expectContinue: Bool = false) throws -> Posted {
        let results = LatencyLog()
        let group = DispatchGroup()
        let started = MonotonicClock.now()
        let cpuBefore = MachineCPU.now()
        let port = self.port
        for client in 0..<connections {
            group.enter()
            let mine = stride(from: client, to: batches.count, by: connections).map { batches[$0] }
            Thread.detachNewThread {
                defer { group.leave() }
                let connection = HTTPConnection(host: "127.0.0.1", port: port, expectsContinue: expectContinue)
                for body in mine {
                    let firstTry = MonotonicClock.now()
                    while true {
                        let sent = MonotonicClock.now()
                        let response: HTTPResponse
                        do {
                            response = try connection.request("POST", "/v1/events", headers: [("Content-Type", "application/x-ndjson")], body: body)
                        } catch {
                            results.fail("\(error)")
                            return
                        }
                        let answered = MonotonicClock.now()
                        results.record(Double(answered - sent) / 1e9, status: response.status)
                        if response.status == 200 {
                            results.delivered(Double(answered - firstTry) / 1e9)
                            break
                        }
                        guard response.status == 429 else {
                            results.fail("HTTP \(response.status): \(response.text.prefix(200))")
                            return
                        }
                        // The collector's turn (Retry-After-Ms), or never sooner than Retry-After and
                        // spread past it, as the SDK and `send` do.
                        let hint = RetryAfter.hint(retryAfter: response.header("retry-after"), milliseconds: response.header("retry-after-ms"))
                        let wait = RetryAfter.wait(hint ?? .seconds(1), backoff: 0)
                        usleep(UInt32(wait * 1_000_000))
                    }
                }
            }
        }
        group.wait()
        let seconds = Double(MonotonicClock.now() - started) / 1e9
        let busy = cpuBefore.flatMap { before in MachineCPU.now().map { $0.busy(since: before) } }
        if let failure = results.failure { throw CommandFailure("a request failed: \(failure)") }
        return Posted(seconds: seconds, answers: results.answers, deliveries: results.deliveries, busy: busy)
    }

    /// Waits until the collector has paired every stored event into operations (its
    /// `telemetry_operations_pairing_lag_events` gauge reads 0), polling `/metrics`.
    func waitUntilPaired() throws {
        let name = "telemetry_operations_pairing_lag_events"
        while true {
            guard let lag = try metrics([name])[name] else { throw CommandFailure("/metrics has no \(name)") }
            if lag == 0 { return }
            usleep(2_000)
        }
    }

    /// The values of the collector's metrics named in `names` (series without labels), from
    /// `/metrics`; names it does not have are left out.
    func metrics(_ names: Set<String>) throws -> [String: Double] {
        let response = try metricsConnection.request("GET", "/metrics", headers: [], body: [])
        guard response.status == 200 else { throw CommandFailure("GET /metrics: HTTP \(response.status)") }
        var values: [String: Double] = [:]
        for line in response.text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, names.contains(String(parts[0])), let value = Double(parts[1]) else { continue }
            values[String(parts[0])] = value
        }
        return values
    }

    /// CPU seconds (user + system) the collector's threads have used so far, by thread name
    /// (`/proc`): the events writer is GRDB's queue (`…qos.overcommit`), requests run on the
    /// cooperative pool (`…default-qos`).
    var cpuSecondsByThread: [String: Double] { threadCPUSeconds(pid: process.pid) }

    /// The child's peak resident memory, bytes.
    var peakRSS: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return Int(line.filter(\.isNumber)).map { $0 * 1024 }
    }

    /// Stops the child with SIGTERM and waits for it.
    func stop() {
        guard process.isRunning else { return }
        process.signal(SIGTERM)
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// CPU seconds (user + system) the threads of process `pid` have used so far, by thread name
/// (`/proc/PID/task`); threads that have ended are not counted.
func threadCPUSeconds(pid: Int32) -> [String: Double] {
    let tasks = "/proc/\(pid)/task"
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var seconds: [String: Double] = [:]
    for task in (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? [] {
        guard let stat = try? String(contentsOfFile: "\(tasks)/\(task)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { continue }
        let name = String(stat[stat.index(after: open)..<close])
        // After the name: state, then 10 fields, then utime and stime (fields 14 and 15).
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        seconds[name, default: 0] += (user + system) / ticks
    }
    return seconds
}

/// Percentiles of latencies in seconds, printed in milliseconds: `p50 …, p99 …, max …`.
func latencySummary(_ seconds: [Double]) -> String {
    let sorted = seconds.sorted()
    guard let last = sorted.last else { return "none" }
    func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000 }
    return String(format: "p50 %.1f ms, p99 %.1f ms, max %.1f ms", percentile(0.5), percentile(0.99), last * 1000)
}

/// Request latencies recorded from several threads.
final class LatencyLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [(seconds: Double, status: Int)] = []
    private var deliveryValues: [Double] = []
    private var firstFailure: String?

    func record(_ seconds: Double, status: Int) { lock.withLock { values.append((seconds, status)) } }
    func delivered(_ seconds: Double) { lock.withLock { deliveryValues.append(seconds) } }
    func fail(_ message: String) { lock.withLock { if firstFailure == nil { firstFailure = message } } }
    var answers: [(seconds: Double, status: Int)] { lock.withLock { values } }
    var deliveries: [Double] { lock.withLock { deliveryValues } }
    var failure: String? { lock.withLock { firstFailure } }
}

/// The machine's CPU time so far (`/proc/stat`, every core), to tell a run that kept the cores
/// busy from one that waited: a benchmark whose cores sit idle is bound by a wait (a timer, a
/// delayed ACK), not by work.
struct MachineCPU {
    /// Ticks of every kind, and the idle ones among them (idle and waiting for I/O).
    var total: Double
    var idle: Double

    static func now() -> MachineCPU? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        // user nice system idle iowait irq softirq steal (guest time is counted in user).
        let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard ticks.count == 8 else { return nil }
        return MachineCPU(total: ticks.reduce(0, +), idle: ticks[3] + ticks[4])
    }

    /// The busy share of the cores between `earlier` and this reading, 0-1.
    func busy(since earlier: MachineCPU) -> Double {
        let total = self.total - earlier.total
        return total > 0 ? max(0, min(1, 1 - (idle - earlier.idle) / total)) : 0
    }
}
