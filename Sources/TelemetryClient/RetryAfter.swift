/// How long a client waits after a refusal.
package enum RetryAfter {
    /// What a refusal asked for.
    package enum Hint: Sendable, Equatable {
        /// `Retry-After-Ms`: the collector's own turn for this sender, in seconds. The collector
        /// paces the senders it refuses, each after those refused before it, so the wait is
        /// taken as given (spread by up to a tenth more): a longer one would leave it idle.
        case paced(Double)
        /// `Retry-After` alone, in seconds: the same for every sender refused at once.
        case seconds(Double)
    }

    /// The hint of an answer's `Retry-After` and `Retry-After-Ms` headers; `nil` with neither (or
    /// neither a number).
    package static func hint(retryAfter: String?, milliseconds: String?) -> Hint? {
        if let text = milliseconds, let value = Double(text), value.isFinite, value >= 0 { return .paced(value / 1000) }
        if let text = retryAfter, let value = Double(text), value.isFinite, value >= 0 { return .seconds(value) }
        return nil
    }

    /// Seconds to wait before the next try. A paced hint is taken as given (spread by up to a
    /// tenth); otherwise the larger of `backoff` (the sender's own exponential backoff, jittered)
    /// and `Retry-After` spread over one more of it (``spread(_:)``).
    package static func wait(_ hint: Hint?, backoff: Double) -> Double {
        switch hint {
        case .paced(let seconds): return seconds * Double.random(in: 1...1.1)
        case .seconds(let seconds): return max(backoff, spread(seconds))
        case nil: return backoff
        }
    }

    /// Never sooner than `seconds`, and spread over one more of it. A collector past its bounds
    /// refuses a burst of requests at once, all with the same `Retry-After`; senders that then
    /// waited exactly that long came back together, to be refused together again while its cores
    /// idled (`bench ingest`, 200 senders of 1,000 events: 17k events/s, the cores 21% busy; spread,
    /// 48k and 55%).
    package static func spread(_ seconds: Double) -> Double {
        seconds * Double.random(in: 1...2)
    }
}
