import Foundation
import Synchronization

/// When a sender refused as `overloaded` should come back.
///
/// A burst past the collector's bounds is refused at once. With every refusal saying "one
/// second", the refused senders came back in the second after, while the collector had emptied
/// its queue in the first ~0.2 s and idled (`bench ingest`, 200 connections of 1,000-event
/// requests: half the rate of 4 connections, the cores ~70% busy). The pacer instead gives the
/// refused senders turns: each is told to wait for what is admitted now and for what the senders
/// refused before it will send, at the rate the collector has been answering. So they come back
/// one after another, about as fast as the collector takes them.
///
/// Bytes are the unit: each request's bytes as sent (`Content-Length`). The rate is what the
/// collector can take, not what it was sent: it is measured only over quarters of a second in
/// which some request was in flight all along, and it is the largest such measure, decaying by a
/// tenth each quarter after it, so that a collector slower now (a larger store, a busier machine)
/// is followed within a few seconds. Waits that turn out too short are refused again, with a turn
/// further back; too long ones leave the collector idle, so the estimate leans to the fast side.
package final class RetryPacer: Sendable {
    private struct State {
        /// Bytes admitted and not answered yet.
        var inFlight = 0
        /// Bytes answered 200 since `windowStart`.
        var windowBytes = 0
        var windowStart: UInt64 = 0
        /// Whether nothing was in flight at some moment since `windowStart`.
        var idled = false
        /// Bytes a second the collector answers, once measured.
        var rate: Double? = nil
        /// Bytes of refused requests expected back, less what the collector can have taken since
        /// `owedAt`.
        var owed: Double = 0
        var owedAt: UInt64 = 0
    }

    private let state = Mutex(State())
    /// The rate assumed before any is measured (a burst at start: clients reconnecting to a
    /// collector that restarted). More than one collector took on the 2-core development machine
    /// (`bench ingest`: ~80 MiB/s), since too high a rate costs a second refusal, with a turn
    /// measured by then, and too low a rate leaves the collector idle: at 24 MiB/s, 200 senders
    /// refused at start were told to come back over 6 s, and the cores were 43% busy.
    package static let assumedRate: Double = 128 * 1024 * 1024
    /// A rate is measured over at least this long.
    package static let window: UInt64 = 250_000_000
    /// A window longer than this held idle time: it is not a measure of the rate.
    static let longestWindow: UInt64 = 2_000_000_000
    /// The shortest and longest waits given.
    package static let shortest = 0.05
    package static let longest = 30.0

    private let clock: @Sendable () -> UInt64

    /// `clock` gives monotonic nanoseconds (tests pass their own).
    package init(clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.clock = clock
    }

    /// A request of `bytes` was admitted.
    package func began(_ bytes: Int) {
        state.withLock { $0.inFlight += bytes }
    }

    /// The request admitted with `bytes` was answered; `stored` tells whether it was taken (200):
    /// only those count towards the rate.
    package func ended(_ bytes: Int, stored: Bool) {
        state.withLock { state in
            // Read under the lock: a time read before it could be older than what another
            // thread stored meanwhile.
            let now = clock()
            state.inFlight -= bytes
            if state.windowStart == 0 { state.windowStart = now }
            if stored { state.windowBytes += bytes }
            let elapsed = now &- min(now, state.windowStart)
            if elapsed >= Self.window {
                if !state.idled, elapsed <= Self.longestWindow {
                    let measured = Double(state.windowBytes) / (Double(elapsed) / 1e9)
                    state.rate = max(measured, (state.rate ?? Self.assumedRate) * 0.9)
                }
                state.windowStart = now
                state.windowBytes = 0
                state.idled = false
            }
            if state.inFlight <= 0 { state.idled = true }
        }
    }

    /// The bytes a second the pacer reckons with now.
    package var rate: Double {
        state.withLock { $0.rate ?? Self.assumedRate }
    }

    /// A request of `bytes` is refused: the seconds its sender should wait, from
    /// ``shortest`` to ``longest``. Its bytes are then owed: the next refused sender waits for
    /// them too.
    package func refused(_ bytes: Int) -> Double {
        return state.withLock { state in
            let now = clock()
            let rate = state.rate ?? Self.assumedRate
            if state.owedAt != 0 {
                state.owed = max(0, state.owed - rate * Double(now &- min(now, state.owedAt)) / 1e9)
            }
            state.owedAt = now
            let wait = (Double(max(0, state.inFlight)) + state.owed) / rate
            state.owed += Double(bytes)
            return min(max(wait, Self.shortest), Self.longest)
        }
    }
}
