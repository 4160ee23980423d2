import TelemetryClient
import Testing

/// A client refused with `Retry-After` waits at least that long, and spread over one more of it,
/// so that a burst refused together does not come back together.
@Suite struct RetryAfterTests {
    @Test func theWaitIsNeverSoonerAndSpreadOverOneMore() {
        let waits = (0..<2000).map { _ in RetryAfter.spread(1) }
        #expect(waits.allSatisfy { $0 >= 1 && $0 <= 2 })
        // Spread across the whole second: each tenth of it drawn.
        let tenths = Set(waits.map { min(9, Int(($0 - 1) * 10)) })
        #expect(tenths.count == 10, "\(tenths.sorted())")
        #expect(RetryAfter.spread(3) >= 3 && RetryAfter.spread(3) <= 6)
    }
}
