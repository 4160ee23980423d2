import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TelemetryCatalog
import TelemetryProcess
import TelemetryStore

#if Kafka
import TelemetryKafka
#endif

struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "serve --kafka and consume against librdkafka's mock cluster, with kcat and SQLite baselines in the same run.",
        discussion: """
            Starts a mock cluster of three brokers in this process (librdkafka's, on loopback) and \
            measures, in one run:

              producer baselines: `kcat -P` producing the same events to one
                topic of the cluster (acks=all, idempotent, lz4, linger 5 ms, Nagle
                off: the collector's settings), twice: as bare lines (no key, no
                header), and as the same messages the collector produces: each
                keyed by its tenant_id, with five headers of the same names and
                sizes (event_type, tenant_id, version, request_id, received_us;
                kcat gives every message of a run the same header values)
              producer: a `telemetry serve --kafka` child process fed batches of
                1000 events from N connections: HTTP, validation, each event to
                its topic with key and headers, and the answer only after every
                broker acknowledged
              consumer baseline: the same lines appended into a plain SQLite
                table (as `bench ingest`: through SQLite's C API, and again
                through GRDB a row a call, the collector issue's baseline)
              consumer: `consume`'s loader reading the topics into a store:
                validation, typed columns, dedupe, pairing, commit, then the
                offsets

            The producers alternate for --producer-rounds rounds, each round to topics of \
            its own, and their medians are reported (a round lasts about a second). It prints \
            messages/s, the producer's request latency, how busy the cores were meanwhile \
            (idle cores mean the collector waits rather than works), the CPU an event cost the \
            collector's threads and the CPU a message cost this process's threads while it \
            consumed (the store's, the loader's, librdkafka's with the mock brokers'; both \
            steadier than a rate on a shared machine), and the ratios: the producer against \
            both kcat baselines (the Kafka issue's goal names "the same messages"), the \
            consumer against both appends. Needs kcat \
            (Debian package) and a build with --traits Kafka.
            """
    )

    @Option(help: "Distinct events (the mock brokers keep about 5 MiB a partition, and events are keyed by tenant: past ~150,000 the oldest are trimmed).")
    var events: Int = 100_000

    @Option(help: "Events per request to the collector.")
    var batchSize: Int = 1000

    @Option(help: "Concurrent connections to the collector (each request waits ~30-50 ms for the brokers' acknowledgements: with 4 the cores were a third idle).")
    var connections: Int = 8

    @Option(help: "fsync of the consumer's store and of the SQLite baseline: full or normal.")
    var fsync: String = "full"

    @Option(help: "Rounds of the two producer measurements, alternating, each to topics of its own; medians are reported (a round lasts about a second, so one is noisy).")
    var producerRounds: Int = 3

    static let partitions = 32

    func validate() throws {
        guard KafkaSupport.isCompiled else { throw ValidationError(KafkaSupport.missingMessage) }
        guard events > 0, batchSize > 0, connections > 0, producerRounds > 0 else { throw ValidationError("counts must be positive") }
        guard fsync == "full" || fsync == "normal" else { throw ValidationError("--fsync is full or normal") }
    }

    func run() async throws {
        #if Kafka
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-kafka-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cluster = try KafkaMockCluster(brokers: 3)
        // The mock brokers keep only the newest few MiB of each partition (they trim older message
        // sets, as retention would): enough partitions that nothing of the run is trimmed.
        for topic in KafkaEventSink.topics() + Self.kcatTopics(prefix: "") { try cluster.createTopic(topic, partitions: Self.partitions, replicationFactor: 3) }

        var sampler = EventSampler(seed: 1)
        sampler.linksLifecycles = true
        var batches: [[UInt8]] = []
        var produced = 0
        while produced < events {
            let count = min(batchSize, events - produced)
            batches.append(sampler.ndjson(count: count))
            produced += count
        }
        let bytes = batches.reduce(0) { $0 + $1.count }
        print("events: \(events) (\(formatBytes(bytes))); mock cluster of 3 brokers at \(cluster.bootstrap); fsync \(fsync)")

        // The producers, alternating: kcat (the baseline), then serve --kafka. Each round writes
        // topics of its own (the first the plain ones, which the consumer reads later), so that no
        // round finds partitions the one before filled.
        let lines = directory.appendingPathComponent("events.ndjson")
        try Data(batches.joined()).write(to: lines)
        let keyedLines = directory.appendingPathComponent("keyed.tsv")
        try Data(Self.keyedByTenant(batches)).write(to: keyedLines)
        var kcatRuns: [Double] = []
        var keyedKcatRuns: [Double] = []
        var serveRuns: [(posted: CollectorChild.Posted, cpu: [String: Double])] = []
        for round in 1...producerRounds {
            let prefix = round == 1 ? "" : "r\(round)."
            if round > 1 {
                for topic in Self.kcatTopics(prefix: prefix) + KafkaEventSink.topics(prefix: prefix) {
                    try cluster.createTopic(topic, partitions: Self.partitions, replicationFactor: 3)
                }
            }
            kcatRuns.append(try Self.timeKcat(bootstrap: cluster.bootstrap, topic: "\(prefix)bench_kcat", file: lines.path))
            keyedKcatRuns.append(
                try Self.timeKcat(bootstrap: cluster.bootstrap, topic: "\(prefix)bench_kcat_keyed", file: keyedLines.path, sameMessages: true))
            let collector = try CollectorChild(
                data: directory.appendingPathComponent("collector-\(round)"), fsync: fsync,
                extra: ["--kafka", cluster.bootstrap] + (prefix.isEmpty ? [] : ["--topic-prefix", prefix]))
            let posted = try collector.post(batches, connections: connections)
            serveRuns.append((posted, collector.cpuSecondsByThread))
            collector.stop()
            if producerRounds > 1 {
                print(String(format: "producer round %d: kcat %.0f (the same messages %.0f), serve --kafka %.0f messages/s", round,
                             Double(events) / kcatRuns.last!, Double(events) / keyedKcatRuns.last!,
                             Double(events) / serveRuns.last!.posted.seconds))
            }
        }
        let kcatSeconds = kcatRuns.sorted()[kcatRuns.count / 2]
        let keyedKcatSeconds = keyedKcatRuns.sorted()[keyedKcatRuns.count / 2]
        let (posted, serveCPU) = serveRuns.sorted { $0.posted.seconds < $1.posted.seconds }[serveRuns.count / 2]
        let (serveSeconds, latencies) = (posted.seconds, posted.latencies)
        // What the first round's topics hold, which the consumer reads (the mock brokers trim
        // partitions past a few MiB).
        let inspector = try KafkaProducer(bootstrap: cluster.bootstrap, logger: Logger(label: "bench.kafka"))
        var held = 0
        var trimmed = 0
        for topic in KafkaEventSink.topics() {
            for partition in 0..<Int32(Self.partitions) {
                let (low, high) = try inspector.watermarks(topic: topic, partition: partition)
                held += Int(high - low)
                trimmed += Int(low)
            }
        }
        inspector.close()
        print("on the brokers: \(held) messages (\(trimmed) trimmed by the mock brokers' retention)")

        // Consumer baseline and consumer.
        let appendSeconds = try sqliteAppendBaseline(batches, path: directory.appendingPathComponent("baseline.sqlite").path, fsync: fsync).seconds
        let grdbSeconds = try sqliteAppendBaseline(
            batches, path: directory.appendingPathComponent("grdb.sqlite").path, fsync: fsync, through: .grdb).seconds
        let (consumeSeconds, joinedRate, consumerCPU) = try await Self.timeConsumer(
            bootstrap: cluster.bootstrap, path: directory.appendingPathComponent("consumed/telemetry.sqlite").path, fsync: fsync, events: events)

        func rate(_ seconds: Double) -> String { String(format: "%9.0f messages/s", Double(events) / seconds) }
        print("producer baseline: kcat -P, bare lines (one topic)              " + rate(kcatSeconds))
        print("producer baseline: kcat -P, the same messages (key, headers)    " + rate(keyedKcatSeconds))
        print("producer: serve --kafka (HTTP, validation, 7 topics)            " + rate(serveSeconds))
        print("  request latency " + latencySummary(latencies))
        if posted.overloaded > 0 { print("  answered 429 (queue full, sent again after Retry-After): \(posted.overloaded)") }
        if let busy = posted.busy {
            // Idle cores while posting mean the collector waits (on the brokers, on a timer), not works.
            print(String(format: "  cores busy meanwhile: %.0f%% of %d (collector, brokers, load generator)",
                         100 * busy, ProcessInfo.processInfo.activeProcessorCount))
        }
        // Steadier than the rate on a shared machine: what an event cost the collector's threads.
        print("  collector CPU per event, by thread: " + IngestBench.cpuPerEvent(serveCPU, events: events))
        print("consumer baseline: SQLite append             " + rate(appendSeconds))
        print("consumer baseline: GRDB, a row a call        " + rate(grdbSeconds))
        print("consumer: consume into the store             " + rate(consumeSeconds))
        // This process's threads while it consumed: the loader polls and validates on the pool
        // ("requests"), and librdkafka's threads are the consumer's and the mock brokers'.
        print("  consumer CPU per message, by thread (requests: polling and validation; librdkafka: the consumer's and the mock brokers'): "
              + IngestBench.cpuPerEvent(consumerCPU, events: events))
        print(String(format: "ratio: producer at %.0f%% of kcat's same messages (%.0f%% of its bare lines)",
                     100 * keyedKcatSeconds / serveSeconds, 100 * kcatSeconds / serveSeconds))
        print(String(format: "ratio: consumer at %.0f%% of the SQLite append (%.0f%% of the GRDB append)",
                     100 * appendSeconds / consumeSeconds, 100 * grdbSeconds / consumeSeconds))
        if let joinedRate {
            // The measure is a rate; the group's join is a fixed cost of a start.
            print(String(format: "ratio: consumer after joining at %.0f%% of the SQLite append (%.0f%% of the GRDB append)",
                         100 * joinedRate * appendSeconds / Double(events), 100 * joinedRate * grdbSeconds / Double(events)))
        }
        #endif
    }

    #if Kafka
    /// The topics the kcat baselines write, in a round with topic prefix `prefix`.
    static func kcatTopics(prefix: String) -> [String] { ["\(prefix)bench_kcat", "\(prefix)bench_kcat_keyed"] }

    /// The headers kcat gives every message of the same-messages baseline: the names the
    /// collector's messages carry, with values of the same sizes (kcat sets one value a header for
    /// a whole run; the collector's vary by message).
    static let sameMessageHeaders = [
        "event_type=xumi.generation.start", "tenant_id=5c1e7a52-0d6a-4c3e-8b59-1f2d3e4a5b6c", "version=1.0",
        "request_id=8f0d2b6e-3c1a-4e5f-9a7b-2d4c6e8f0a1b", "received_us=1796044800000000",
    ]

    /// The events of `batches` as kcat's keyed input: a line each, `tenant_id`, a tab, the event
    /// (JSON text holds no raw tab). The key is the tenant, as the collector keys its messages.
    static func keyedByTenant(_ batches: [[UInt8]]) throws -> [UInt8] {
        let member = Array("\"tenant_id\":\"".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(batches.reduce(0) { $0 + $1.count } + 40 * batches.count * 1000)
        for batch in batches {
            for line in batch.split(separator: UInt8(ascii: "\n")) {
                guard let at = line.firstRange(of: member), line.endIndex >= at.upperBound + 36 else {
                    throw CommandFailure("a sampled event has no tenant_id: \(String(decoding: line.prefix(120), as: UTF8.self))")
                }
                out += line[at.upperBound..<(at.upperBound + 36)]
                out.append(UInt8(ascii: "\t"))
                out += line
                out.append(UInt8(ascii: "\n"))
            }
        }
        return out
    }

    /// Seconds `kcat -P` takes to produce every line of `file` (and be acknowledged: kcat flushes
    /// before exiting). With `sameMessages`, each line is a key, a tab and the value, and every
    /// message gets ``sameMessageHeaders``.
    static func timeKcat(bootstrap: String, topic: String, file: String, sameMessages: Bool = false) throws -> Double {
        let started = MonotonicClock.now()
        let kcat: ChildProcess
        do {
            let keyed = sameMessages ? ["-K", "\t"] + sameMessageHeaders.flatMap { ["-H", $0] } : []
            kcat = try ChildProcess(
                executable: "/usr/bin/env",
                arguments: [
                    "kcat", "-P", "-b", bootstrap, "-t", topic, "-l", "-X", "acks=all", "-X", "enable.idempotence=true", "-X",
                    "compression.codec=lz4", "-X", "linger.ms=5", "-X", "socket.nagle.disable=true",
                ] + keyed + [file])
        } catch {
            throw CommandFailure("cannot run kcat (Debian package kcat): \(error)")
        }
        let status = kcat.waitUntilExit()
        guard status == .exited(0) else { throw CommandFailure("kcat failed with status \(status.status) (Debian package kcat)") }
        return Double(MonotonicClock.now() - started) / 1e9
    }

    /// Seconds the loader takes to bring `events` events from the topics into a new store, and
    /// its rate once it has joined its group (from its first stored batch on; nil if there was
    /// only one batch).
    static func timeConsumer(bootstrap: String, path: String, fsync: String, events: Int) async throws
        -> (seconds: Double, joinedRate: Double?, cpuByThread: [String: Double])
    {
        var logger = Logger(label: "bench.kafka")
        logger.logLevel = .error
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = Durability(name: fsync)!
        let store = try SQLiteStore(configuration: configuration, logger: logger)
        defer { try? store.close() }
        let consumer = try KafkaConsumer(bootstrap: bootstrap, group: "bench", topics: KafkaEventSink.topics(), logger: logger)
        let loader = KafkaStoreLoader(consumer: consumer, store: store, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [loader], logger: logger))
        let cpuBefore = threadCPUSeconds(pid: getpid())
        let started = MonotonicClock.now()
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var last = (stored: 0, at: MonotonicClock.now())
            var firstBatch: (stored: Int, at: UInt64)? = nil
            while loader.counts.stored < events {
                try await Task.sleep(for: .milliseconds(20))
                let stored = loader.counts.stored
                if firstBatch == nil && stored > 0 { firstBatch = (stored, MonotonicClock.now()) }
                if stored != last.stored {
                    last = (stored, MonotonicClock.now())
                } else if MonotonicClock.now() - last.at > 30_000_000_000 {
                    await group.triggerGracefulShutdown()
                    throw CommandFailure("the consumer stopped at \(stored) of \(events) events for 30 s (did the mock brokers trim the partitions? fewer --events)")
                }
            }
            let now = MonotonicClock.now()
            let seconds = Double(now - started) / 1e9
            // What each kind of thread used meanwhile (threads that began during it count whole;
            // none of those that ended did anything for the consumer).
            var cpu: [String: Double] = [:]
            for (name, seconds) in threadCPUSeconds(pid: getpid()) {
                cpu[name] = max(0, seconds - (cpuBefore[name] ?? 0))
            }
            var joinedRate: Double? = nil
            if let firstBatch, now > firstBatch.at {
                // Joining the group (the brokers' initial rebalance delay) is a fixed cost of a start.
                joinedRate = Double(events - firstBatch.stored) / (Double(now - firstBatch.at) / 1e9)
                print(String(format: "  consumer after its first batch (group joined): %.0f messages/s; joining took %.1f s",
                             joinedRate!, Double(firstBatch.at - started) / 1e9))
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return (seconds, joinedRate, cpu)
        }
    }
    #endif
}
