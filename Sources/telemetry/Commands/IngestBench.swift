import ArgumentParser
import Foundation
import TelemetryCatalog
import TelemetryClient

struct IngestBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Collector ingest over loopback, against plain SQLite appends in the same run.",
        discussion: """
            Generates distinct, realistic events and measures, in one run on this machine:

              baseline   the same NDJSON lines appended into a plain SQLite table
                         (rowid, blob) in WAL mode, 1000 a transaction, with the
                         collector's fsync setting; twice: through SQLite's C
                         API (one statement, each line bound in place: the
                         strictest, ~200 MiB/s here), and through GRDB's
                         execute(sql:arguments:) a row: how the collector issue
                         measured its baseline ("about 85-95 MiB/s on this
                         machine")
              collector  a `telemetry serve` child process on loopback, fed batches
                         of 1000 events from N connections: HTTP, validation,
                         dedupe, typed columns, durable commit, ack

            It prints events/s, MiB/s, request latency (p50, p99, max; and the share of requests \
            the collector itself answered within 250 ms, from its request-duration histogram, \
            which leaves out the load generator's own waits for a core), the collector's peak RSS, \
            the CPU an event costs in each kind of its threads (by thread name: the events \
            writer is GRDB's serial queue, which libdispatch sometimes runs on a thread of the \
            pool that requests use, so part of the writer's time can show under requests; the \
            total is exact), the store's transactions (how many, their size, and the share of \
            the run the writer spent in one), how busy the machine's cores were while \
            posting (idle cores mean the run waits rather than works), and the ratios \
            collector/baseline, against each baseline: \
            medians of --rounds alternating rounds.

            Completions carry the keys of earlier starts, \
            so events pair into operations as real traffic does; a run ends when every event is \
            acknowledged and paired. The collector is measured a second time with \
            --no-operations, to show what pairing costs. The load generator runs on the same \
            machine.

            A batch answered 429 (the collector's queue is full: serve --max-queued-events) waits \
            its Retry-After and goes again, as the SDK and `send` do; the latency counts every \
            answer, and the 429s are printed. When there were any, the latencies of the 200s \
            (stored) and of the 429s (refused) are also printed apart, and each batch's delivery: \
            from its first try to its 200, the waits for its turns included.
            """
    )

    @Option(help: "Distinct events to send.")
    var events: Int = 200_000

    @Option(help: "Events per request.")
    var batchSize: Int = 1000

    @Option(help: "Concurrent connections.")
    var connections: Int = 4

    @Option(help: "The collector's --fsync setting (and the baseline's synchronous mode): full or normal.")
    var fsync: String = "full"

    @Flag(help: "Send each batch with Expect: 100-continue, as curl does for large bodies: a batch the collector refuses on its head (429) is then never sent.")
    var expectContinue = false

    @Option(help: "Rounds of the three measurements, alternating; medians are reported.")
    var rounds: Int = 3

    @Option(help: "Seed of the generated events.")
    var seed: UInt64 = 1

    @Option(
        name: .customLong("serve-option"),
        help: "An option for the collector (`telemetry serve`), given with = and repeatable, to compare its settings: --serve-option=--max-queued-events=4000.")
    var serveOptions: [String] = []

    func validate() throws {
        guard events > 0, batchSize > 0, connections > 0, rounds > 0 else { throw ValidationError("counts must be positive") }
        guard fsync == "full" || fsync == "normal" else { throw ValidationError("--fsync is full or normal") }
    }

    func run() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var sampler = EventSampler(seed: seed)
        sampler.linksLifecycles = true
        var batches: [[UInt8]] = []
        var payloadBytes = 0
        var produced = 0
        while produced < events {
            let count = min(batchSize, events - produced)
            let body = sampler.ndjson(count: count)
            payloadBytes += body.count
            batches.append(body)
            produced += count
        }
        print("events: \(events) in \(batches.count) requests of \(batchSize), \(formatBytes(payloadBytes)); \(connections) connections; fsync \(fsync)")

        // Rounds alternate the measurements, each on fresh files; medians are reported, so that a
        // burst of noise on the shared machine moves one round, not the result.
        var baselines: [Double] = []
        var grdbBaselines: [Double] = []
        var unpairedRuns: [CollectorRun] = []
        var collectorRuns: [CollectorRun] = []
        for round in 1...rounds {
            let folder = directory.appendingPathComponent("round-\(round)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            baselines.append(try sqliteAppendBaseline(batches, path: folder.appendingPathComponent("baseline.sqlite").path, fsync: fsync).seconds)
            grdbBaselines.append(
                try sqliteAppendBaseline(batches, path: folder.appendingPathComponent("grdb.sqlite").path, fsync: fsync, through: .grdb).seconds)
            unpairedRuns.append(try measureCollector(batches, data: folder.appendingPathComponent("unpaired"), extra: ["--no-operations"] + serveOptions))
            collectorRuns.append(try measureCollector(batches, data: folder.appendingPathComponent("collector"), extra: serveOptions))
            try? FileManager.default.removeItem(at: folder)
            if rounds > 1 {
                print(String(format: "round %d: baseline %.0f (GRDB %.0f), without operations %.0f, collector %.0f events/s", round,
                             Double(events) / baselines.last!, Double(events) / grdbBaselines.last!, Double(events) / unpairedRuns.last!.seconds,
                             Double(events) / collectorRuns.last!.seconds))
            }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let baseline = median(baselines)
        let grdbBaseline = median(grdbBaselines)
        let unpaired = unpairedRuns.sorted { $0.seconds < $1.seconds }[rounds / 2]
        let collector = collectorRuns.sorted { $0.seconds < $1.seconds }[rounds / 2]

        func describe(_ name: String, _ seconds: Double) -> String {
            name.padding(to: 40)
                + String(format: "%9.0f events/s  %7.1f MiB/s", Double(events) / seconds, Double(payloadBytes) / seconds / 1_048_576)
        }
        print(describe("baseline: SQLite append (rowid, blob)", baseline))
        print(describe("baseline: GRDB append, a row a call", grdbBaseline))
        print(describe("collector without operations", unpaired.seconds))
        print(describe("collector: HTTP ingest, durable ack", collector.seconds))
        print("request latency: " + latencySummary(collector.posted.latencies))
        if collector.posted.overloaded > 0 {
            // Past capacity the two kinds of answer differ: a 429 without Expect waits for its body
            // to be read and dropped; a batch's delivery adds the waits for its turns.
            print("  answered 200 (stored): " + latencySummary(collector.posted.stored))
            print("  answered 429 (refused): " + latencySummary(collector.posted.refused))
            print("  a batch from its first try to its 200, turns waited included: " + latencySummary(collector.posted.deliveries))
        }
        if let within = collector.answeredWithin250ms {
            print(String(format: "  the collector's own timing: %.1f%% of the requests answered within 250 ms (from each request's head to its answer)", 100 * within))
        }
        if collector.posted.overloaded > 0 {
            print("answered 429 (queue full, sent again after Retry-After): \(collector.posted.overloaded) of \(collector.posted.answers.count) answers")
        }
        print("collector peak RSS: \(collector.peakRSS.map(formatBytes) ?? "unknown")")
        if let busy = collector.busy {
            print(String(format: "cores busy while posting: %.0f%% of %d (collector and load generator; idle cores mean a wait, not work)",
                         100 * busy, ProcessInfo.processInfo.activeProcessorCount))
        }
        print("collector CPU per event, by thread: " + Self.cpuPerEvent(collector.cpuByThread, events: events))
        if let commits = collector.commits {
            print(String(format: "the store's transactions: %.0f of %.0f events on average, the writer in one %.0f%% of the run",
                         commits.count, commits.events, 100 * commits.busy))
        }
        print(String(format: "ratio: collector at %.0f%% of the baseline", 100 * baseline / collector.seconds))
        print(String(format: "ratio: collector at %.0f%% of the GRDB append (the collector issue's baseline)", 100 * grdbBaseline / collector.seconds))
        print(String(format: "pairing into operations: %+.0f%% time (%.0f vs %.0f events/s)",
                     100 * (collector.seconds / unpaired.seconds - 1), Double(events) / collector.seconds, Double(events) / unpaired.seconds))
        if rounds > 1 {
            // The same ratio within each round, to show the spread.
            let costs = zip(collectorRuns, unpairedRuns).map { 100 * ($0.seconds / $1.seconds - 1) }
            print("pairing's cost by round: " + costs.map { String(format: "%+.0f%%", $0) }.joined(separator: ", "))
        }
    }

    /// The collector's CPU time by kind of thread, in microseconds an event.
    static func cpuPerEvent(_ seconds: [String: Double], events: Int) -> String {
        let kinds: [(label: String, matches: (String) -> Bool)] = [
            ("writer", { $0.contains("overcommit") }),
            ("requests", { $0.contains("default-qos") }),
            ("pairing", { $0 == "store-pairing" }),
            ("checkpoints", { $0 == "store-checkpt" }),
            ("network", { $0.hasPrefix("NIO") }),
            // serve --kafka: librdkafka's own threads, and the one that takes its delivery reports.
            ("librdkafka", { $0.hasPrefix("rdk:") }),
            ("delivery reports", { $0 == "kafka-reports" }),
        ]
        var byKind: [String: Double] = [:]
        for (name, value) in seconds {
            byKind[kinds.first { $0.matches(name) }?.label ?? "other", default: 0] += value
        }
        let total = byKind.values.reduce(0, +)
        return (kinds.map(\.label) + ["other"]).compactMap { label in
            byKind[label].map { String(format: "%@ %.1f", label, $0 * 1e6 / Double(events)) }
        }.joined(separator: ", ") + String(format: "; total %.1f µs", total * 1e6 / Double(events))
    }

    private struct CollectorRun {
        var seconds: Double
        /// What the load generator measured (latencies by answer, batches' deliveries).
        var posted: CollectorChild.Posted
        var peakRSS: Int?
        var cpuByThread: [String: Double] = [:]
        var busy: Double?
        /// The share of `POST /v1/events` the collector itself answered within 250 ms (its
        /// request-duration histogram: from the request's head to its answer, without the load
        /// generator's own waits for a core).
        var answeredWithin250ms: Double?
        /// The store's transactions: how many, their average size in events, and the share of the
        /// run the writer spent in them (a writer busy all the time is the limit).
        var commits: (count: Double, events: Double, busy: Double)?
    }

    /// The collector's request-duration series of `POST /v1/events`: the 250 ms bucket and the count.
    static let within250ms = #"telemetry_http_request_duration_seconds_bucket{route="/v1/events",method="POST",le="0.25"}"#
    static let requestCount = #"telemetry_http_request_duration_seconds_count{route="/v1/events",method="POST"}"#

    private func measureCollector(_ batches: [[UInt8]], data: URL, extra: [String] = []) throws -> CollectorRun {
        let collector = try CollectorChild(data: data, fsync: fsync, extra: extra)
        defer { collector.stop() }
        let started = MonotonicClock.now()
        let posted = try collector.post(batches, connections: connections, expectContinue: expectContinue)
        // Pairing runs beside the writer: the run ends when every event is paired too.
        try collector.waitUntilPaired()
        let seconds = Double(MonotonicClock.now() - started) / 1e9
        let timing = try collector.metrics([
            Self.within250ms, Self.requestCount, "telemetry_commit_duration_seconds_sum", "telemetry_commit_duration_seconds_count",
            "telemetry_commit_events_sum",
        ])
        let within = timing[Self.requestCount].flatMap { count in count > 0 ? timing[Self.within250ms].map { $0 / count } : nil }
        var commits: (count: Double, events: Double, busy: Double)? = nil
        if let committing = timing["telemetry_commit_duration_seconds_sum"], let count = timing["telemetry_commit_duration_seconds_count"],
            let stored = timing["telemetry_commit_events_sum"], count > 0
        {
            commits = (count, stored / count, committing / seconds)
        }
        return CollectorRun(seconds: seconds, posted: posted, peakRSS: collector.peakRSS, cpuByThread: collector.cpuSecondsByThread,
            busy: posted.busy, answeredWithin250ms: within, commits: commits)
    }
}

