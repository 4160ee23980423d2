import Foundation
import Synchronization
public import TelemetryCatalog
public import TelemetryStore

/// Limits on what one request may carry (the body's size is the server's: it is checked before
/// the body is read).
public struct IngestLimits: Sendable {
    /// Events per request.
    public var maxEventsPerRequest: Int = 10_000
    /// Nesting depth of an event.
    public var maxDepth: Int = 64
    /// Size of one event (one NDJSON line, one array element), bytes.
    public var maxEventBytes: Int = 1 << 20
    /// Length of a field's string value, bytes.
    public var maxStringBytes: Int = 256 << 10
    /// Events waiting for the sink (``EventSink/pendingEvents``) past which a request is refused
    /// whole with ``Overloaded`` instead of queued: each request's wait for its commit grows with
    /// the queue, so the bound keeps latency bounded at any load. 6,000 events is ~0.1 s of the
    /// SQLite writer's work on the 2-core machine: `bench ingest` from 16 connections measured
    /// p99 383 ms with no bound. `nil` for no bound.
    public var maxQueuedEvents: Int? = 6_000
    /// Bytes of request bodies being parsed and validated at once past which a request is refused
    /// with ``Overloaded`` (one request is always taken, whatever its size): past it the cores are
    /// short, and every request, the refusals among them, waits for CPU. 4 MiB is ~0.04 s of
    /// validation on two cores (16 MiB measured p99 216-291 ms at 64 connections of 1,000-event
    /// requests, 8 MiB 181 ms, the same rate; with refused senders paced, 4 MiB against 8 at 200
    /// connections: p99 298-329 ms against 306-389, 75k-80k events/s against 69k-74k). Every
    /// byte admitted is work that each later request waits behind. The same bound applies, counted apart, to the
    /// bodies being received (``admit(contentLength:)``) and to the bodies validated and waiting
    /// for the batch they follow (``BatchOrder``). `nil` for no bound.
    public var maxValidatingBytes: Int? = 4 << 20

    public init(
        maxEventsPerRequest: Int = 10_000, maxDepth: Int = 64, maxEventBytes: Int = 1 << 20, maxStringBytes: Int = 256 << 10,
        maxQueuedEvents: Int? = 6_000, maxValidatingBytes: Int? = 4 << 20
    ) {
        self.maxEventsPerRequest = maxEventsPerRequest
        self.maxDepth = maxDepth
        self.maxEventBytes = maxEventBytes
        self.maxStringBytes = maxStringBytes
        self.maxQueuedEvents = maxQueuedEvents
        self.maxValidatingBytes = maxValidatingBytes
    }
}

/// The collector is past what it can take now: the sink's queue holds
/// ``IngestLimits/maxQueuedEvents`` or more, or other requests are being validated with
/// ``IngestLimits/maxValidatingBytes``. The request was refused whole, nothing of it was taken;
/// the client retries later.
public struct Overloaded: Error, Sendable {
    /// Which bound, for the answer.
    public let message: String
}

/// What became of a request's events.
public struct IngestResult: Sendable {
    /// Events stored now.
    public var accepted: Int
    /// Events whose `event_id` was already stored (or repeated in the request).
    public var duplicates: Int
    /// Events refused, with every reason; `index` is the event's position in the request.
    public var rejected: [RejectedEvent]
    /// Stored events by topic name.
    public var acceptedByTopic: [String: Int] = [:]
    /// Duplicates by topic name.
    public var duplicatesByTopic: [String: Int] = [:]
}

/// Validates a request's events and hands them to the writer: the pipeline from body to ack.
///
/// Knows nothing of HTTP: the server gives it bytes and turns its result (or error) into a response.
public struct Ingestor: Sendable {
    public let catalog: Catalog
    public let limits: IngestLimits
    /// Where valid events (and the rejections) go: the store's writer, or Kafka.
    public let sink: any EventSink
    /// Applied to every valid event before it is stored; `nil` stores events as sent.
    public let privacy: PrivacyPolicy?
    /// Bytes of the bodies being parsed and validated now.
    private let validating = ValidatingBytes()
    /// Bytes of the bodies validated and waiting for the batch they follow, bounded like those
    /// being validated: a sender's followers otherwise hold memory for up to the order's wait.
    private let following = ValidatingBytes()
    /// Bytes of the bodies being received (by their declared length), bounded like those being
    /// validated and counted apart: without it, a burst of senders had every body read into
    /// memory before any was refused (200 connections of 1,000 events: 347 MiB).
    private let receiving = ValidatingBytes()
    /// The order of senders' batches that follow one another (``ingest(_:ndjson:requestID:receivedMicros:tenantID:after:)``).
    public let order: BatchOrder

