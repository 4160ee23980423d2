#if Kafka
import CRdKafka
import Foundation
public import Logging

/// A consumer in a consumer group, committing offsets only when told (after the store's write).
///
/// Its calls block (they wait on the network): call them from a thread of your own, not from
/// Swift's cooperative pool. ``poll(maxMessages:timeout:linger:)`` runs on one thread at a time;
/// ``commit(_:)`` and ``lag()`` may run beside it on another (librdkafka's calls are thread-safe),
/// as the store loader does to poll the next batch while it commits the last; ``close()`` only
/// once neither runs. Rebalances use librdkafka's default handling: partitions taken away
/// are no longer delivered, and their uncommitted messages go to their new owner (the store's
/// dedupe makes that harmless).
public final class KafkaConsumer: @unchecked Sendable {
    // @unchecked: the handle is librdkafka's (thread-safe); `closed` is touched by close() alone.
    private let client: OpaquePointer
    let logger: Logger
    private var closed = false
    private let log: KafkaLogSink

    /// Joins `group` on the brokers of `bootstrap`, subscribed to `topics`.
    public init(
        bootstrap: String, group: String, topics: [String], configuration: [String: String] = [:], logger: Logger
    ) throws(KafkaError) {
        self.logger = logger
        var properties: [String: String] = [
            "enable.auto.commit": "false", "auto.offset.reset": "earliest", "enable.partition.eof": "false",
            "session.timeout.ms": "10000", "enable.auto.offset.store": "false",
            // As the producer's: a small request (an offset commit) after another would wait for
            // the broker's delayed ACK.
            "socket.nagle.disable": "true",
        ]
        properties.merge(configuration) { $1 }
        properties["bootstrap.servers"] = bootstrap
        properties["group.id"] = group
        log = KafkaLogSink(logger: logger)
        client = try makeClient(RD_KAFKA_CONSUMER, try makeConfiguration(properties), log: log)
        rd_kafka_poll_set_consumer(client)
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let error = rd_kafka_subscribe(client, list)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(client)
            throw KafkaError(error)
        }
    }

    deinit {
        close()
        rd_kafka_destroy(client)
    }

    /// Up to `maxMessages` messages: waits up to `timeout` for the first, then keeps taking what
    /// arrives for at most `linger` more, so that a busy topic gives full batches (one store
    /// transaction each) rather than whatever the last fetch left in the queue. Blocks.
    public func poll(maxMessages: Int, timeout: Duration, linger: Duration = .milliseconds(50)) -> [KafkaMessage] {
        var messages: [KafkaMessage] = []
        var deadline = ContinuousClock.now + timeout
        var lingering = false
        while messages.count < maxMessages {
            let left = deadline - .now
            guard left > .zero else { break }
            let wait = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard let raw = rd_kafka_consumer_poll(client, wait) else { continue }
            defer { rd_kafka_message_destroy(raw) }
            let message = raw.pointee
            if message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("kafka.consumer.error", metadata: ["error": "\(KafkaError(message.err))"])
                continue
            }
            messages.append(Self.read(raw, after: messages.last))
            if !lingering {
                lingering = true
                deadline = min(deadline, ContinuousClock.now + linger)
            }
        }
        return messages
    }

    /// Reads a message, sharing with `previous` (the message read before it) what it repeats: the
    /// topic, the key, and each header's name and value. A partition's messages mostly come from
    /// one request of one tenant (the key), so most of a message's headers repeat the one before;
    /// copying each into an array of its own cost ~8 allocations a message.
    static func read(_ raw: UnsafeMutablePointer<rd_kafka_message_t>, after previous: KafkaMessage? = nil) -> KafkaMessage {
        let message = raw.pointee
        /// `first` or `second` when it holds these bytes, else a copy of them.
        func bytes(_ pointer: UnsafeRawPointer?, _ count: Int, like first: [UInt8]?, or second: [UInt8]? = nil) -> [UInt8] {
            guard let pointer, count > 0 else { return [] }
            func holds(_ candidate: [UInt8]?) -> Bool {
                guard let candidate, candidate.count == count else { return false }
                return candidate.withUnsafeBytes { memcmp($0.baseAddress!, pointer, count) == 0 }
            }
            if holds(first) { return first! }
            if holds(second) { return second! }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        /// `candidate` when it is this C string, else the string.
        func string(_ text: UnsafePointer<CChar>, like candidate: String?) -> String {
            if let candidate, candidate.withCString({ strcmp($0, text) == 0 }) { return candidate }
            return String(cString: text)
        }
        let topic = string(rd_kafka_topic_name(message.rkt), like: previous?.topic)
        let value = message.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: message.len)) } ?? []
        let key = bytes(message.key.map { UnsafeRawPointer($0) }, message.key_len, like: previous?.key)
        var headers: [(name: String, value: [UInt8])] = []
        var list: OpaquePointer? = nil
        if rd_kafka_message_headers(raw, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            headers.reserveCapacity(previous?.headers.count ?? 0)
            var index = 0
            var name: UnsafePointer<CChar>? = nil
            var pointer: UnsafeRawPointer? = nil
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &pointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let before = previous.flatMap { index < $0.headers.count ? $0.headers[index] : nil }
                // A header may also repeat the key (`tenant_id`).
                headers.append((name.map { string($0, like: before?.name) } ?? "", bytes(pointer, size, like: before?.value, or: key)))
                index += 1
            }
        }
        return KafkaMessage(topic: topic, partition: message.partition, offset: message.offset, key: key, value: value, headers: headers)
    }

    /// Commits, synchronously, the offsets after `messages` (the highest of each partition, plus
    /// one): call it once they are durable in the store.
    public func commit(_ messages: [KafkaMessage]) throws(KafkaError) {
        var next: [String: [Int32: Int64]] = [:]
        for message in messages {
            next[message.topic, default: [:]][message.partition] = max(next[message.topic]?[message.partition] ?? 0, message.offset + 1)
        }
        guard !next.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(messages.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (topic, partitions) in next {
            for (partition, offset) in partitions {
                rd_kafka_topic_partition_list_add(list, topic, partition)!.pointee.offset = offset
            }
        }
        let error = rd_kafka_commit(client, list, 0)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error) }
    }

    /// Messages behind the end of each assigned partition (high watermark minus position), as
    /// last known to the client.
    public func lag() -> [(topic: String, partition: Int32, lag: Int64)] {
        var assigned: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>? = nil
        guard rd_kafka_assignment(client, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR, let assigned else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(assigned) }
        _ = rd_kafka_position(client, assigned)
        var result: [(String, Int32, Int64)] = []
        for i in 0..<Int(assigned.pointee.cnt) {
            let element = assigned.pointee.elems[i]
            var low: Int64 = 0
            var high: Int64 = 0
            guard rd_kafka_get_watermark_offsets(client, element.topic, element.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                high >= 0
            else { continue }
            let position = element.offset >= 0 ? element.offset : low
            result.append((String(cString: element.topic), element.partition, max(0, high - position)))
        }
        return result
    }

    /// Leaves the group cleanly (its partitions go to the others at once). Blocks.
    public func close() {
        guard !closed else { return }
        closed = true
        _ = rd_kafka_consumer_close(client)
    }
}
#endif
