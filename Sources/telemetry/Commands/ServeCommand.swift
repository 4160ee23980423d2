import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals
import TelemetryCatalog
import TelemetryPipeline
import TelemetryServer
import TelemetryStore

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the collector: the HTTP API v1 over the embedded store.",
        discussion: """
            Services POST events to /v1/events; the collector validates them, stores the valid ones \
            in one SQLite file (WAL) and the invalid ones, with every reason, in its rejected store, \
            and answers only once the accepted events are durable. Concurrent requests share \
            commits (group commit). GET /openapi.json describes the whole API.

            API keys (`telemetry keys create`, kept hashed in DIR/keys.sqlite) are required on every \
            /v1 route once the first one exists; a key reads and writes its own tenant only. With no \
            key the collector serves loopback only and refuses any other --host. docs/security.md \
            has the details.

            With --store clickhouse:http://HOST:PORT/DATABASE the events, rejections and operations \
            live in ClickHouse (docs/clickhouse.md); --fsync, --cache-mib, --max-store-bytes, \
            --stats-scan-rows and --no-operations apply to SQLite only.

            Examples:
              telemetry serve
              telemetry serve --port 9000 --data /var/lib/telemetry --retention 30d
              telemetry serve --store sqlite:/tmp/t.sqlite --fsync normal
              telemetry serve --store clickhouse:http://127.0.0.1:8123/telemetry
              telemetry keys create --tenant 0b6c7c2e-5f0e-4c55-9c0f-7f2b1d1e9a10 \\
                  --scopes ingest,read
              telemetry serve --host 0.0.0.0
            """
    )

    @Option(help: "Address to listen on; anything but loopback needs an API key to exist first.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free one (printed at start).")
    var port: Int = 8080

    @OptionGroup var location: StoreLocation

    /// The data folder (`--data`): keys and the privacy key live there too.
    var data: String { location.data }

    @Option(help: "When a commit is durable: full (fsync every commit; survives power loss) or normal (survives a crash of the collector; an fsync per checkpoint).")
    var fsync: String = "full"

    @Option(help: "Keep events this long by their timestamp, e.g. 30d, 12h, 90m; unset keeps everything.")
    var retention: String?

    @Option(help: "Largest request body, bytes, before and after gzip.")
    var maxBody: Int = 16 << 20

    @Option(help: "Most events in one request.")
    var maxEvents: Int = 10_000

    @Option(help: "Deepest nesting of an event's JSON.")
    var maxDepth: Int = 64

    @Option(help: "Largest event (NDJSON line or array element), bytes. With --kafka, at most librdkafka's message.max.bytes less 16 KiB (983616 by default): an event must fit a Kafka message.")
    var maxEventBytes: Int = 1 << 20

    @Option(help: "Longest string value of a field, bytes.")
    var maxStringBytes: Int = 256 << 10

    @Option(help: ArgumentHelp("Privacy rules over the defaults (prompt=hash,IP=truncate), e.g. detail=truncate:200,prompt=keep. Actions: keep, drop, hash, truncate[:N]. See docs/security.md.", valueName: "FIELD=ACTION,..."))
    var privacy: String = ""

    @Option(help: "The secret key of the privacy policy's hash (default DIR/privacy.key, created when missing).")
    var privacyKey: String?

    @Option(help: "Publish validated events to the Kafka brokers at BOOTSTRAP (host:port,…) instead of writing the store; `telemetry consume` loads them into a store. Needs a build with --traits Kafka.")
    var kafka: String?

    @Option(help: "Prefix of the Kafka topics (e.g. prod. for prod.xumi_task).")
    var topicPrefix: String = ""

    @Option(help: "How long an event may wait for the brokers before its request is answered 503, e.g. 10s.")
    var kafkaTimeout: String = "10s"

    @Option(help: ArgumentHelp("A librdkafka producer property (repeatable), e.g. linger.ms=10.", valueName: "NAME=VALUE"))
    var kafkaOption: [String] = []

    @Option(help: "The API keys' file (default DIR/keys.sqlite).")
    var keys: String?

    @Option(help: "Requests a second per API key (token bucket); 0 for no limit.")
    var rateLimit: Double = 100

    @Option(help: "Requests a key may make at once beyond its rate.")
    var rateBurst: Int = 200

    @Option(help: "Events waiting for the store (or, with --kafka, for the brokers' acknowledgements) past which POST /v1/events answers 429 with Retry-After (keeps latency bounded under any load); 0 for no bound. Default 6000, with --kafka 50000.")
    var maxQueuedEvents: Int?

    @Option(help: "Bytes of request bodies parsed and validated at once past which POST /v1/events answers 429 with Retry-After (one request is always taken); the same bound, counted apart, holds for bodies being received (by their Content-Length: refused before they are read) and for bodies validated and waiting for the batch they follow (Telemetry-After); 0 for no bound.")
    var maxValidatingBytes: Int = IngestLimits().maxValidatingBytes ?? 0

    @Option(help: "Time a client has to send a request's head (also how long an idle connection stays open), e.g. 30s.")
    var headerTimeout: String = "30s"

    @Option(help: "Time a client has to send a request's body once its head is in, e.g. 60s.")
    var bodyTimeout: String = "60s"

    @Option(help: "How long a request naming the batch it follows (Telemetry-After, sent by the SDK with two requests in flight) waits for that batch to be stored before it is answered 409, e.g. 10s.")
    var orderWait: String = "10s"

    @Option(help: "Cap the store's files (events, and operations), bytes each; past it ingest answers 503 until room is made.")
    var maxStoreBytes: Int64?

    @Option(help: "The store writer's page cache, MiB (the pairer's gets half; each reader's is 8).")
    var cacheMib: Int = SQLiteStoreConfiguration(path: "").cacheMiB

    @Option(help: "Most rows of one event type and time range read once into memory for the statistics asked of them together (the dashboard's charts; about 100 bytes a row); 0 reads the table for every query.")
    var statsScanRows: Int = 100_000

    @Option(help: ArgumentHelp("Override an operation kind's stuck timeout (repeatable), e.g. generation=10m; 0 for never. Defaults: weights_load 30m, generation, pod_deploy and pod_free 15m, pod_lifetime never.", valueName: "KIND=DURATION"))
    var stuckAfter: [String] = []

    @Flag(help: "Do not pair start and completion events into operations (to measure what pairing costs); a later start with pairing pairs what was stored meanwhile.")
    var noOperations = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard Durability(name: fsync) != nil else { throw ValidationError("--fsync must be full or normal") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535") }
        if let retention { guard Self.parseDuration(retention) != nil else { throw ValidationError("--retention takes a number and d, h, m or s, e.g. 30d") } }
        guard maxBody > 0, maxEvents > 0, maxDepth > 1, maxEventBytes > 0, maxStringBytes > 0 else {
            throw ValidationError("--max-body, --max-events, --max-depth, --max-event-bytes and --max-string-bytes must be positive")
        }
        guard statsScanRows >= 0 else { throw ValidationError("--stats-scan-rows must be 0 or more") }
        guard cacheMib > 0 else { throw ValidationError("--cache-mib must be positive") }
        guard rateLimit >= 0, rateBurst > 0 else { throw ValidationError("--rate-limit must be 0 or more and --rate-burst positive") }
        guard (maxQueuedEvents ?? 0) >= 0, maxValidatingBytes >= 0 else {
            throw ValidationError("--max-queued-events and --max-validating-bytes must be 0 or more")
        }
        if kafka != nil && !KafkaSupport.isCompiled {
            throw ValidationError(KafkaSupport.missingMessage)
        }
        _ = try KafkaSupport.properties(kafkaOption)
        for (name, text) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--kafka-timeout", kafkaTimeout), ("--order-wait", orderWait)] {
            guard let seconds = DurationText.seconds(text), seconds > 0 else {
                throw ValidationError("\(name) takes a number and s, m or h, e.g. 30s; got \(text)")
            }
        }
        _ = try stuckAfterSeconds()
        do {
            _ = try PrivacyPolicy(rules: try PrivacyPolicy.parseRules(privacy), key: [UInt8](repeating: 0, count: 32))
        } catch {
            throw ValidationError("--privacy: \(error.message)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    static func isLoopback(_ host: String) -> Bool {
        ["localhost", "::1", "[::1]"].contains(host) || host.hasPrefix("127.")
    }

    var keysPath: String { keys ?? (data as NSString).appendingPathComponent("keys.sqlite") }

    static func parseDuration(_ text: String) -> Duration? {
        DurationText.seconds(text).map { .seconds($0) }
    }

    func stuckAfterSeconds() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for item in stuckAfter {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, Catalog.builtin.lifecycle(parts[0]) != nil else {
                let kinds = Catalog.builtin.lifecycles.map(\.kind).joined(separator: ", ")
                throw ValidationError("--stuck-after takes KIND=DURATION with KIND one of \(kinds); got \(item)")
            }
            if parts[1] == "0" {
                result[parts[0]] = 0
            } else if let seconds = DurationText.seconds(parts[1]) {
                result[parts[0]] = Int(seconds)
            } else {
                throw ValidationError("--stuck-after \(parts[0])= takes a number and s, m, h or d (or 0 for never); got \(parts[1])")
            }
        }
        return result
    }


    func run() async throws {
        var logger = Logger(label: "telemetry.serve")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let host = self.host
        // The Prometheus backend: the collector's own metrics, and anything libraries record
        // through swift-metrics, in one registry that GET /metrics renders.
        let metrics = CollectorMetrics()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        let (services, store) = try await makeServices(logger: logger, metrics: metrics) { port, storeDescription in
            // Scripts read this line to find the port (with --port 0).
            print("telemetry: collector listening on http://\(host):\(port) (\(storeDescription))")
            print("telemetry: the dashboard is http://\(host):\(port)/")
            fflush(nil)
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await Self.run(group, listeningOn: host, port: port)
        store.close()
    }

    /// Runs the collector's services; a server that cannot listen is said plainly (the socket's
    /// own error reads `bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)`).
    /// Also used by `demo`.
    static func run(_ group: ServiceGroup, listeningOn host: String, port: Int) async throws {
        do {
            try await group.run()
        } catch let error as IOError where [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(error.errnoCode) {
            let why =
                switch error.errnoCode {
                case EADDRINUSE: "the port is taken (another collector, or another program); choose another --port, or --port 0 for a free one"
                case EACCES: "permission denied (ports below 1024 need privileges); choose another --port"
                default: "\(host) is not an address of this machine; --host takes one of its addresses, or 0.0.0.0 for all"
                }
            throw CommandFailure("cannot listen on \(host):\(port): \(why)")
        }
    }

    /// The collector's services (writer, retention, HTTP server) over its store; `onListening` gets
    /// the bound port and the store's description (`sqlite:PATH`, `clickhouse:…`) once the server
    /// listens. Also used by `demo`.
    func makeServices(
        logger: Logger, metrics: CollectorMetrics = CollectorMetrics(), onListening: @escaping @Sendable (Int, String) async -> Void
    ) async throws -> (services: [any Service], store: StoreLocation.Opened) {
        MemoryTuning.fixMmapThreshold()
        var storeConfiguration = SQLiteStoreConfiguration(path: "")
        storeConfiguration.durability = Durability(name: fsync)!
        storeConfiguration.maxBytes = maxStoreBytes
        storeConfiguration.cacheMiB = cacheMib
        storeConfiguration.pairsOperations = !noOperations
        storeConfiguration.statsScanRows = statsScanRows
        storeConfiguration.stuckAfterSeconds = try stuckAfterSeconds()
        let opened = await location.open(sqlite: storeConfiguration, logger: logger)
        let store = opened.store
        let broadcaster = SequenceBroadcaster()
        // A group commit takes what is waiting up to this many events: larger for ClickHouse, whose
        // INSERTs cost per call (bench clickhouse: 10,000-event inserts reach 54% of
        // clickhouse-client's rate, 50,000-event ones 81%).
        let writer = IngestWriter(
            store: store, logger: logger, maxEventsPerTransaction: opened.isClickHouse ? 100_000 : 20_000,
            onCommit: { broadcaster.publish($0) },
            onTransaction: { metrics.recordCommit(events: $0, nanoseconds: $1) })
        let keyStore: KeyStore
        do {
            keyStore = try KeyStore(path: keysPath)
            // Without a key anybody who can reach the collector may read every tenant's events.
            if !Self.isLoopback(host), try !keyStore.isEnforcing {
                CommandFailure.exit(
                    """
                    refusing to listen on \(host): no API key exists yet, so anybody reaching it could read and write every tenant's events.
                    Create one first, e.g.: telemetry keys create --keys \(keysPath) --tenant TENANT_UUID --scopes ingest,read
                    (or an admin key: --scopes admin), or listen on loopback (--host 127.0.0.1).
                    """)
            }
        } catch {
            CommandFailure.exit("\(error)")
        }
        // The store's writer takes ~0.1 s for 6,000 events, and a request waits for those before
        // its own. Kafka's producer pipelines: 6,000 events awaiting acknowledgements are six
        // requests of 1,000, and a seventh was refused with a 1 s Retry-After while the brokers
        // and cores had room (`bench kafka --connections 8`: 55k-63k messages/s with the store's
        // bound, 114k-149k without). 50,000 stays below librdkafka's own queue (100,000
        // messages, past which producing fails).
        let queueBound = (maxQueuedEvents ?? (kafka == nil ? 6_000 : 50_000)).nonZero
        var eventLimit = maxEventBytes
        if kafka != nil {
            let cap = KafkaSupport.maxEventBytes(properties: (try? KafkaSupport.properties(kafkaOption)) ?? [:])
            if eventLimit > cap {
                logger.notice(
                    "serve.kafka.event_limit",
                    metadata: ["max_event_bytes": "\(cap)", "why": "an event must fit librdkafka's message.max.bytes (--kafka-option message.max.bytes=N raises it)"])
                eventLimit = cap
            }
        }
        let limits = IngestLimits(
            maxEventsPerRequest: maxEvents, maxDepth: maxDepth, maxEventBytes: eventLimit, maxStringBytes: maxStringBytes,
            maxQueuedEvents: queueBound, maxValidatingBytes: maxValidatingBytes.nonZero)
        let policy: PrivacyPolicy
        do {
            let key = try PrivacyPolicy.loadOrCreateKey(at: privacyKey ?? (data as NSString).appendingPathComponent("privacy.key"))
            policy = try PrivacyPolicy(rules: try PrivacyPolicy.parseRules(privacy), key: key)
        } catch {
            CommandFailure.exit("\(error)")
        }
        var services: [any Service] = [writer]
        var sink: any EventSink = writer
        if let kafka {
            // Kafka mode: events go to the topics (the store stays open for the read routes, which
            // show what `telemetry consume` loads into it).
            var properties = (try? KafkaSupport.properties(kafkaOption)) ?? [:]
            properties["message.timeout.ms"] = properties["message.timeout.ms"] ?? String(DurationText.seconds(kafkaTimeout)! * 1000)
            do {
                let (kafkaSink, service) = try KafkaSupport.sink(bootstrap: kafka, topicPrefix: topicPrefix, properties: properties, logger: logger)
                sink = kafkaSink
                services.append(service)
            } catch {
                CommandFailure.exit("\(error)")
            }
        }
        let ingestor = Ingestor(limits: limits, privacy: policy, sink: sink, order: BatchOrder(wait: Self.parseDuration(orderWait)!))
        var configuration = CollectorConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.maxBodyBytes = maxBody
        configuration.rateLimit = rateLimit > 0 ? rateLimit : nil
        configuration.rateBurst = rateBurst
        configuration.headerTimeout = Self.parseDuration(headerTimeout)!
        configuration.bodyTimeout = Self.parseDuration(bodyTimeout)!
        let collector = Collector(
            configuration: configuration, store: store, ingestor: ingestor, broadcaster: broadcaster, metrics: metrics, keys: keyStore,
            logger: logger)
        // In Kafka mode the store only answers the read routes: say where the events go.
        let storeDescription = kafka.map { "events to Kafka at \($0)\(topicPrefix.isEmpty ? "" : ", topics \(topicPrefix)*"); reads from store \(opened.description)" }
            ?? "store \(opened.description)"
        let app = collector.application { port in await onListening(port, storeDescription) }
        if let retention, let duration = Self.parseDuration(retention) {
            services.append(
                RetentionService(store: store, retention: duration, logger: logger, now: { Int64(Date().timeIntervalSince1970 * 1_000_000) }))
        }
        services.append(app)
        return (services, opened)
    }
}

extension Int {
    /// `nil` for 0 ("no bound").
    fileprivate var nonZero: Int? { self == 0 ? nil : self }
}
