#if Kafka
import Foundation
public import TelemetryCatalog
public import TelemetryPipeline
public import TelemetryStore
import Synchronization

/// The collector's sink in Kafka mode: each valid event goes to its catalog topic (with an optional
/// prefix), keyed by `tenant_id`, with headers `event_type`, `tenant_id`, `version` (and
/// `request_id`, `received_us` for the consumer); each rejected event goes to the `rejected` topic
/// with its reasons. `submit` returns once the brokers acknowledged every message (idempotent
/// producer, `acks=all`), and throws ``StoreError`` (a 503, nothing acknowledged) otherwise.
public final class KafkaEventSink: EventSink {
    public let producer: KafkaProducer
    public let topicPrefix: String
    private let inFlight = Atomic<Int>(0)

    /// The topic of rejected events (after the prefix).
    public static let rejectedTopic = "rejected"

    public init(producer: KafkaProducer, topicPrefix: String = "") {
        self.producer = producer
        self.topicPrefix = topicPrefix
    }

    /// Every topic this sink may write, prefixed: the catalog's and `rejected`.
    public static func topics(catalog: Catalog = .builtin, prefix: String = "") -> [String] {
        catalog.topics.map { prefix + $0.name } + [prefix + rejectedTopic]
    }

    public var pendingEvents: Int { inFlight.load(ordering: .relaxed) }

    public func submit(_ batch: consuming WriteBatch) async throws -> WriteOutcome {
        var messages: [KafkaOutgoingMessage] = []
        messages.reserveCapacity(batch.events.count + batch.rejected.count)
        // What many messages share is made once and shared (arrays are copied on write only): the
        // topic and type headers of each event definition, the request's headers (a batch is
        // usually one request), and each tenant's key with the header list of each definition (a
        // request holds few tenants). A message then costs no allocation of ours; it cost ten, then
        // two (its tenant's bytes and its header list).
        var byDefinition: [(topic: String, eventType: [UInt8], version: [UInt8])?] = []
        var request: (id: String, received: Int64, idBytes: [UInt8], receivedBytes: [UInt8])? = nil
        var shared: [SharedKey: (key: [UInt8], headers: [(name: String, value: [UInt8])])] = [:]
        // Each event read where it lies: iterating the array copied each one (a retain and a
        // release of each of its buffers), ~2% of the collector's CPU in `serve --kafka`.
        batch.events.withUnsafeBufferPointer { events in
            for incoming in UnsafePointer(events.baseAddress!)..<events.baseAddress! + events.count {
                let compiled = incoming.pointee.event.compiled
                let index = compiled.index
                if index >= byDefinition.count { byDefinition += Array(repeating: nil, count: index + 1 - byDefinition.count) }
                let definition =
                    byDefinition[index]
                    ?? (topicPrefix + compiled.definition!.topic.name, Array(compiled.definition!.eventType.utf8),
                        Array(compiled.definition!.version.utf8))
                byDefinition[index] = definition
                if request?.id != incoming.pointee.requestID || request?.received != incoming.pointee.receivedMicros {
                    let (id, received) = (incoming.pointee.requestID, incoming.pointee.receivedMicros)
                    request = (id, received, Array(id.utf8), Array(String(received).utf8))
                    shared.removeAll(keepingCapacity: true)
                }
                let sharedKey = SharedKey(definition: index, tenant: incoming.pointee.event.tenantID)
                let made: (key: [UInt8], headers: [(name: String, value: [UInt8])])
                if let known = shared[sharedKey] {
                    made = known
                } else {
                    let tenant = sharedKey.tenant.textBytes
                    made = (
                        tenant,
                        [
                            ("event_type", definition.eventType), ("tenant_id", tenant), ("version", definition.version),
                            ("request_id", request!.idBytes), ("received_us", request!.receivedBytes),
                        ]
                    )
                    shared[sharedKey] = made
                }
                messages.append(
                    KafkaOutgoingMessage(topic: definition.topic, key: made.key, value: incoming.pointee.event.json, headers: made.headers))
            }
        }
        for rejected in batch.rejected {
            messages.append(
                KafkaOutgoingMessage(
                    topic: topicPrefix + Self.rejectedTopic, key: Array((rejected.tenantID ?? "").utf8), value: Self.encode(rejected),
                    headers: [("request_id", Array(rejected.requestID.utf8))]))
        }
        inFlight.add(messages.count, ordering: .relaxed)
        defer { inFlight.subtract(messages.count, ordering: .relaxed) }
        do {
            try await producer.send(messages)
        } catch {
            throw StoreError(.unavailable, "Kafka did not acknowledge every event of the batch (\(error)); nothing is acknowledged", cause: error)
        }
        return WriteOutcome(sequences: batch.events.map { _ in 0 })
    }

    /// What messages of one event definition and tenant share within a request.
    private struct SharedKey: Hashable {
        let definition: Int
        let tenant: UUIDValue
    }

    /// A rejected event as the `rejected` topic carries it: JSON, the raw bytes in base64.
    static func encode(_ rejected: RejectedEvent) -> [UInt8] {
        let value: JSONValue = [
            "received_us": .integer(rejected.receivedMicros), "request_id": .string(rejected.requestID),
            "index": .integer(Int64(rejected.index)), "event_type": rejected.eventType.map { .string($0) } ?? .null,
            "event_id": rejected.eventID.map { .string($0) } ?? .null, "tenant_id": rejected.tenantID.map { .string($0) } ?? .null,
            "errors": .array(rejected.issues.map { ["field": .string($0.field), "code": .string($0.code.rawValue), "message": .string($0.message)] }),
            "raw_base64": .string(Data(rejected.raw).base64EncodedString()),
        ]
        return Array(value.render().utf8)
    }

    /// The rejected event a `rejected` message carries.
    static func decode(_ bytes: [UInt8]) -> RejectedEvent? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
            let received = (object["received_us"] as? NSNumber)?.int64Value, let requestID = object["request_id"] as? String,
            let index = (object["index"] as? NSNumber)?.intValue, let errors = object["errors"] as? [[String: String]],
            let raw = (object["raw_base64"] as? String).flatMap({ Data(base64Encoded: $0) })
        else { return nil }
        let issues = errors.map {
            ValidationIssue(field: $0["field"] ?? "", code: ValidationIssue.Code(rawValue: $0["code"] ?? ""), message: $0["message"] ?? "")
        }
        return RejectedEvent(
            raw: Array(raw), issues: issues, eventType: object["event_type"] as? String, eventID: object["event_id"] as? String,
            tenantID: object["tenant_id"] as? String, index: index, receivedMicros: received, requestID: requestID)
    }
}
#endif