    public init(
        catalog: Catalog = .builtin, limits: IngestLimits = IngestLimits(), privacy: PrivacyPolicy? = nil, sink: any EventSink,
        order: BatchOrder = BatchOrder()
    ) {
        self.catalog = catalog
        self.limits = limits
        self.privacy = privacy
        self.sink = sink
        self.order = order
    }

    /// Admits a request body of `contentLength` bytes (as its sender declared) before it is read:
    /// throws ``Overloaded`` when the sink's queue is full, or when bodies being received already
    /// hold ``IngestLimits/maxValidatingBytes`` (one body is always admitted). Once admitted, call
    /// ``received(_:)`` with the same count when the body has been read (or could not be), before
    /// ``ingest(_:ndjson:requestID:receivedMicros:tenantID:after:)``, which bounds it again among
    /// the bodies being validated.
    public func admit(contentLength: Int) throws(Overloaded) {
        try checkQueue()
        try receiving.take(contentLength, bound: limits.maxValidatingBytes, waiting: "are being received")
    }

    /// The body admitted by ``admit(contentLength:)`` was read.
    public func received(_ contentLength: Int) {
        receiving.release(contentLength)
    }

    /// Throws ``Overloaded`` when the sink's queue is at ``IngestLimits/maxQueuedEvents``.
    private func checkQueue() throws(Overloaded) {
        if let bound = limits.maxQueuedEvents, sink.pendingEvents >= bound {
            throw Overloaded(message: "the collector has \(bound) or more events waiting for the store")
        }
    }

