public import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
public import TelemetryEvents

/// Configuration of a ``TelemetryEmitter``.
public struct TelemetryEmitterConfiguration: Sendable {
    /// The collector, e.g. `http://127.0.0.1:8080`.
    public var host: String
    public var port: Int
    /// The tenant every event belongs to unless it says otherwise.
    public var tenantID: UUID
    /// The emitting service, e.g. `xumi-worker`.
    public var source: String
    /// The API key (scope `ingest`, of `tenantID`'s tenant) when the collector requires keys.
    public var apiKey: String?
    /// Most events waiting to be sent; beyond it `emit` drops the event (counted) rather than block.
    public var queueCapacity = 100_000
    /// Events per request.
    public var batchSize = 1000
    /// The longest an event waits before its batch is sent, when fewer than `batchSize` are queued.
    public var flushInterval: Duration = .milliseconds(250)
    /// Compress request bodies with gzip.
    public var gzip = true
    /// A folder for batches the collector could not take yet (unreachable, 429, 503); `nil` keeps
    /// them in memory instead (within `spoolMaxBytes` either way), and they are lost on a crash.
    public var spoolDirectory: String?
    /// The most bytes the spool holds; when full, the oldest batches are dropped and counted.
    public var spoolMaxBytes = 256 << 20
    /// First retry delay; doubles up to `maxBackoff`, with full jitter. `Retry-After` is honoured.
    public var initialBackoff: Duration = .milliseconds(100)
    public var maxBackoff: Duration = .seconds(30)
    /// How long a graceful shutdown may take to send what is queued; the rest goes to the spool.
    public var shutdownTimeout: Duration = .seconds(10)
    /// Environment fields written into events that have them and leave them unset.
    public var environment: EventEnvironment = .from()

    /// Creates a configuration for the collector at `host:port`.
    public init(host: String = "127.0.0.1", port: Int = 8080, tenantID: UUID, source: String) {
        self.host = host
        self.port = port
        self.tenantID = tenantID
        self.source = source
    }
}

/// The user and session the current task acts for; the emitter writes them into events that
/// leave `user_id` and `session_id` unset.
public enum EventContext {
    @TaskLocal public static var userID: UUID?
    @TaskLocal public static var sessionID: UUID?
}

/// How many events went where, since the emitter started.
public struct EmitterCounts: Sendable, Hashable {
    /// Accepted by `emit` into the queue.
    public var queued = 0
    /// Acknowledged by the collector (accepted or duplicate).
    public var sent = 0
    /// Rejected by the collector as invalid (logged with their reasons).
    public var rejected = 0
    /// Requests retried.
    public var retried = 0
    /// Events written to the spool while the collector could not take them.
    public var spooled = 0
    /// Events dropped: queue full, spool full, or a batch the collector refused for good.
    public var dropped = 0
}

/// The SDK's emitter: services call ``emit(_:)``, which fills the envelope and enqueues without
/// blocking; ``run()`` (a swift-service-lifecycle `Service`) sends batches to the collector.
///
/// Batches are NDJSON, gzipped, sent when `batchSize` events are queued or `flushInterval` has
/// passed. A batch the collector cannot take yet (connection refused, 429, 503) goes to the spool
/// and is retried with exponential backoff and jitter (honouring `Retry-After`); while the spool
/// holds anything, new batches queue behind it, so each source's events arrive in order. The
/// collector's dedupe on `event_id` makes every retry safe. On graceful shutdown the emitter sends
/// what is queued within `shutdownTimeout` and spools the rest.
public final class TelemetryEmitter: Service, Sendable {
    public let configuration: TelemetryEmitterConfiguration
    let logger: Logger
    private let queue: Mutex<Queue>
    let spool: Spool
    private let ids = Mutex(UUIDv7Generator())
    private let retryState: Mutex<RetryState>
    /// One keep-alive connection: only the sending loop (and then the final flush) uses it, one
    /// request at a time.
    private let connection: HTTPConnection
    private let metrics: EmitterMetrics

    /// The queue and the counters, under one lock: `emit` takes it once.
    struct Queue {
        var events: [any TelemetryEvent] = []
        var counts = EmitterCounts()
    }

    /// Creates an emitter; it sends nothing until ``run()`` runs.
    ///
    /// - Throws: when the spool folder cannot be created or read.
    public init(configuration: TelemetryEmitterConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.queue = Mutex(Queue())
        self.spool = try Spool(directory: configuration.spoolDirectory, maxBytes: configuration.spoolMaxBytes)
        self.metrics = EmitterMetrics()
        self.retryState = Mutex(RetryState(delay: configuration.initialBackoff))
        self.connection = HTTPConnection(host: configuration.host, port: configuration.port, apiKey: configuration.apiKey)
        queue.withLock { $0.events.reserveCapacity(min(configuration.queueCapacity, 4096)) }
    }

