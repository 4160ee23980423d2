import ArgumentParser
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import TelemetryCatalog
import TelemetryServer
import TelemetryStore
import UnixSignals

#if Kafka
import TelemetryKafka
#endif

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Load events from Kafka into a store (a consumer group over the topics).",
        discussion: """
            Reads the seven topics and `rejected` (as `serve --kafka` writes them) in consumer group \
            --group, writes each batch into the store in one transaction, and commits the offsets only \
            after that transaction committed: a crash in between rereads the batch, which the store's \
            dedupe on event_id absorbs, so every event is stored once. SIGTERM or SIGINT finishes the \
            batch in hand, commits, and leaves the group. Run as many as the topics have partitions.

            `serve --data DIR` over the same DIR answers queries on what it loads. With \
            --metrics-port, GET /metrics has the consumer's lag by topic and partition.

            Needs a build with --traits Kafka (librdkafka-dev).

            Examples:
              telemetry consume --kafka 127.0.0.1:9092
              telemetry consume --kafka broker1:9092,broker2:9092 --group loaders \\
                  --data /var/lib/telemetry --metrics-port 9464
            """
    )

    @Option(help: "The Kafka brokers, host:port,…")
    var kafka: String

    @Option(help: "The consumer group.")
    var group: String = "telemetry-consume"

    @Option(help: "Prefix of the topics, as given to serve --topic-prefix.")
    var topicPrefix: String = ""

    @OptionGroup var location: StoreLocation

    @Option(help: "When a commit is durable: full or normal (see serve --help).")
    var fsync: String = "full"

    @Option(help: "Most messages written in one transaction (default 5000 for SQLite, 50000 for ClickHouse, which prefers few large INSERTs).")
    var batchSize: Int?

    @Option(help: "Serve GET /metrics (lag, counts) on 127.0.0.1:PORT; 0 picks a free port.")
    var metricsPort: Int?

    @Option(help: ArgumentHelp("A librdkafka consumer property (repeatable), e.g. session.timeout.ms=30000.", valueName: "NAME=VALUE"))
    var kafkaOption: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard KafkaSupport.isCompiled else { throw ValidationError(KafkaSupport.missingMessage) }
        guard Durability(name: fsync) != nil else { throw ValidationError("--fsync must be full or normal") }
        if let batchSize { guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") } }
        _ = try location.choice()
        if let metricsPort { guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be 0-65535") } }
        _ = try KafkaSupport.properties(kafkaOption)
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() async throws {
        #if Kafka
        MemoryTuning.fixMmapThreshold()
        var logger = Logger(label: "telemetry.consume")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration = SQLiteStoreConfiguration(path: "")
        configuration.durability = Durability(name: fsync)!
        let opened = await location.open(sqlite: configuration, logger: logger)
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                bootstrap: kafka, group: group, topics: KafkaEventSink.topics(prefix: topicPrefix),
                configuration: try KafkaSupport.properties(kafkaOption), logger: logger)
        } catch {
            CommandFailure.exit("\(error)")
        }
        let registry = PrometheusCollectorRegistry()
        let metrics = ConsumerMetrics(registry: registry)
        let batchLogger = logger
        let loader = KafkaStoreLoader(
            consumer: consumer, store: opened.store, topicPrefix: topicPrefix, batchSize: batchSize ?? (opened.isClickHouse ? 50_000 : 5000), logger: logger
        ) { counts, lag in
            metrics.record(counts, lag: lag)
            batchLogger.debug(
                "consume.batch",
                metadata: ["stored": "\(counts.stored)", "duplicates": "\(counts.duplicates)", "lag": "\(lag.reduce(0) { $0 + $1.lag })"])
        }
        var services: [any Service] = [loader]
        if let metricsPort {
            services.append(
                metricsApplication(registry: registry, host: "127.0.0.1", port: metricsPort, logger: logger) { port in
                    print("telemetry: consumer metrics on http://127.0.0.1:\(port)/metrics")
                    fflush(nil)
                })
        }
        print("telemetry: consuming \(kafka) (group \(group)) into \(opened.description)")
        fflush(nil)
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let counts = loader.counts
        print(
            "telemetry: consumed \(counts.messages) messages in \(counts.batches) batches: \(counts.stored) stored, \(counts.duplicates) duplicates, \(counts.rejected) rejected, \(counts.unreadable) unreadable"
        )
        opened.close()
        #endif
    }
}

#if Kafka
/// The consumer's metrics: messages by outcome, and lag by topic and partition.
final class ConsumerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let lastCounts = Mutex(KafkaStoreLoader.Counts())

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    static var messages: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "consumer_messages_total", unitName: "",
            helpText: "Kafka messages loaded into the store, by outcome (stored, duplicate, rejected, unreadable).")
    }
    static var lag: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "telemetry", metricName: "consumer_lag_messages", unitName: "",
            helpText: "Messages between the consumer's position and the end of each assigned partition.")
    }

    func record(_ counts: KafkaStoreLoader.Counts, lag: [(topic: String, partition: Int32, lag: Int64)]) {
        let previous = lastCounts.withLock { last -> KafkaStoreLoader.Counts in
            defer { last = counts }
            return last
        }
        for (outcome, now, before) in [
            ("stored", counts.stored, previous.stored), ("duplicate", counts.duplicates, previous.duplicates),
            ("rejected", counts.rejected, previous.rejected), ("unreadable", counts.unreadable, previous.unreadable),
        ] where now > before {
            registry.makeCounter(descriptor: Self.messages, labels: [("outcome", outcome)]).increment(by: Int64(now - before))
        }
        for entry in lag {
            registry.makeGauge(descriptor: Self.lag, labels: [("topic", entry.topic), ("partition", String(entry.partition))]).set(Double(entry.lag))
        }
    }
}
#endif
