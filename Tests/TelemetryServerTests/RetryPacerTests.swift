import Synchronization
import Testing

@testable import TelemetryPipeline

/// The turns the collector gives the senders it refuses (`Retry-After-Ms`): each after what is in
/// flight and after those refused before it, at the rate the collector has been taking requests.
@Suite struct RetryPacerTests {
    /// A clock the test moves by hand, in nanoseconds.
    final class ManualClock: Sendable {
        let nanoseconds = Atomic<UInt64>(1_000_000_000)
        func advance(seconds: Double) { nanoseconds.add(UInt64(seconds * 1e9), ordering: .relaxed) }
        var now: UInt64 { nanoseconds.load(ordering: .relaxed) }
    }

    static let mebibyte = 1 << 20

    @Test func refusedSendersGetSuccessiveTurnsThatShortenAsTimePasses() {
        let clock = ManualClock()
        let pacer = RetryPacer(clock: { clock.now })
        let rate = RetryPacer.assumedRate
        // 64 MiB in flight: the first sender refused waits for them, each next one for the bytes
        // of those refused before it too.
        pacer.began(64 * Self.mebibyte)
        let waits = (0..<4).map { _ in pacer.refused(16 * Self.mebibyte) }
        for (turn, wait) in waits.enumerated() {
            let expected = Double((64 + 16 * turn) * Self.mebibyte) / rate
            #expect(abs(wait - expected) < 1e-9, "turn \(turn): \(wait) s, expected \(expected)")
        }
        // A quarter of a second later the collector can have taken rate / 4 of what was owed.
        clock.advance(seconds: 0.25)
        let later = pacer.refused(16 * Self.mebibyte)
        let owed = Double(4 * 16 * Self.mebibyte) - rate * 0.25
        #expect(abs(later - (Double(64 * Self.mebibyte) + owed) / rate) < 1e-9)
        // Long after, nothing is owed: the wait is for what is in flight alone.
        clock.advance(seconds: 60)
        #expect(abs(pacer.refused(1) - Double(64 * Self.mebibyte) / rate) < 1e-9)
    }

    @Test func waitsStayWithinTheirBounds() {
        let clock = ManualClock()
        let pacer = RetryPacer(clock: { clock.now })
        #expect(pacer.refused(1) == RetryPacer.shortest)
        pacer.began(Int(RetryPacer.assumedRate) * 100)
        #expect(pacer.refused(1) == RetryPacer.longest)
    }

    /// Feeds the pacer `seconds` of requests of `bytes`, answered 200 back to back at `rate`
    /// bytes a second, with one more always in flight (`idle`: none in flight between them).
    static func answer(_ pacer: RetryPacer, _ clock: ManualClock, rate: Double, seconds: Double, bytes: Int, idle: Bool = false) {
        let each = Double(bytes) / rate
        var elapsed = 0.0
        if !idle { pacer.began(bytes) }
        while elapsed < seconds {
            pacer.began(bytes)
            clock.advance(seconds: each)
            elapsed += each
            pacer.ended(bytes, stored: true)
        }
        if !idle { pacer.ended(bytes, stored: false) }
    }

    @Test func theRateFollowsWhatTheCollectorTakesWhileBusy() {
        let clock = ManualClock()
        let pacer = RetryPacer(clock: { clock.now })
        #expect(pacer.rate == RetryPacer.assumedRate)
        // Faster than assumed: taken at once.
        let fast = 4 * RetryPacer.assumedRate
        Self.answer(pacer, clock, rate: fast, seconds: 1, bytes: Self.mebibyte)
        #expect(abs(pacer.rate - fast) / fast < 0.05, "\(pacer.rate)")
        // Slower: followed within a few seconds (a tenth less each quarter of a second).
        let slow = RetryPacer.assumedRate / 2
        Self.answer(pacer, clock, rate: slow, seconds: 2, bytes: Self.mebibyte)
        #expect(pacer.rate > slow * 1.2, "not yet: \(pacer.rate)")
        Self.answer(pacer, clock, rate: slow, seconds: 6, bytes: Self.mebibyte)
        #expect(abs(pacer.rate - slow) / slow < 0.05, "\(pacer.rate)")
    }

    @Test func quartersWithNothingInFlightDoNotCount() {
        let clock = ManualClock()
        let pacer = RetryPacer(clock: { clock.now })
        // A sender with one request at a time and pauses between: what it sends, not what the
        // collector can take.
        for _ in 0..<40 {
            Self.answer(pacer, clock, rate: RetryPacer.assumedRate, seconds: 0.01, bytes: Self.mebibyte, idle: true)
            clock.advance(seconds: 0.1)
        }
        #expect(pacer.rate == RetryPacer.assumedRate)
        // Refused requests count nothing towards the rate either.
        for _ in 0..<100 {
            pacer.began(Self.mebibyte)
            clock.advance(seconds: 0.01)
            pacer.ended(Self.mebibyte, stored: false)
        }
        #expect(pacer.rate == RetryPacer.assumedRate)
    }
}

/// Requests end on many threads at once, each reading the time: a time read before another
/// thread's later one must not be taken for a negative interval (it trapped the collector).
@Suite struct RetryPacerConcurrencyTests {
    @Test func requestsEndingOnManyThreadsAtOnce() async {
        let pacer = RetryPacer()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<20_000 {
                        pacer.began(1000)
                        pacer.ended(1000, stored: true)
                        _ = pacer.refused(1000)
                    }
                }
            }
        }
        #expect(pacer.rate > 0)
        // Nothing is in flight any more: the wait is for what was refused, and within its bounds.
        let wait = pacer.refused(1)
        #expect(wait >= RetryPacer.shortest && wait <= RetryPacer.longest)
    }
}
