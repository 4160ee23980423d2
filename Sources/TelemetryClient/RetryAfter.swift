/// How long a client waits after a refusal that named `Retry-After`.
package enum RetryAfter {
    /// Never sooner than `seconds`, and spread over one more of it. A collector past its bounds
    /// refuses a burst of requests at once, all with the same `Retry-After`; senders that then
    /// waited exactly that long came back together, to be refused together again while its cores
    /// idled (`bench ingest`, 200 senders of 1,000 events: 17k events/s, the cores 21% busy; spread,
    /// 48k and 55%).
    package static func spread(_ seconds: Double) -> Double {
        seconds * Double.random(in: 1...2)
    }
}
