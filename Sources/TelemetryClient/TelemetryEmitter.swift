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
    /// Requests on their way at once, each on a connection of its own. With two, the collector
    /// validates the next batch while it stores the one before, and stores them in the order they
    /// were sent (each request names the batch it follows: `Telemetry-After`).
    public var maxRequestsInFlight = 2
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
/// passed, up to `maxRequestsInFlight` at once; each names the one before it (`Telemetry-After`),
/// and the collector stores a batch only after the one it follows. A batch the collector cannot
/// take yet (connection refused, 429, 503, or 409 when the one it follows failed) goes to the
/// spool and is retried with exponential backoff and jitter (honouring `Retry-After`); while the
/// spool holds anything, new batches queue behind it, so each source's events arrive in order. The
/// collector's dedupe on `event_id` makes every retry safe. On graceful shutdown the emitter sends
/// what is queued within `shutdownTimeout` and spools the rest.
public final class TelemetryEmitter: Service, Sendable {
    public let configuration: TelemetryEmitterConfiguration
    let logger: Logger
    private let queue: Mutex<Queue>
    let spool: Spool
    private let ids = Mutex(UUIDv7Generator())
    private let retryState: Mutex<RetryState>
    /// Keep-alive connections, one a request in flight: only the sending loop (and then the final
    /// flush) uses them, one request at a time each. The spool is retried on the first.
    private let connections: [HTTPConnection]
    private let metrics: EmitterMetrics

    /// The queue and the counters, under one lock: `emit` takes it once.
    struct Queue {
        /// Waiting events are `events[head...]`: batches are taken from the front by moving
        /// `head`, and the taken ones let go of now and then, so that taking a batch does not
        /// move every waiting event under the lock that `emit` takes.
        var events: [any TelemetryEvent] = []
        var head = 0
        var counts = EmitterCounts()

        var count: Int { events.count - head }

        /// The first `count` waiting events, taken out.
        mutating func take(_ count: Int) -> [any TelemetryEvent] {
            let taken = Array(events[head..<head + count])
            head += count
            if head == events.count {
                events.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 4096, head * 2 >= events.count {
                events.removeFirst(head)
                head = 0
            }
            return taken
        }
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
        self.connections = (0..<max(1, configuration.maxRequestsInFlight)).map { _ in
            // Large batches wait for the collector's 100 Continue: one it refuses (429, past what
            // it can take) is never uploaded.
            HTTPConnection(host: configuration.host, port: configuration.port, apiKey: configuration.apiKey, expectsContinue: true)
        }
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
            guard queue.count < capacity else {
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
    public var queuedCount: Int { queue.withLock { $0.count } }

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
            queue.take(queue.count)
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
            queue.take(min(size, queue.count))
        }
    }

    /// A request on its way: its batch, the connection it uses, and its answer to come.
    private struct Flight {
        var body: [UInt8]
        var count: Int
        var name: String
        var connection: Int
        var answer: Task<PostResult, Never>
    }

    /// Sends queued batches while the collector takes them, up to `maxRequestsInFlight` at once,
    /// each naming the one before it, so that the collector stores them in order. Once one fails,
    /// it and every later batch go to the spool, behind which order is kept (a request already on
    /// its way after a failed one fails too, or was stored after it: the collector sees to that).
    ///
    /// The next batch is taken and encoded while the requests before it are on their way:
    /// encoding and gzip cost about as much as the collector's answer.
    private func sendQueued(deadline: ContinuousClock.Instant? = nil) async {
        var flights: [Flight] = []
        var failed = false
        var next = takeEncodedBatch()
        while true {
            while flights.count < connections.count, let batch = next, !failed, spool.isEmpty {
                if let deadline, ContinuousClock.now >= deadline { break }
                let name = UUID().uuidString.lowercased()
                let after = flights.last?.name
                let used = flights.map(\.connection)
                let connection = connections.indices.first { !used.contains($0) }!
                let answer = Task { [connections] in
                    await self.post(batch.body, count: batch.count, on: connections[connection], name: name, after: after)
                }
                flights.append(Flight(body: batch.body, count: batch.count, name: name, connection: connection, answer: answer))
                next = takeEncodedBatch()
            }
            guard !flights.isEmpty else { break }
            let flight = flights.removeFirst()
            var result = await flight.answer.value
            if case .tooLarge = result {
                // Split here, in the batches' order: the batch after it may be too large as well,
                // and its halves must not overtake these.
                result = await postHalves(flight.body, count: flight.count, on: connections[flight.connection])
            }
            if case .later(let hint) = result {
                spoolBody(flight.body, count: flight.count)
                if !failed { backOff(hint) }
                failed = true
            }
        }
        // Taken from the queue already: kept in the spool, in order, not lost.
        if let batch = next { spoolBody(batch.body, count: batch.count) }
        // Behind the spool, everything queued waits in it, in order (past a deadline, `flush`
        // spools what is left).
        if deadline == nil {
            while !spool.isEmpty, let batch = takeEncodedBatch() { spoolBody(batch.body, count: batch.count) }
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
            var result = await post(head.body, count: head.count, on: connections[0], isRetry: true)
            if case .tooLarge = result { result = await postHalves(head.body, count: head.count, on: connections[0]) }
            switch result {
            case .done, .tooLarge:
                spool.removeHead()
                retryState.withLock { $0.delay = configuration.initialBackoff }
            case .later(let hint):
                backOff(hint)
                return
            }
        }
    }