    /// Fills the event's unset envelope (a time-ordered UUIDv7 id, the current time, tenant,
    /// source, user and session) and environment fields, and queues it. Never blocks: when the
    /// queue is full the event is dropped and counted.
    ///
    /// - Returns: the event as it will be sent, so that a completion can refer to it.
    @discardableResult
    public func emit<Event: TelemetryEvent>(_ event: Event) -> Event {
        var event = event
        let now = Date()
        if event.envelope.eventID == nil { event.envelope.eventID = ids.withLock { $0.next(now) } }
        if event.envelope.timestamp == nil { event.envelope.timestamp = now }
        if event.envelope.tenantID == nil { event.envelope.tenantID = configuration.tenantID }
        if event.envelope.source == nil { event.envelope.source = configuration.source }
        if event.envelope.userID == nil, let user = EventContext.userID { event.envelope.userID = user }
        if event.envelope.sessionID == nil, let session = EventContext.sessionID { event.envelope.sessionID = session }
        event.fillEnvironment(configuration.environment)
        let capacity = configuration.queueCapacity
        let queued = queue.withLock { queue -> Bool in
            guard queue.events.count < capacity else {
                queue.counts.dropped += 1
                return false
            }
            queue.events.append(event)
            queue.counts.queued += 1
            return true
        }
        if !queued { metrics.dropped.increment() }
        return event
    }

    /// Where the emitter's events went so far.
    public var counts: EmitterCounts { queue.withLock { $0.counts } }

    private func updateCounts(_ update: (inout EmitterCounts) -> Void) {
        queue.withLock { update(&$0.counts) }
    }

    /// Events waiting in memory.
    public var queuedCount: Int { queue.withLock { $0.events.count } }

    /// Sends until graceful shutdown, then flushes (see the type's description).
    public func run() async throws {
        var lastSend = ContinuousClock.now
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let waiting = queuedCount
                metrics.queued.record(waiting)
                if waiting >= configuration.batchSize || (waiting > 0 && ContinuousClock.now - lastSend >= configuration.flushInterval) {
                    await sendQueued()
                    lastSend = .now
                }
                if !spool.isEmpty && ContinuousClock.now >= retryState.withLock({ $0.next }) {
                    await retrySpool()
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        } onGracefulShutdown: {}
        await flush(timeout: configuration.shutdownTimeout)
    }

