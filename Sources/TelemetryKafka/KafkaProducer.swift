#if Kafka
import CRdKafka
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
import TelemetryStore

/// A Kafka producer: `send` produces a batch and returns once every message has its delivery
/// report, throwing if any failed. Idempotent, `acks=all` by default.
///
/// librdkafka calls the delivery reports from `rd_kafka_poll`, which a thread of the producer's own
/// runs (never Swift's cooperative pool). As a `Service`, `run` waits for shutdown and then
/// flushes what is in flight.
public final class KafkaProducer: Service, @unchecked Sendable {
    // @unchecked: `client` is a librdkafka handle, thread-safe by librdkafka's contract; the rest is
    // immutable or under a Mutex.
    let client: OpaquePointer
    let logger: Logger
    private let polling: PollingThread
    private let log: KafkaLogSink
    /// Topic handles by name (see ``topic(_:)``).
    private let topics = Mutex<[String: OpaquePointer]>([:])

    /// The properties the producer sets before `configuration`'s: idempotence (so retries never
    /// duplicate or reorder), `acks=all`, a short linger to batch concurrent requests, a bound
    /// on how long a message may wait for the brokers, and Nagle's algorithm off.
    ///
    /// Nagle: librdkafka leaves it on by default, and a request's messages go out as several
    /// produce requests on one connection; each small one after the first waited for the broker's
    /// delayed ACK (~40 ms). A request of 100 events was answered in ~50 ms with it, ~10 ms
    /// without (one of 1,000: ~59 ms, ~20 ms), and the collector's answer waits for them.
    public static let defaults: [String: String] = [
        "enable.idempotence": "true", "acks": "all", "linger.ms": "5", "message.timeout.ms": "10000",
        "compression.type": "lz4", "socket.nagle.disable": "true",
    ]

    /// Creates a producer for the brokers of `bootstrap` (`host:port,…`).
    public init(bootstrap: String, configuration: [String: String] = [:], logger: Logger) throws(KafkaError) {
        self.logger = logger
        var properties = Self.defaults.merging(configuration) { $1 }
        properties["bootstrap.servers"] = bootstrap
        let conf = try makeConfiguration(properties)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
            guard let message, let opaque = message.pointee._private else { return }
            Unmanaged<DeliveryTracker>.fromOpaque(opaque).takeUnretainedValue().delivered(message.pointee.err)
        }
        log = KafkaLogSink(logger: logger)
        client = try makeClient(RD_KAFKA_PRODUCER, conf, log: log)
        polling = PollingThread(client: client, name: "kafka-reports")
    }

    deinit {
        close()
        for handle in topics.withLock({ Array($0.values) }) { rd_kafka_topic_destroy(handle) }
        rd_kafka_destroy(client)
    }

    /// Produces `messages` and returns once all are acknowledged by the brokers.
    ///
    /// The payloads are not copied: librdkafka reads them from `messages`, which the caller holds
    /// until this returns, and it returns only after the last delivery report.
    ///
    /// - Throws: ``KafkaError`` for the first message that could not be delivered (queue full,
    ///   brokers unreachable beyond `message.timeout.ms`, a non-retriable broker error). Others of
    ///   the batch may have been delivered: the caller must not acknowledge any of them (a retry
    ///   duplicates those, which the consumer's dedupe absorbs).
    public func send(_ messages: [KafkaOutgoingMessage]) async throws {
        if messages.isEmpty { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let tracker = DeliveryTracker(count: messages.count, continuation: continuation)
            // One reference for all the batch's reports, which the last one releases.
            let opaque = Unmanaged.passRetained(tracker).toOpaque()
            // The batch's topics, resolved once each: a topic by name cost librdkafka a lookup
            // under its lock a message. Few topics, shared strings: a linear search is the fastest.
            var topics: [(name: String, handle: OpaquePointer)] = []
            messages.withUnsafeBufferPointer { messages in
                for message in UnsafePointer(messages.baseAddress!)..<messages.baseAddress! + messages.count {
                    let topic: OpaquePointer
                    if let known = topics.first(where: { $0.name == message.pointee.topic }) {
                        topic = known.handle
                    } else {
                        topic = self.topic(message.pointee.topic)
                        topics.append((message.pointee.topic, topic))
                    }
                    let headers = rd_kafka_headers_new(message.pointee.headers.count)!
                    for header in message.pointee.headers {
                        // The name's bytes in place, with their length: passed as a C string, each
                        // (short) name was copied into a new NUL-terminated array, a malloc and a
                        // free a header.
                        var name = header.name
                        name.withUTF8 { name in
                            _ = header.value.withUnsafeBytes {
                                rd_kafka_header_add(headers, name.baseAddress, name.count, $0.baseAddress, $0.count)
                            }
                        }
                    }
                    let error = message.pointee.key.withUnsafeBytes { key in
                        message.pointee.value.withUnsafeBytes { value in
                            xt_produce(client, topic, key.baseAddress, key.count, value.baseAddress, value.count, headers, opaque)
                        }
                    }
                    if let error {
                        // Not queued: no delivery report will come for it.
                        let code = rd_kafka_error_code(error)
                        rd_kafka_error_destroy(error)
                        rd_kafka_headers_destroy(headers)
                        tracker.delivered(code)
                    }
                }
            }
        }
    }

    /// The handle of the topic `name`, made once and kept until the producer is destroyed.
    private func topic(_ name: String) -> OpaquePointer {
        topics.withLock { topics in
            if let known = topics[name] { return known }
            let made = rd_kafka_topic_new(client, name, nil)!
            topics[name] = made
            return made
        }
    }

    /// Asks the brokers for the metadata of `topics`, within `timeout` in all, so that the first
    /// messages produced to them do not wait for it: without it, the first requests to a new
    /// collector waited ~1 s (`bench kafka`: p99 ~1,050 ms; with it 110-150 ms). Blocks; a topic
    /// the brokers do not answer for is logged, not thrown (they may come later, and messages
    /// wait for them then, up to `message.timeout.ms`).
    public func warmUp(topics: [String], timeout: Duration = .seconds(5)) {
        let deadline = ContinuousClock.now + timeout
        for topic in topics {
            let left = deadline - .now
            guard left > .zero else {
                logger.warning("kafka.producer.metadata_unavailable", metadata: ["topic": "\(topic)", "error": "no time left to ask"])
                continue
            }
            guard let handle = rd_kafka_topic_new(client, topic, nil) else { continue }
            defer { rd_kafka_topic_destroy(handle) }
            let milliseconds = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            var metadata: UnsafePointer<rd_kafka_metadata>? = nil
            let error = rd_kafka_metadata(client, 0, handle, &metadata, milliseconds)
            if let metadata { rd_kafka_metadata_destroy(metadata) }
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("kafka.producer.metadata_unavailable", metadata: ["topic": "\(topic)", "error": "\(KafkaError(error))"])
            }
        }
    }

    /// The low and high watermarks of a partition, asked of its leader. Blocks.
    public func watermarks(topic: String, partition: Int32, timeout: Duration = .seconds(5)) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = 0
        var high: Int64 = 0
        let error = rd_kafka_query_watermark_offsets(client, topic, partition, &low, &high, Int32(timeout.components.seconds * 1000))
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error) }
        return (low, high)
    }

    /// Waits for what is in flight (at most `timeout`) and stops the polling thread.
    public func close(timeout: Duration = .seconds(10)) {
        guard polling.stop() else { return }
        let milliseconds = Int32(timeout.components.seconds * 1000)
        let error = rd_kafka_flush(client, milliseconds)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("kafka.producer.flush_incomplete", metadata: ["error": "\(KafkaError(error))"])
        }
    }

    public func run() async throws {
        // The polling thread does the work; this waits for shutdown, then flushes off the pool.
        try? await gracefulShutdown()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread { [self] in
                close()
                done.resume()
            }.start()
        }
    }
}

