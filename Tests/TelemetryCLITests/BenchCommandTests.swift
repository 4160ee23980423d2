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
    }
}