    /// Sends everything queued and spooled, for at most `timeout`; what is still queued then goes
    /// to the spool, to be sent at the next start (with no spool folder it is lost with the process).
    func flush(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            await sendQueued(deadline: deadline)
            if spool.isEmpty && queuedCount == 0 { return }
            let next = retryState.withLock { $0.next }
            if next > deadline { break }
            if ContinuousClock.now < next { try? await Task.sleep(until: next) }
            if !spool.isEmpty { await retrySpool() }
        }
        let rest = queue.withLock { queue -> [any TelemetryEvent] in
            defer { queue.events.removeAll() }
            return queue.events
        }
        if !rest.isEmpty { spoolEvents(rest) }
    }

    // MARK: sending

    /// When the spool may be retried next, and the backoff that got it there.
    struct RetryState {
        var next = ContinuousClock.now
        var delay: Duration
    }

    private func takeBatch() -> [any TelemetryEvent] {
        let size = configuration.batchSize
        return queue.withLock { queue in
            let count = min(size, queue.events.count)
            let batch = Array(queue.events.prefix(count))
            queue.events.removeFirst(count)
            return batch
        }
    }

    /// Sends queued batches while the collector takes them. Once one fails, it and every later
    /// batch go to the spool, behind which order is kept.
    ///
    /// The next batch is taken and encoded while the current one is on its way (one request in
    /// flight, so batches still arrive in order): encoding and gzip cost about as much as the
    /// collector's answer, and took turns with it before.
    private func sendQueued(deadline: ContinuousClock.Instant? = nil) async {
        var current = takeEncodedBatch()
        while let (body, count) = current {
            if let deadline, ContinuousClock.now >= deadline {
                // Taken from the queue already: kept in the spool, in order, not lost.
                spoolBody(body, count: count)
                return
            }
            async let next = takeEncodedBatch()
            if !spool.isEmpty {
                spoolBody(body, count: count)
            } else if case .later(let retryAfter) = await post(body, count: count) {
                spoolBody(body, count: count)
                backOff(retryAfter)
            }
            current = await next
        }
    }

    /// The next batch from the queue, encoded; `nil` when the queue is empty.
    private func takeEncodedBatch() -> (body: [UInt8], count: Int)? {
        let batch = takeBatch()
        return batch.isEmpty ? nil : (encode(batch), batch.count)
    }

    /// Sends the spool's oldest batches until one fails (then backs off) or the spool is empty.
    private func retrySpool() async {
        while let head = spool.head() {
            switch await post(head.body, count: head.count, isRetry: true) {
            case .done:
                spool.removeHead()
                retryState.withLock { $0.delay = configuration.initialBackoff }
            case .later(let retryAfter):
                backOff(retryAfter)
                return
            }
        }
    }

    /// Schedules the next retry: exponential backoff with full jitter, never sooner than `Retry-After`.
    private func backOff(_ retryAfter: Duration?) {
        let maximum = configuration.maxBackoff
        retryState.withLock { state in
            let jittered = Duration.milliseconds(Int64.random(in: 0...max(1, state.delay.milliseconds)))
            state.next = ContinuousClock.now + max(jittered, retryAfter ?? .zero)
            state.delay = min(state.delay * 2, maximum)
        }
    }

    enum PostResult {
        case done
        case later(retryAfter: Duration?)
    }

    /// One POST of a batch. `.done` when the collector answered for good (200, or a 4xx that will
    /// not change on retry), `.later` when it should be retried.
    private func post(_ body: [UInt8], count: Int, isRetry: Bool = false) async -> PostResult {
        if isRetry {
            updateCounts { $0.retried += 1 }
            metrics.retried.increment()
        }
        var headers = [("Content-Type", "application/x-ndjson")]
        if body.count > 2, body[0] == 0x1f, body[1] == 0x8b { headers.append(("Content-Encoding", "gzip")) }
        let response: HTTPResponse
        do {
            response = try await connection.request("POST", "/v1/events", headers: headers, body: body, timeoutSeconds: 30)
        } catch {
            logger.debug("telemetry.emitter.unreachable", metadata: ["error": "\(error)"])
            return .later(retryAfter: nil)
        }
        switch response.status {
        case 200:
            let rejected = logRejections(response.body)
            updateCounts {
                $0.sent += count - rejected
                $0.rejected += rejected
            }
            metrics.sent.increment(by: Int64(count - rejected))
            return .done
        case 429, 503, 500, 502, 504:
            let retryAfter = response.header("retry-after").flatMap(Int64.init).map { Duration.seconds($0) }
            return .later(retryAfter: retryAfter)
        case 401, 403:
            // A missing, revoked or under-scoped key: the batch waits in the spool (a restart with the
            // right key replays it) rather than being dropped.
            logger.error(
                "telemetry.emitter.unauthorized",
                metadata: ["http.status": "\(response.status)", "answer": "\(response.text.prefix(300))"])
            return .later(retryAfter: nil)
        default:
            // 400/413/415: the same bytes would fail again. Logged, counted, not retried.
            logger.error(
                "telemetry.emitter.batch_refused",
                metadata: ["http.status": "\(response.status)", "events": "\(count)", "answer": "\(response.text.prefix(500))"])
            updateCounts { $0.dropped += count }
            metrics.dropped.increment(by: Int64(count))
            return .done
        }
    }

    /// Logs each rejected event with its reasons; returns how many were rejected.
    private func logRejections(_ body: [UInt8]) -> Int {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let rejected = object["rejected"] as? [[String: Any]], !rejected.isEmpty
        else { return 0 }
        for entry in rejected.prefix(20) {
            let errors = (entry["errors"] as? [[String: Any]] ?? []).map {
                "\($0["field"] ?? ""): \($0["code"] ?? ""): \($0["message"] ?? "")"
            }
            logger.warning(
                "telemetry.emitter.event_rejected",
                metadata: ["event.id": "\(entry["event_id"] ?? "")", "errors": "\(errors.joined(separator: "; "))"])
        }
        return rejected.count
    }

    // MARK: spool

    private func spoolBody(_ body: [UInt8], count: Int) {
        let dropped = spool.append(body, count: count)
        updateCounts {
            $0.spooled += count
            $0.dropped += dropped
        }
        metrics.spooled.increment(by: Int64(count))
        if dropped > 0 {
            metrics.dropped.increment(by: Int64(dropped))
            logger.warning("telemetry.emitter.spool_full", metadata: ["events.dropped": "\(dropped)"])
        }
    }

    private func spoolEvents(_ events: [any TelemetryEvent]) {
        var start = 0
        while start < events.count {
            let batch = Array(events[start..<min(events.count, start + configuration.batchSize)])
            spoolBody(encode(batch), count: batch.count)
            start += batch.count
        }
    }

    /// A batch as an NDJSON body, gzipped when configured.
    private static func ndjson(_ batch: [any TelemetryEvent]) -> [UInt8] {
        var writer = EventJSONWriter(reservingCapacity: batch.count * 900)
        for event in batch {
            event.writeJSON(to: &writer)
            writer.newline()
        }
        return writer.bytes
    }

    private func encode(_ batch: [any TelemetryEvent]) -> [UInt8] {
        let body = Self.ndjson(batch)
        return configuration.gzip ? Gzip.compress(body) : body
    }
}

/// The emitter's counters as swift-metrics metrics (a no-op until the process bootstraps a backend).
struct EmitterMetrics: Sendable {
    /// Events waiting in the queue, set by the sending loop (not by `emit`, which stays cheap).
    let queued = Gauge(label: "telemetry_client_queue_events")
    let sent = Counter(label: "telemetry_client_events", dimensions: [("outcome", "sent")])
    let retried = Counter(label: "telemetry_client_retries")
    let spooled = Counter(label: "telemetry_client_events", dimensions: [("outcome", "spooled")])
    let dropped = Counter(label: "telemetry_client_events", dimensions: [("outcome", "dropped")])
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