/// A thread that calls `rd_kafka_poll` until stopped (delivery reports and other callbacks run on it).
final class PollingThread: @unchecked Sendable {
    // @unchecked: the handle is thread-safe by librdkafka's contract; the flag is atomic.
    private let client: OpaquePointer
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(client: OpaquePointer, name: String) {
        self.client = client
        let thread = Thread { [self] in
            // Named from inside: a thread takes its creator's name on Linux (`Thread.name` set
            // before the start did not reach the kernel's), and `bench kafka` counts CPU by name.
            StoreSupport.nameCurrentThread(name)
            while !self.stopped.load(ordering: .acquiring) { rd_kafka_poll(self.client, 100) }
            self.finished.signal()
        }
        thread.start()
    }

    /// Stops the thread and waits for it; false when it was already stopped.
    func stop() -> Bool {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        finished.wait()
        return true
    }
}

/// Counts the delivery reports of one `send`; resumes it when the last arrives. `send` passes one
/// retained reference as every message's opaque; the last report releases it.
final class DeliveryTracker: @unchecked Sendable {
    // @unchecked: its state is under a Mutex.
    private struct State {
        var remaining: Int
        var error: rd_kafka_resp_err_t = RD_KAFKA_RESP_ERR_NO_ERROR
        var continuation: CheckedContinuation<Void, any Error>?
    }

    private let state: Mutex<State>

    init(count: Int, continuation: CheckedContinuation<Void, any Error>) {
        state = Mutex(State(remaining: count, continuation: continuation))
    }

    func delivered(_ error: rd_kafka_resp_err_t) {
        let done = state.withLock { state -> (CheckedContinuation<Void, any Error>, rd_kafka_resp_err_t)? in
            if error != RD_KAFKA_RESP_ERR_NO_ERROR && state.error == RD_KAFKA_RESP_ERR_NO_ERROR { state.error = error }
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.error)
        }
        guard let (continuation, error) = done else { return }
        if error == RD_KAFKA_RESP_ERR_NO_ERROR {
            continuation.resume()
        } else {
            continuation.resume(throwing: KafkaError(error))
        }
        // The last report: the reference `send` passed for all of them goes.
        Unmanaged.passUnretained(self).release()
    }
}
#endif
