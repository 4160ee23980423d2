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

/// A refusal's `Retry-After-Ms` is the collector's own turn for its sender: taken as given, spread
/// by up to a tenth, without the sender's backoff; `Retry-After` alone is spread over one more of
/// it, and never shorter than the backoff.
@Suite struct RetryAfterHintTests {
    @Test func millisecondsComeFirstThenSeconds() {
        #expect(RetryAfter.hint(retryAfter: "1", milliseconds: "250") == .paced(0.25))
        #expect(RetryAfter.hint(retryAfter: "2", milliseconds: nil) == .seconds(2))
        #expect(RetryAfter.hint(retryAfter: "2", milliseconds: "soon") == .seconds(2))
        #expect(RetryAfter.hint(retryAfter: "-1", milliseconds: "-5") == nil)
        #expect(RetryAfter.hint(retryAfter: nil, milliseconds: nil) == nil)
    }

    @Test func aPacedTurnIsTakenAsGiven() {
        let waits = (0..<1000).map { _ in RetryAfter.wait(.paced(0.3), backoff: 5) }
        #expect(waits.allSatisfy { $0 >= 0.3 && $0 <= 0.33 }, "\(waits.min()!)-\(waits.max()!)")
        let seconds = (0..<1000).map { _ in RetryAfter.wait(.seconds(1), backoff: 0.5) }
        #expect(seconds.allSatisfy { $0 >= 1 && $0 <= 2 })
        #expect(RetryAfter.wait(.seconds(1), backoff: 5) == 5)
        #expect(RetryAfter.wait(nil, backoff: 0.7) == 0.7)
    }
}