    /// Validates the events of `body`, stores the valid ones and the rejections in one transaction,
    /// and returns once they are durable.
    ///
    /// - Parameters:
    ///   - body: the request body (already decompressed).
    ///   - ndjson: whether the sender declared NDJSON.
    ///   - requestID: recorded with every stored and rejected event.
    ///   - receivedMicros: when the request arrived, UTC microseconds.
    ///   - tenantID: when set (the sender's API key belongs to this tenant), events of any other
    ///     tenant are rejected as `forbidden_tenant`; the others are stored.
    /// - Throws: ``EventBody/Failure`` when the body is not JSON at all, carries too many events, or
    ///   holds nothing that could be read as an event (`not_json`, or `too_large` when what was
    ///   sent is over a limit); nothing is stored then but the refusal, in the rejected store.
    ///   ``StoreError`` when the store could not write (nothing is stored). ``Overloaded`` when
    ///   the sink's queue is full (checked before parsing and again after validation) or other
    ///   requests' bodies being validated reach their bound (nothing is stored). ``OutOfOrder``
    ///   when the batch named by `after` was not stored (nothing is stored).
    public func ingest(
        _ body: [UInt8], ndjson: Bool, requestID: String, receivedMicros: Int64, tenantID: String? = nil,
        after: BatchOrder.Key? = nil
    ) async throws -> IngestResult {
        // Refused whole before any work when the queue is full or the cores are taken.
        try checkQueue()
        try validating.take(body.count, bound: limits.maxValidatingBytes)
        var notJSON: EventBody.Failure? = nil
        let ranges = body.withUnsafeBytes { bytes -> [Range<Int>] in
            do throws(EventBody.Failure) {
                return try EventBody.split(bytes, ndjson: ndjson, maxEvents: limits.maxEventsPerRequest, maxDepth: limits.maxDepth)
            } catch {
                notJSON = error
                return []
            }
        }
        var batch = WriteBatch()
        if notJSON == nil {
            // A large request's events are validated in parts side by side (one a core): a client
            // with one request in flight (the SDK, `send`) waits for its whole validation.
            let parts = Self.parts(of: ranges.count)
            if parts.count == 1 {
                batch = validate(body, ranges, 0..<ranges.count, receivedMicros: receivedMicros, requestID: requestID, tenantID: tenantID)
            } else {
                var validated = await withTaskGroup(of: (Int, WriteBatch).self) { group in
                    for (number, part) in parts.enumerated() {
                        group.addTask {
                            (number, validate(body, ranges, part, receivedMicros: receivedMicros, requestID: requestID, tenantID: tenantID))
                        }
                    }
                    var results = [WriteBatch?](repeating: nil, count: parts.count)
                    for await (number, part) in group { results[number] = part }
                    return results
                }
                batch.events.reserveCapacity(ranges.count)
                for index in validated.indices {
                    var part = validated[index].take()!
                    batch.events.appendMoving(&part.events)
                    batch.rejected += part.rejected
                }
            }
            // Each rejection belongs to the sender's tenant when a key says who sent it, else to the
            // tenant the event names (when it can be read), so a tenant's reader sees its own.
            for i in batch.rejected.indices {
                batch.rejected[i].tenantID = tenantID?.lowercased() ?? Self.tenantNamed(in: batch.rejected[i].raw)
            }
            // Nothing in the body could be read as an event: refuse it whole, as not JSON, or as
            // over a limit when that is why (a hostile body gets a 4xx, not a 200).
            let unreadable: Set<ValidationIssue.Code> = [.malformedJSON, .tooDeep, .tooLarge]
            if batch.events.isEmpty, !batch.rejected.isEmpty,
                batch.rejected.allSatisfy({ rejected in rejected.issues.contains { unreadable.contains($0.code) } })
            {
                let first = batch.rejected[0].issues.first { unreadable.contains($0.code) }!
                notJSON =
                    first.code == .malformedJSON
                    ? EventBody.Failure(code: "not_json", message: "the body is not JSON: \(first.message)")
                    : EventBody.Failure(
                        code: first.code.rawValue, message: "\(first.field.isEmpty ? "" : first.field + ": ")\(first.message)")
            }
        }
        // Validated: from here the events count in the sink's queue.
        validating.release(body.count)
        if let notJSON {
            if notJSON.code != "too_many_events" {
                // Not lost either: the bytes are kept in the rejected store with the reason (the first
                // 64 KiB: a body that is no JSON at all is evidence, not data to replay).
                let kept = 1 << 16
                let note = body.count > kept ? " (the first \(kept) of \(body.count) bytes are kept)" : ""
                var rejection = RejectedEvent(
                    raw: Array(body.prefix(kept)),
                    issues: [
                        ValidationIssue(
                            field: "", code: notJSON.code == "not_json" ? .malformedJSON : ValidationIssue.Code(rawValue: notJSON.code),
                            message: notJSON.message + note)
                    ], eventType: nil,
                    eventID: nil, index: 0, receivedMicros: receivedMicros, requestID: requestID)
                rejection.tenantID = tenantID?.lowercased()
                _ = try await sink.submit(WriteBatch(rejected: [rejection]))
            }
            throw notJSON
        }
        // Validated while the batch before it was being stored; handed over only once that one is.
        if let after {
            try following.take(body.count, bound: limits.maxValidatingBytes, waiting: "wait for the batches they follow")
            do {
                try await order.waitUntilStored(after)
            } catch {
                following.release(body.count)
                throw error
            }
            following.release(body.count)
        }
        // Checked again now that the events are validated: requests validated side by side all
        // passed the check before parsing, and would queue past the bound together.
        try checkQueue()
        let rejected = batch.rejected
        let definitions = batch.events.map(\.event.compiled.index)
        // Handed over: the writer holds the only reference to the events and can move them.
        let outcome = try await sink.submit(consume batch)
        var result = IngestResult(accepted: outcome.stored, duplicates: outcome.duplicates, rejected: rejected)
        // Counted by event definition (an array index per event), then folded into topics.
        var accepted = [Int](repeating: 0, count: catalog.events.count)
        var duplicates = accepted
        for (index, sequence) in outcome.sequences.enumerated() {
            let definition = definitions[index]
            if sequence == nil { duplicates[definition] += 1 } else { accepted[definition] += 1 }
        }
        for (definition, event) in catalog.events.enumerated() {
            if accepted[definition] > 0 { result.acceptedByTopic[event.topic.name, default: 0] += accepted[definition] }
            if duplicates[definition] > 0 { result.duplicatesByTopic[event.topic.name, default: 0] += duplicates[definition] }
        }
        return result
    }

    /// Events of a request below which it is validated in one part: splitting costs a task, and
    /// a part this small takes ~1 ms.
    static let eventsPerPart = 256