    /// Schedules the next retry: exponential backoff with full jitter, never sooner than `Retry-After`
    /// (and spread past it), or the collector's own turn when it sent `Retry-After-Ms`
    /// (``RetryAfter/wait(_:backoff:)``).
    private func backOff(_ hint: RetryAfter.Hint?) {
        let maximum = configuration.maxBackoff
        retryState.withLock { state in
            let jittered = Double(Int64.random(in: 0...max(1, state.delay.milliseconds))) / 1000
            state.next = ContinuousClock.now + .seconds(RetryAfter.wait(hint, backoff: jittered))
            state.delay = min(state.delay * 2, maximum)
        }
    }

    enum PostResult {
        case done
        case later(RetryAfter.Hint?)
        /// 413 for a batch of several events: too much for one request, to be sent in halves
        /// (``postHalves(_:count:on:)``), in the batches' order.
        case tooLarge
    }

    /// One POST of a batch, named `name` and following batch `after` when set. `.done` when the
    /// collector answered for good (200, or a 4xx that will not change on retry), `.later` when it
    /// should be retried.
    private func post(
        _ body: [UInt8], count: Int, on connection: HTTPConnection, name: String? = nil, after: String? = nil, isRetry: Bool = false
    ) async -> PostResult {
        if isRetry {
            updateCounts { $0.retried += 1 }
            metrics.retried.increment()
        }
        var headers = [("Content-Type", "application/x-ndjson")]
        if Gzip.isGzip(body) { headers.append(("Content-Encoding", "gzip")) }
        if let name { headers.append(("Telemetry-Batch", name)) }
        if let after { headers.append(("Telemetry-After", after)) }
        let response: HTTPResponse
        do {
            response = try await connection.request("POST", "/v1/events", headers: headers, body: body, timeoutSeconds: 30)
        } catch {
            logger.debug("telemetry.emitter.unreachable", metadata: ["error": "\(error)"])
            return .later(nil)
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
        case 409:
            // The batch this one follows was not stored: it is retried from the spool, after it.
            return .later(nil)
        case 429, 503, 500, 502, 504:
            return .later(RetryAfter.hint(retryAfter: response.header("retry-after"), milliseconds: response.header("retry-after-ms")))
        case 401, 403:
            // A missing, revoked or under-scoped key: the batch waits in the spool (a restart with the
            // right key replays it) rather than being dropped.
            logger.error(
                "telemetry.emitter.unauthorized",
                metadata: ["http.status": "\(response.status)", "answer": "\(response.text.prefix(300))"])
            return .later(nil)
        case 413 where count > 1:
            // Too much for one request (the collector's --max-body, before or after gzip, or its
            // --max-events): the events themselves may be fine, so they are not dropped.
            return .tooLarge
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

    /// Sends a batch the collector found too large as two halves, one after the other on
    /// `connection`, each split again while it is too large; an event too large alone is dropped
    /// and counted as any refused batch. A half that must wait makes the whole batch wait
    /// (`.later`): sent again, the halves already stored are duplicates the collector skips.
    private func postHalves(_ body: [UInt8], count: Int, on connection: HTTPConnection) async -> PostResult {
        guard let halves = Gzip.halves(of: body, count: count) else {
            logger.error("telemetry.emitter.batch_refused", metadata: ["http.status": "413", "events": "\(count)"])
            updateCounts { $0.dropped += count }
            metrics.dropped.increment(by: Int64(count))
            return .done
        }
        logger.warning("telemetry.emitter.batch_split", metadata: ["events": "\(count)", "bytes": "\(body.count)"])
        for half in halves {
            var result = await post(half.body, count: half.events.count, on: connection)
            if case .tooLarge = result { result = await postHalves(half.body, count: half.events.count, on: connection) }
            if case .later(let hint) = result { return .later(hint) }
        }
        return .done
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
