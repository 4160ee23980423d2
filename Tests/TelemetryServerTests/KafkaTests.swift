#if Kafka
import Foundation
import Logging
import ServiceLifecycle
import TelemetryCatalog
import TelemetryClient
@testable import TelemetryKafka
import TelemetryPipeline
import TelemetryProcess
import TelemetryServer
import TelemetryStore
import Testing

/// The collector publishing to Kafka and `consume` loading a store, against librdkafka's mock
/// cluster: three real brokers on loopback, in this process.
@Suite(.serialized, .timeLimit(.minutes(3))) struct KafkaTests {
    static var logger: Logger {
        var logger = Logger(label: "test.kafka")
        logger.logLevel = .critical
        return logger
    }

    static func cluster() throws -> KafkaMockCluster {
        let cluster = try KafkaMockCluster(brokers: 3)
        for topic in KafkaEventSink.topics() { try cluster.createTopic(topic, partitions: 3, replicationFactor: 3) }
        return cluster
    }

    static func store() throws -> SQLiteStore {
        let path = TestScratch.path("kafka-\(UUID().uuidString)/telemetry.sqlite").path
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = .normal
        return try SQLiteStore(configuration: configuration, logger: logger)
    }

    /// Reads every topic with a fresh group until `count` messages arrived (or 30 s passed).
    static func readAll(_ bootstrap: String, count: Int, group: String = "verify-\(UUID())") async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(bootstrap: bootstrap, group: group, topics: KafkaEventSink.topics(), logger: logger)
        return try await offThePool {
            var messages: [KafkaMessage] = []
            let deadline = Date().addingTimeInterval(30)
            while messages.count < count && Date() < deadline {
                messages += consumer.poll(maxMessages: 1000, timeout: .milliseconds(200))
            }
            consumer.close()
            return messages
        }
    }

    /// Runs a loader (group `group`) into `store` until it holds `events` events (and each of
    /// `including`) and has read at least `messages` messages, then stops it.
    static func load(
        _ bootstrap: String, into store: any TestableStore, events: Int, including: Set<String> = [], messages: Int = 0,
        group: String = "loader"
    ) async throws -> KafkaStoreLoader.Counts {
        let consumer = try KafkaConsumer(bootstrap: bootstrap, group: group, topics: KafkaEventSink.topics(), logger: logger)
        let loader = KafkaStoreLoader(consumer: consumer, store: store, batchSize: 500, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [loader], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await EmitterTests.waitUntil(60) {
                guard loader.counts.messages >= messages, try await store.counts().events >= events else { return false }
                if including.isEmpty { return true }
                let stored = Set(try await EmitterTests.storedIDs(store))
                return including.isSubset(of: stored)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return loader.counts
        }
    }

    @Test(arguments: StoreKind.allCases) func everyEventLandsOnItsTopicWithKeyAndHeadersAndIsLoadedOnce(_ kind: StoreKind) async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        defer { producer.close() }
        let lines = (0..<19 * 40).map { i in
            var sampler = EventSampler(seed: UInt64(i) + 1)
            return sampler.sample(Catalog.builtin.events[i % 19]).render()
        }
        let invalid = lines[0].replacingOccurrences(of: #""event_id":""#, with: #""event_id":"nope-"#)
        try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            let response = try await collector.connection().post((lines + [invalid]).joined(separator: "\n"))
            #expect(response.status == 200)
            #expect(response.json["accepted"] as? Int == lines.count)
            #expect((response.json["rejected"] as? [Any])?.count == 1)
        }
        // On the brokers: each event on its type's topic, keyed by tenant, with the headers.
        let messages = try await Self.readAll(cluster.bootstrap, count: lines.count + 1)
        #expect(messages.count == lines.count + 1)
        for message in messages where message.topic != KafkaEventSink.rejectedTopic {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any])
            let type = try #require(object["event_type"] as? String)
            #expect(message.topic == Catalog.builtin.latest(type)?.topic.name)
            #expect(String(decoding: message.key, as: UTF8.self) == object["tenant_id"] as? String)
            #expect(message.header("event_type") == type)
            #expect(message.header("tenant_id") == object["tenant_id"] as? String)
            #expect(message.header("version") == object["version"] as? String)
        }
        #expect(messages.filter { $0.topic == KafkaEventSink.rejectedTopic }.count == 1)
        #expect(Set(messages.map(\.topic)).count == 8, "the seven topics and rejected")

        // The consumer group loads them into a store (SQLite, ClickHouse), exactly once, rejections included.
        try await withStore(kind) { store in
            let counts = try await Self.load(cluster.bootstrap, into: store, events: lines.count)
            #expect(try await store.counts().events == lines.count)
            #expect(counts.stored == lines.count && counts.duplicates == 0)
            let stored = try await EmitterTests.storedIDs(store)
            #expect(Set(stored) == Set(lines.map(eventID(of:))))
            try await EmitterTests.waitUntil { try await store.rejected(RejectedQuery()).rejected.count == 1 }
            let rejected = try await store.rejected(RejectedQuery()).rejected
            #expect(rejected.first?.issues.first?.code == .badUUID)
        }
    }

    /// Brokers failing under the producer: whatever was acknowledged reaches the store, once.
    @Test func brokerFaultsLoseNothingAcknowledged() async throws {
        let cluster = try Self.cluster()
        var configuration: [String: String] = ["message.timeout.ms": "3000"]
        configuration["retry.backoff.ms"] = "50"
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, configuration: configuration, logger: Self.logger)
        defer { producer.close() }
        let acknowledged = try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            var sampler = EventSampler(seed: 77)
            var acknowledged: [String] = []
            let http = collector.connection()
            func post(_ count: Int) async throws -> Bool {
                let lines = (0..<count).map { _ in sampler.sample().render() }
                let response = try await http.post(lines.joined(separator: "\n"))
                if response.status == 200 {
                    acknowledged += lines.map(eventID(of:))
                    return true
                }
                #expect(response.status == 503, "\(response.json)")
                return false
            }
            #expect(try await post(100))
            // Retriable errors on the next produce requests: the idempotent producer retries.
            cluster.pushRequestErrors(apiKey: KafkaMockCluster.produceAPIKey, [19, 19, 7, 19])  // NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT
            #expect(try await post(100), "retried through transient errors")
            // A broker down while producing: its partitions' messages wait, then either land or 503.
            cluster.setBrokerDown(1)
            _ = try await post(100)
            cluster.setBrokerUp(1)
            // A non-retriable error fails the batch: 503, nothing acknowledged.
            cluster.pushRequestErrors(apiKey: KafkaMockCluster.produceAPIKey, Array(repeating: 10, count: 12))  // MESSAGE_TOO_LARGE
            #expect(!(try await post(50)), "a batch the brokers refused is a 503")
            // Afterwards the cluster serves again.
            try await EmitterTests.waitUntil(30) { try await post(20) }
            return acknowledged
        }
        #expect(acknowledged.count >= 220)
        let store = try Self.store()
        // Requests answered 503 may have reached the topics in part: the store may hold more than
        // was acknowledged, so the loader runs until every acknowledged event is in.
        _ = try await Self.load(cluster.bootstrap, into: store, events: acknowledged.count, including: Set(acknowledged))
        let stored = try await EmitterTests.storedIDs(store)
        #expect(Set(acknowledged).isSubset(of: Set(stored)), "every acknowledged event is stored")
        #expect(stored.count == Set(stored).count, "and none twice")
    }

    /// A consumer that wrote a batch and died before committing: the next one rereads the batch,
    /// and the store still holds every event once.
    @Test(arguments: StoreKind.allCases) func aConsumerKilledBetweenWriteAndCommitLeavesEveryEventOnce(_ kind: StoreKind) async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        defer { producer.close() }
        var sampler = EventSampler(seed: 5)
        let lines = (0..<600).map { _ in sampler.sample().render() }
        try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            let response = try await collector.connection().post(lines.joined(separator: "\n"))
            #expect(response.json["accepted"] as? Int == 600)
        }
        try await withStore(kind) { store in
            // The first consumer of group "loader" writes what it polled, and never commits.
            let doomed = try KafkaConsumer(bootstrap: cluster.bootstrap, group: "loader", topics: KafkaEventSink.topics(), logger: Self.logger)
            let polled = try await offThePool {
                var messages: [KafkaMessage] = []
                let deadline = Date().addingTimeInterval(30)
                while messages.count < 300 && Date() < deadline { messages += doomed.poll(maxMessages: 300, timeout: .milliseconds(200)) }
                return messages
            }
            #expect(polled.count >= 300)
            var validator = EventValidator()
            var batch = WriteBatch()
            for message in polled {
                if case .valid(let event) = message.value.withUnsafeBytes({ validator.validate($0) }) {
                    batch.events.append(IncomingEvent(event: event, receivedMicros: 0, requestID: "doomed"))
                }
            }
            _ = try await store.write(batch)
            try await offThePool { doomed.close() }  // leaves without committing: as good as dead for the group
            let before = try await store.counts().events
            #expect(before == polled.count)
            // The next consumer of the group starts from the committed offsets (none: the beginning)
            // and reads all 600 messages; the batch written before comes again, as duplicates.
            let counts = try await Self.load(cluster.bootstrap, into: store, events: 600, messages: 600)
            #expect(counts.messages == 600)
            #expect(counts.duplicates == before, "the written batch came again")
            #expect(counts.stored == 600 - before)
            #expect(try await store.counts().events == 600)
            #expect(Set(try await EmitterTests.storedIDs(store)) == Set(lines.map(eventID(of:))))
        }
    }

    /// A loader stopped gracefully mid-stream (it polls the next batch while writing the last)
    /// commits every batch it wrote before leaving: the next consumer of the group gets none of
    /// them again, and together they store every event once.
    @Test func aLoaderStoppedMidStreamCommitsWhatItWrote() async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        defer { producer.close() }
        var sampler = EventSampler(seed: 12)
        let lines = (0..<3000).map { _ in sampler.sample().render() }
        try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            let response = try await collector.connection().post(lines.joined(separator: "\n"))
            #expect(response.json["accepted"] as? Int == 3000)
        }
        try await withStore(.sqlite) { store in
            // Small batches, stopped once a few are in: batches are still being polled then.
            let consumer = try KafkaConsumer(bootstrap: cluster.bootstrap, group: "loader", topics: KafkaEventSink.topics(), logger: Self.logger)
            let first = KafkaStoreLoader(consumer: consumer, store: store, batchSize: 200, logger: Self.logger)
            let group = ServiceGroup(configuration: .init(services: [first], logger: Self.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await EmitterTests.waitUntil(60) { first.counts.messages >= 600 }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            let firstCounts = first.counts
            #expect(firstCounts.messages < 3000, "stopped mid-stream")
            #expect(try await store.counts().events == firstCounts.stored)
            let rest = try await Self.load(cluster.bootstrap, into: store, events: 3000)
            #expect(rest.duplicates == 0, "a batch written before the stop was not committed")
            #expect(firstCounts.messages + rest.messages == 3000)
            #expect(try await store.counts().events == 3000)
        }
    }

    /// The warm-up a collector does before it listens: against the mock brokers the topics'
    /// metadata comes at once and a first batch is delivered; with no broker at all it gives up
    /// within its time (the collector then starts anyway, and its requests wait as before).
    @Test func theProducersWarmUpAsksForTheTopicsAndIsBounded() async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        try await offThePool { producer.warmUp(topics: KafkaEventSink.topics(), timeout: .seconds(10)) }
        var sampler = EventSampler(seed: 3)
        let line = sampler.sample().render()
        try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            let response = try await collector.connection().post(line)
            #expect(response.json["accepted"] as? Int == 1)
        }
        // Closing blocks (a flush): off Swift's cooperative pool, which other tests share.
        try await offThePool { producer.close() }

        let nowhere = try KafkaProducer(bootstrap: "127.0.0.1:\(try EmitterTests.freePort())", logger: Self.logger)
        let started = ContinuousClock.now
        try await offThePool { nowhere.warmUp(topics: KafkaEventSink.topics(), timeout: .seconds(1)) }
        #expect(ContinuousClock.now - started < .seconds(6), "the warm-up is bounded by its timeout")
        try await offThePool { nowhere.close(timeout: .seconds(1)) }
    }

    /// `kcat`, an outside client, reads what the collector produced.
    @Test func kcatReadsWhatWeProduce() async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        defer { producer.close() }
        var sampler = EventSampler(seed: 8)
        let lines = (0..<30).map { _ in sampler.sample(Catalog.builtin.latest("xumi.generation.start")!).render() }
        try await TestCollector.run(sink: KafkaEventSink(producer: producer)) { collector in
            let response = try await collector.connection().post(lines.joined(separator: "\n"))
            #expect(response.json["accepted"] as? Int == 30)
        }
        let output = try await offThePool { () -> String in
            try ChildProcess.run(
                "/usr/bin/env", ["kcat", "-b", cluster.bootstrap, "-C", "-t", "xumi_task", "-o", "beginning", "-e", "-q", "-f", "%k|%h|%s\\n"]
            ).output
        }
        let records = output.split(separator: "\n")
        #expect(records.count == 30)
        let ids = Set(records.compactMap { record -> String? in
            let parts = record.split(separator: "|", maxSplits: 2)
            guard parts.count == 3 else { return nil }
            #expect(parts[1].contains("event_type=xumi.generation.start"))
            return eventID(of: String(parts[2]))
        })
        #expect(ids == Set(lines.map(eventID(of:))))
    }

    /// What the consumer reads is what was produced, message by message, though it shares with
    /// the message before whatever a message repeats (topic, key, header names and values).
    @Test func theConsumerReadsEachMessageAsProducedThoughItSharesRepeats() async throws {
        let cluster = try Self.cluster()
        let producer = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Self.logger)
        defer { producer.close() }
        let topics = KafkaEventSink.topics()
        // Runs of repeated keys and header values, broken now and then; a header that repeats the
        // key; an empty value; headers in another order or number.
        var sent: [KafkaOutgoingMessage] = []
        for i in 0..<600 {
            let tenant = Array("tenant-\(i / 50 % 3)".utf8)
            var headers: [(name: String, value: [UInt8])] = [
                ("event_type", Array("type-\(i % 7)".utf8)), ("tenant_id", tenant), ("request_id", Array("request-\(i / 100)".utf8)),
            ]
            if i % 5 == 0 { headers.append(("extra", [])) }
            if i % 11 == 0 { headers.swapAt(0, 2) }
            sent.append(KafkaOutgoingMessage(topic: topics[i % 3], key: tenant, value: Array("value \(i)".utf8), headers: headers))
        }
        try await producer.send(sent)
        let read = try await Self.readAll(cluster.bootstrap, count: sent.count)
        #expect(read.count == sent.count)
        let byValue = Dictionary(uniqueKeysWithValues: sent.map { (String(decoding: $0.value, as: UTF8.self), $0) })
        for message in read {
            let original = try #require(byValue[String(decoding: message.value, as: UTF8.self)])
            #expect(message.topic == original.topic)
            #expect(message.key == original.key)
            #expect(message.headers.map(\.name) == original.headers.map(\.name))
            #expect(message.headers.map(\.value) == original.headers.map(\.value))
        }
    }

    /// The loader stores each event under the request id and time its headers carry, one request's
    /// run after another's, and names a message without them by its place in the topic.
    @Test func theLoaderKeepsEachMessagesRequestAndTime() async throws {
        let cluster = try Self.cluster()
        let consumer = try KafkaConsumer(bootstrap: cluster.bootstrap, group: "prepare", topics: KafkaEventSink.topics(), logger: Self.logger)
        defer { consumer.close() }
        let loader = KafkaStoreLoader(consumer: consumer, store: try Self.store(), logger: Self.logger)
        var sampler = EventSampler(seed: 5)
        let requests = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
        var messages: [KafkaMessage] = []
        var expected: [(id: String, micros: Int64?)] = []
        for i in 0..<40 {
            let event = sampler.sample(Catalog.builtin.events[i % 19])
            // Two runs of each request, the second request's time once absent; the last two
            // messages carry neither header.
            let request = i < 38 ? requests[(i / 10) % 2] : nil
            let micros: Int64? = request == nil || i == 25 ? nil : 1_700_000_000_000_000 + Int64(i / 10)
            var headers: [(name: String, value: [UInt8])] = []
            if let request { headers.append(("request_id", Array(request.utf8))) }
            if let micros { headers.append(("received_us", Array(String(micros).utf8))) }
            messages.append(
                KafkaMessage(
                    topic: "xumi_task", partition: 1, offset: Int64(i), key: [], value: Array(event.render().utf8), headers: headers))
            expected.append((request ?? "kafka:xumi_task/1@\(i)", micros))
        }
        let before = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let prepared = loader.prepare(messages)
        #expect(prepared.batch.events.count == messages.count && prepared.batch.rejected.isEmpty)
        for (incoming, expected) in zip(prepared.batch.events, expected) {
            #expect(incoming.requestID == expected.id)
            if let micros = expected.micros {
                #expect(incoming.receivedMicros == micros)
            } else {
                // No time in the headers: when the loader read it.
                #expect(incoming.receivedMicros >= before)
            }
        }
    }
}
#endif
