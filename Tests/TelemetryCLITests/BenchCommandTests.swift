import Testing

/// The benchmarks run end to end on tiny inputs (their figures are not checked: a test is no
/// benchmark), so that a change that breaks one is seen before someone needs its numbers.
@Suite struct BenchCommandTests {
    @Test func storeBenchWithAPreloadReportsEachTenthAndTheRate() async throws {
        let result = try await CLI.runOffPool(["bench", "store", "--events", "1000", "--batch-size", "500", "--preload", "3000", "--rounds", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        // Tenths of 3,000 are 300 events, but a transaction holds 500: one line a transaction.
        #expect(lines.filter { $0.hasPrefix("preload: ") }.count == 6, "\(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("preload: 2500 to 3000 stored, ") })
        #expect(lines.contains { $0.hasPrefix("store: write() of validated events") && $0.hasSuffix("(after 3000 events)") })
        #expect(!result.stdout.contains("checkpoints inline"), "the inline measurement is left out with a preload")
        #expect(!result.stdout.contains("disk: "), "a preloaded store's size is not the measured events'")
    }

    @Test func storeBenchReportsBothBaselinesAndTheBytesAnEventOfTheFiles() async throws {
        let result = try await CLI.runOffPool(["bench", "store", "--events", "4000", "--batch-size", "1000", "--rounds", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("disk: ") }, "\(result.stdout)")
        let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(numbers.count == 2, "\(line)")
        // Each field is kept once (its column, the rest of the JSON beside it): smaller than the
        // NDJSON lines the baseline appends, indexes and all.
        if numbers.count == 2 { #expect(numbers[0] > 0 && numbers[0] < numbers[1], "\(line)") }
        // Both baselines ran (each checks afterwards that its table holds every line, or the
        // bench fails), and the ratio names both.
        let lines = result.stdout.split(separator: "\n")
        for prefix in ["baseline: SQLite append (rowid, blob)", "baseline: GRDB append, a row a call"] {
            let baseline = try #require(lines.first { $0.hasPrefix(prefix) }, "\(result.stdout)")
            let rate = baseline.dropFirst(prefix.count).split(separator: " ").first.flatMap { Int($0) }
            #expect((rate ?? 0) > 0, "\(baseline)")
        }
        let ratio = try #require(lines.first { $0.hasPrefix("ratio: store at ") }, "\(result.stdout)")
        #expect(ratio.contains("% of the baseline, ") && ratio.contains("% of the GRDB append"), "\(ratio)")
    }
}

extension BenchCommandTests {
    /// Two requests in flight (the SDK's default) deliver every event, none dropped with the
    /// queue holding them all, and the collector's transactions are reported.
    @Test func emitterBenchDeliversEveryEventAndReportsTheTransactions() async throws {
        let result = try await CLI.runOffPool(["bench", "emitter", "--events", "4000", "--batch-size", "500", "--producers", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first?.contains("2 in flight, gzip on, queue 4000") == true, "\(result.stdout)")
        #expect(lines.contains("dropped (queue full): 0; rejected: 0; retried: 0"), "\(result.stdout)")
        // 4,000 events in batches of 500 stored in whole batches: 500 or more a transaction.
        let transactions = try #require(lines.first { $0.hasPrefix("collector: ") }, "\(result.stdout)")
        let numbers = transactions.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(numbers.count == 3 && numbers[0] >= 1 && numbers[0] <= 8 && numbers[1] >= 500, "\(transactions)")
        #expect(lines.contains { $0.hasPrefix("ratio: the emitter delivers at ") })
        #expect(lines.contains { $0.hasPrefix("the collector's CPU per event, by thread: writer ") }, "\(result.stdout)")
        #expect(lines.contains { $0.contains("; the collector's: ") && !$0.hasSuffix("unknown") }, "\(result.stdout)")
        // The service's side: some CPU an event, and the rate one core's worth of it carries.
        let client = try #require(lines.first { $0.hasPrefix("this process's CPU per event (the producers, emit, encoding, gzip, sending): ") })
        let figures = client.split(separator: ": ").last!.split(whereSeparator: { !$0.isNumber && $0 != "." }).compactMap { Double($0) }
        // (Both are rounded as printed: the µs to a tenth.)
        #expect(figures.count == 2 && figures[0] > 0 && abs(figures[1] - 1000 / figures[0]) <= 1 + 0.06 * figures[1], "\(client)")
    }
}

extension BenchCommandTests {
    /// Both baselines, the collector's own timing of its answers, and both ratios.
    @Test func ingestBenchReportsBothRatiosAndTheCollectorsOwnTiming() async throws {
        let result = try await CLI.runOffPool(["bench", "ingest", "--events", "2000", "--batch-size", "500", "--connections", "2", "--rounds", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("baseline: SQLite append (rowid, blob)") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("baseline: GRDB append, a row a call") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("ratio: collector at ") && $0.hasSuffix("% of the baseline") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("ratio: collector at ") && $0.contains("% of the GRDB append") }, "\(result.stdout)")
        // From the collector's histogram of its four answers: a share of four (all of them, on an
        // idle machine; a test run in parallel may delay one).
        let timing = try #require(lines.first { $0.contains("the collector's own timing: ") }, "\(result.stdout)")
        let share = timing.split(separator: ": ").last?.split(separator: "%").first.flatMap { Double($0) }
        #expect(share.map { [0, 25, 50, 75, 100].contains($0) } == true, "\(timing)")
        // 2,000 events in requests of 500, stored in whole requests: 1 to 4 transactions of 500 to
        // 2,000 events.
        let transactions = try #require(lines.first { $0.hasPrefix("the store's transactions: ") }, "\(result.stdout)")
        let numbers = transactions.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(numbers.count == 3 && (1...4).contains(numbers[0]) && (500...2000).contains(numbers[1]), "\(transactions)")
    }

    /// Past capacity the latencies of stored and refused answers are printed apart, and each batch's
    /// delivery (first try to acknowledgement): a queue bound of one event refuses nearly every
    /// request that comes while another's events wait for the writer.
    @Test func ingestBenchSplitsLatenciesByAnswerWhenRequestsAreRefused() async throws {
        let result = try await CLI.runOffPool([
            "bench", "ingest", "--events", "4000", "--batch-size", "500", "--connections", "8", "--rounds", "1",
            "--serve-option=--max-queued-events=1",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("answered 429 (queue full") }, "\(result.stdout)")
        func summary(_ prefix: String) -> [Double]? {
            guard let line = lines.first(where: { $0.hasPrefix(prefix) }) else { return nil }
            return line.dropFirst(prefix.count).split(separator: ",").compactMap {
                Double($0.split(separator: " ").dropFirst().first ?? "")
            }
        }
        let stored = try #require(summary("  answered 200 (stored): "), "\(result.stdout)")
        let refused = try #require(summary("  answered 429 (refused): "), "\(result.stdout)")
        let delivered = try #require(summary("  a batch from its first try to its 200, turns waited included: "), "\(result.stdout)")
        for values in [stored, refused, delivered] {
            #expect(values.count == 3 && values[0] <= values[1] && values[1] <= values[2], "\(result.stdout)")
        }
        // A batch's delivery takes at least its last answer: its worst is no shorter than the worst 200.
        #expect(delivered[2] >= stored[2], "\(result.stdout)")
    }

    /// `--serve-option` reaches the collector: one it refuses stops the run with its reason, one it
    /// takes runs as usual.
    @Test func ingestBenchPassesServeOptionsToTheCollector() async throws {
        let refused = try await CLI.runOffPool([
            "bench", "ingest", "--events", "1000", "--batch-size", "500", "--connections", "1", "--rounds", "1",
            "--serve-option=--max-queued-events=-1",
        ])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--max-queued-events and --max-validating-bytes must be 0 or more"), "\(refused.stderr)")
        #expect(refused.stderr.contains("the collector did not start"), "\(refused.stderr)")
        let taken = try await CLI.runOffPool([
            "bench", "ingest", "--events", "1000", "--batch-size", "500", "--connections", "1", "--rounds", "1",
            "--serve-option=--max-queued-events=0", "--serve-option=--max-validating-bytes=0",
        ])
        #expect(taken.status == 0, "\(taken.stderr)")
        #expect(taken.stdout.contains("collector: HTTP ingest, durable ack"), "\(taken.stdout)")
    }
}
