public import Prometheus
import Synchronization
import TelemetryCatalog
import TelemetryPipeline
import TelemetryStore

/// The collector's own metrics, in a Prometheus registry that `GET /metrics` renders.
///
/// They are made on the registry itself rather than through swift-metrics so that each carries
/// its `# HELP` text (swift-metrics has no place for one, and `promtool check metrics` asks for it).
/// `serve` also bootstraps swift-metrics with a factory over the same registry, so metrics that
/// libraries make through swift-metrics are exported alongside.
public final class CollectorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    static var ingested: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "ingest_events_total",
            unitName: "", helpText: "Events received by POST /v1/events, by topic and outcome (accepted, duplicate, rejected).")
    }
    static var rejected: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "ingest_rejected_events_total",
            unitName: "", helpText: "Events rejected as invalid, by the code of their first problem.")
    }
    static var requests: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "http_request_duration", unitName: "seconds",
            helpText: "Time to answer an HTTP request, by route and method.")
    }
    static var commits: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "commit_duration", unitName: "seconds",
            helpText: "Time of each store transaction (one group commit of the ingest writer).")
    }
    static var commitEvents: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "commit_events",
            unitName: "", helpText: "Events written by each store transaction (one group commit).")
    }
    static var queue: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "writer_queue_events",
            unitName: "", helpText: "Events validated and waiting for the writer's next transaction.")
    }
    static var storeSize: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "store_size", unitName: "bytes", helpText: "Size of the store's database files.")
    }
    static var pairingLag: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "operations_pairing_lag_events",
            unitName: "", helpText: "Stored events not yet paired into operations (by sequence, lifecycle or not).")
    }
    static var dedupeRecentIDs: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "store_dedupe_recent_ids",
            unitName: "", helpText: "Event ids the dedupe index holds in memory, not yet merged into its table (SQLite store).")
    }
    static var stuck: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "operations_stuck",
            unitName: "", helpText: "Operations started and not completed within their kind's timeout, by kind.")
    }

    static var authFailures: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "auth_failures_total",
            unitName: "", helpText: "Requests refused by authentication or authorisation, by key id (unknown when no known key was presented) and reason.")
    }
    static var keyChanges: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "api_key_changes_total",
            unitName: "", helpText: "API keys created or revoked through the admin API, by action.")
    }
    static var rateLimited: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "rate_limited_requests_total",
            unitName: "", helpText: "Requests answered 429 by the per-key rate limit, by key id.")
    }
    static var overloaded: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "ingest_overloaded_requests_total",
            unitName: "", helpText: "POST /v1/events answered 429 overloaded: the events waiting for the store reached --max-queued-events, or the bodies being validated --max-validating-bytes.")
    }
    static var outOfOrder: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "ingest_out_of_order_requests_total",
            unitName: "", helpText: "POST /v1/events answered 409 out_of_order: the batch named by Telemetry-After was not stored.")
    }

    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]
    static let eventBuckets: [Double] = [1, 10, 100, 500, 1000, 2000, 5000, 10_000, 20_000]

    private let commitDuration: DurationHistogram
    private let commitEventCount: ValueHistogram
    let queueDepth: Gauge
    let storeBytes: Gauge
    let pairingLag: Gauge
    let dedupeRecentIDs: Gauge

    /// Creates the metrics in `registry`.
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        commitDuration = registry.makeDurationHistogram(descriptor: Self.commits, buckets: Self.durationBuckets)
        commitEventCount = registry.makeValueHistogram(descriptor: Self.commitEvents, buckets: Self.eventBuckets)
        queueDepth = registry.makeGauge(descriptor: Self.queue)
        storeBytes = registry.makeGauge(descriptor: Self.storeSize)
        pairingLag = registry.makeGauge(descriptor: Self.pairingLag)
        dedupeRecentIDs = registry.makeGauge(descriptor: Self.dedupeRecentIDs)
    }

    /// Records one store transaction; pass it to the `IngestWriter` as `onTransaction`.
    public func recordCommit(events: Int, nanoseconds: UInt64) {
        commitDuration.recordNanoseconds(Int64(nanoseconds))
        commitEventCount.record(Double(events))
    }

    func countIngest(_ result: IngestResult) {
        for (topic, count) in result.acceptedByTopic {
            registry.makeCounter(descriptor: Self.ingested, labels: [("topic", topic), ("outcome", "accepted")]).increment(by: Int64(count))
        }
        for (topic, count) in result.duplicatesByTopic {
            registry.makeCounter(descriptor: Self.ingested, labels: [("topic", topic), ("outcome", "duplicate")]).increment(by: Int64(count))
        }
        var byTopic: [String: Int64] = [:]
        var byCode: [String: Int64] = [:]
        for event in result.rejected {
            let topic = event.eventType.flatMap { Catalog.builtin.latest($0)?.topic.name } ?? "unknown"
            byTopic[topic, default: 0] += 1
            byCode[event.issues.first?.code.rawValue ?? "unknown", default: 0] += 1
        }
        for (topic, count) in byTopic {
            registry.makeCounter(descriptor: Self.ingested, labels: [("topic", topic), ("outcome", "rejected")]).increment(by: count)
        }
        for (code, count) in byCode {
            registry.makeCounter(descriptor: Self.rejected, labels: [("code", code)]).increment(by: count)
        }
    }

    func recordRequest(route: String, method: String, duration: Duration) {
        registry.makeDurationHistogram(descriptor: Self.requests, labels: [("route", route), ("method", method)], buckets: Self.durationBuckets)
            .record(duration)
    }

    func countAuthFailure(keyID: String?, reason: String) {
        registry.makeCounter(descriptor: Self.authFailures, labels: [("key_id", keyID ?? "unknown"), ("reason", reason)]).increment()
    }

    func countKeyChange(_ action: String) {
        registry.makeCounter(descriptor: Self.keyChanges, labels: [("action", action)]).increment()
    }

    func countRateLimited(keyID: String) {
        registry.makeCounter(descriptor: Self.rateLimited, labels: [("key_id", keyID)]).increment()
    }

    func countOverloaded() {
        registry.makeCounter(descriptor: Self.overloaded).increment()
    }

    func countOutOfOrder() {
        registry.makeCounter(descriptor: Self.outOfOrder).increment()
    }

    func setStuck(_ counts: [String: Int]) {
        for (kind, count) in counts {
            registry.makeGauge(descriptor: Self.stuck, labels: [("kind", kind)]).set(Double(count))
        }
    }
}