    /// The cores this process may use, read once: Foundation reads the cgroup's files on every
    /// call (~18 µs, eight system calls), too much for every request.
    static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// The parts a request of `count` events is validated in: one a core, each of at least
    /// ``eventsPerPart`` events, in order.
    static func parts(of count: Int, cores: Int = Ingestor.cores) -> [Range<Int>] {
        let number = max(1, min(cores, count / eventsPerPart))
        return (0..<number).map { part in (count * part / number)..<(count * (part + 1) / number) }
    }

    /// Validates the events of `body` at `ranges[part]`: the valid ones (after the privacy policy)
    /// and the rejections, each with its index in the request; rejections' tenants are not set yet.
    private func validate(
        _ body: [UInt8], _ ranges: [Range<Int>], _ part: Range<Int>, receivedMicros: Int64, requestID: String, tenantID: String?
    ) -> WriteBatch {
        var batch = WriteBatch()
        batch.events.reserveCapacity(part.count)
        let tenantBytes = tenantID.flatMap { UUIDValue($0) }
        var validator = EventValidator(
            catalog: catalog, limits: ValidationLimits(maxDepth: limits.maxDepth, maxStringBytes: limits.maxStringBytes))
        body.withUnsafeBytes { bytes in
            for index in part {
                let range = ranges[index]
                guard range.count <= limits.maxEventBytes else {
                    // Not parsed: kept (its first 64 KiB) with the reason.
                    let issue = ValidationIssue(
                        field: "", code: .tooLarge,
                        message: "the event is \(range.count) bytes, over the limit of \(limits.maxEventBytes) bytes per event (the first 65536 bytes are kept)")
                    batch.rejected.append(
                        RejectedEvent(
                            raw: Array(bytes[range].prefix(1 << 16)), issues: [issue], eventType: nil, eventID: nil, index: index,
                            receivedMicros: receivedMicros, requestID: requestID))
                    continue
                }
                switch validator.validate(UnsafeRawBufferPointer(rebasing: bytes[range])) {
                case .valid(let event):
                    if let tenantBytes, event.tenantID != tenantBytes {
                        let issue = ValidationIssue(
                            field: "tenant_id", code: .forbiddenTenant,
                            message: "tenant_id \(event.tenantID) is not the tenant of the API key that sent it (\(tenantID!)); a key writes its own tenant's events only")
                        let raw = Array(bytes[range])
                        batch.rejected.append(
                            RejectedEvent(
                                raw: privacy?.apply(toRaw: raw) ?? raw, issues: [issue], eventType: event.compiled.definition?.eventType,
                                eventID: event.eventID.description, index: index, receivedMicros: receivedMicros, requestID: requestID))
                        continue
                    }
                    let stored = privacy?.apply(to: event) ?? event
                    batch.events.append(IncomingEvent(event: stored, receivedMicros: receivedMicros, requestID: requestID))
                case .invalid(let invalid):
                    let raw = Array(bytes[range])
                    batch.rejected.append(
                        RejectedEvent(
                            raw: privacy?.apply(toRaw: raw) ?? raw, issues: invalid.issues, eventType: invalid.eventType, eventID: invalid.eventID,
                            index: index, receivedMicros: receivedMicros, requestID: requestID))
                }
            }
        }
        return batch
    }

    /// The `tenant_id` of a rejected event's bytes, when they are a JSON object naming a UUID.
    static func tenantNamed(in raw: [UInt8]) -> String? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(raw))) as? [String: Any],
            let text = object["tenant_id"] as? String, let uuid = UUIDValue(text)
        else { return nil }
        return uuid.description
    }
}

/// The bytes of request bodies being parsed and validated, shared by a collector's requests.
package final class ValidatingBytes: Sendable {
    private let bytes = Atomic(0)

    package init() {}

    /// Takes `count` bytes in, unless others hold `bound` with them already (one request is
    /// always taken, so a body of any size can be validated).
    package func take(_ count: Int, bound: Int?, waiting: String = "are being validated") throws(Overloaded) {
        let before = bytes.add(count, ordering: .relaxed).oldValue
        if let bound, before > 0, before + count > bound {
            release(count)
            throw Overloaded(message: "other requests with \(before) bytes \(waiting) (the bound is \(bound))")
        }
    }

    package func release(_ count: Int) {
        bytes.subtract(count, ordering: .relaxed)
    }
}
