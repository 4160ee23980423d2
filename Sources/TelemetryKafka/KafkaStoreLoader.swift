#if Kafka
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
public import TelemetryCatalog
public import TelemetryStore

/// `telemetry consume`: a consumer group over the topics that writes what it reads into a store,
/// batch by batch, and commits the offsets only after the store's transaction committed.
///
/// A crash between the write and the commit redelivers the batch, which the store's dedupe on
/// `event_id` absorbs: every event is stored once. On graceful shutdown it finishes the batch in
/// hand, commits, and leaves the group.
public final class KafkaStoreLoader: Service, Sendable {
    /// What the loader has done so far.
    public struct Counts: Sendable, Hashable {
        public var messages = 0
        public var stored = 0
        public var duplicates = 0
        public var rejected = 0
        /// Messages that were neither a valid event nor a rejection record (logged, skipped).
        public var unreadable = 0
        public var batches = 0

        public init() {}
    }

    let consumer: KafkaConsumer
    let store: any EventStore
    let catalog: Catalog
    let logger: Logger
    let batchSize: Int
    let rejectedTopic: String
    private let state = Mutex(Counts())
    /// Called after each committed batch, with the consumer's lag by topic and partition.
    let onBatch: @Sendable (Counts, [(topic: String, partition: Int32, lag: Int64)]) -> Void

    public init(
        consumer: KafkaConsumer, store: any EventStore, catalog: Catalog = .builtin, topicPrefix: String = "", batchSize: Int = 5000,
        logger: Logger, onBatch: @escaping @Sendable (Counts, [(topic: String, partition: Int32, lag: Int64)]) -> Void = { _, _ in }
    ) {
        self.consumer = consumer
        self.store = store
        self.catalog = catalog
        self.logger = logger
        self.batchSize = batchSize
        self.rejectedTopic = topicPrefix + KafkaEventSink.rejectedTopic
        self.onBatch = onBatch
    }

    public var counts: Counts { state.withLock { $0 } }

    /// A polled batch, validated: what the store writes, and the messages whose offsets are
    /// committed after it.
    struct Prepared: Sendable {
        var messages: [KafkaMessage] = []
        var batch = WriteBatch()
        var unreadable = 0
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            // Two batches in hand: the next is polled and validated while the store writes the
            // one before it (consumption was otherwise poll, validate, write, commit in turn, and
            // the store waited for the poll). Offsets are still committed batch after batch, each
            // only after its own write.
            var next = prepareNext()
            // The offsets of the batch before, committed while the store writes this one (the
            // commit is a round trip to the group's coordinator, and the store waited for it).
            // Each commit still follows its own batch's write, and the one before it, so the
            // committed offsets only move forwards.
            var committing: Task<Void, Never>? = nil
            while true {
                let prepared = await next.value
                let stopping = Task.isShuttingDownGracefully || Task.isCancelled
                if !stopping { next = prepareNext() }
                do {
                    // On the way out the batch in hand is still written and committed.
                    if !prepared.messages.isEmpty, let outcome = try await storeWithRetries(prepared) {
                        let previous = committing
                        committing = Task {
                            await previous?.value
                            await self.commit(prepared, outcome)
                        }
                    }
                } catch {
                    // The poll under way ends before the consumer is closed; what it took is
                    // not committed, so the group delivers it again.
                    if !stopping { _ = await next.value }
                    await committing?.value
                    throw error
                }
                if stopping { break }
            }
            await committing?.value
        } onGracefulShutdown: {}
        await blocking { [consumer] in consumer.close() }
    }

    /// Polls the next batch on a thread of its own and validates it.
    private func prepareNext() -> Task<Prepared, Never> {
        Task { [consumer, batchSize] in
            let messages = await blocking { consumer.poll(maxMessages: batchSize, timeout: .milliseconds(250)) }
            return self.prepare(messages)
        }
    }

    /// Writes a batch; a store that cannot write now (disk full, locked) is waited for, the same
    /// batch retried with backoff, and nothing is committed meanwhile. Stopping while waiting
    /// leaves the batch unwritten and uncommitted (`nil`), for the next consumer.
    private func storeWithRetries(_ prepared: Prepared) async throws -> WriteOutcome? {
        var delay = Duration.milliseconds(200)
        while true {
            do {
                return try await write(prepared)
            } catch let error as StoreError where error.isTransient {
                logger.warning("kafka.consume.store_unavailable", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                if Task.isShuttingDownGracefully { return nil }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }

    /// Validates the events of a polled batch; messages of the rejected topic are read back as
    /// rejections.
    func prepare(_ messages: [KafkaMessage]) -> Prepared {
        var prepared = Prepared(messages: messages)
        var validator = EventValidator(catalog: catalog)
        let now = Int64((Date().timeIntervalSince1970 * 1_000_000).rounded())
        prepared.batch.events.reserveCapacity(messages.count)
        // A request's messages share their header values (KafkaConsumer.read): its id and time
        // are made once for a run of them.
        var request: (idBytes: [UInt8], id: String)? = nil
        var received: (bytes: [UInt8], micros: Int64?)? = nil
        for message in messages {
            if message.topic == rejectedTopic {
                if let rejected = KafkaEventSink.decode(message.value) {
                    prepared.batch.rejected.append(rejected)
                } else {
                    prepared.unreadable += 1
                }
                continue
            }
            switch message.value.withUnsafeBytes({ validator.validate($0) }) {
            case .valid(let event):
                var receivedMicros = now
                if let bytes = message.headerBytes("received_us") {
                    if received?.bytes != bytes { received = (bytes, Int64(String(decoding: bytes, as: UTF8.self))) }
                    receivedMicros = received!.micros ?? now
                }
                let requestID: String
                if let bytes = message.headerBytes("request_id") {
                    if request?.idBytes != bytes { request = (bytes, String(decoding: bytes, as: UTF8.self)) }
                    requestID = request!.id
                } else {
                    requestID = "kafka:\(message.topic)/\(message.partition)@\(message.offset)"
                }
                prepared.batch.events.append(IncomingEvent(event: event, receivedMicros: receivedMicros, requestID: requestID))
            case .invalid(let invalid):
                // Not from a collector of ours (those publish validated events): kept as a rejection.
                prepared.batch.rejected.append(
                    RejectedEvent(
                        raw: message.value, issues: invalid.issues, eventType: invalid.eventType, eventID: invalid.eventID, index: 0,
                        receivedMicros: now, requestID: "kafka:\(message.topic)/\(message.partition)@\(message.offset)"))
            }
        }
        return prepared
    }

    /// Writes a prepared batch into the store. A failed write throws, and its offsets are never
    /// committed, so the batch is redelivered.
    private func write(_ prepared: Prepared) async throws -> WriteOutcome {
        if prepared.unreadable > 0 {
            logger.warning("kafka.consume.unreadable", metadata: ["messages": "\(prepared.unreadable)", "topic": "\(rejectedTopic)"])
        }
        return try await store.write(prepared.batch)
    }

    /// Commits the offsets of a batch the store has written, and counts it.
    private func commit(_ prepared: Prepared, _ outcome: WriteOutcome) async {
        let (messages, batch, unreadable) = (prepared.messages, prepared.batch, prepared.unreadable)
        do {
            try await blocking { [consumer] in try consumer.commit(messages) }
        } catch {
            // A rebalance took the partitions meanwhile (or the coordinator moved): their new owner
            // rereads from the last commit, and the store's dedupe absorbs the batch stored here.
            logger.warning("kafka.consume.commit_failed", metadata: ["error": "\(error)", "messages": "\(messages.count)"])
        }
        let lag = await blocking { [consumer] in consumer.lag() }
        let counts = state.withLock { counts -> Counts in
            counts.messages += messages.count
            counts.stored += outcome.stored
            counts.duplicates += outcome.duplicates
            counts.rejected += batch.rejected.count
            counts.unreadable += unreadable
            counts.batches += 1
            return counts
        }
        onBatch(counts, lag)
    }
}

/// Runs blocking work on a thread of its own (librdkafka's calls wait on the network).
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}
#endif
