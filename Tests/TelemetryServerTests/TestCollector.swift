import Foundation
import Logging
import ServiceLifecycle
import TelemetryCatalog
import TelemetryClient
import TelemetryPipeline
import TelemetryServer
import TelemetryStore

/// A real collector on a loopback port, in this process, over a real SQLite file.
struct TestCollector {
    let store: SQLiteStore
    let port: Int
    let path: String

    func connection(key: String? = nil) -> HTTPConnection { HTTPConnection(host: "127.0.0.1", port: port, apiKey: key) }

    /// Starts a collector (on `path`, or a new temporary file, removed afterwards), runs `body`, then
    /// stops it.
    static func run<T: Sendable>(
        path: String? = nil, maxBytes: Int64? = nil, keys: KeyStore? = nil, configure: (inout CollectorConfiguration) -> Void = { _ in },
        limits: IngestLimits = IngestLimits(), privacy: PrivacyPolicy? = nil, sink: (any EventSink)? = nil, order: BatchOrder = BatchOrder(),
        _ body: @Sendable (TestCollector) async throws -> T
    ) async throws -> T {
        let directory = TestScratch.path("collector-\(UUID().uuidString)")
        let ownsDirectory = path == nil
        defer { if ownsDirectory { try? FileManager.default.removeItem(at: directory) } }
        let path = path ?? directory.appendingPathComponent("telemetry.sqlite").path
        var logger = Logger(label: "test.collector")
        logger.logLevel = .critical
        var storeConfiguration = SQLiteStoreConfiguration(path: path)
        storeConfiguration.maxBytes = maxBytes
        storeConfiguration.durability = .normal
        let store = try SQLiteStore(configuration: storeConfiguration, logger: logger)
        do {
            let result = try await serve(store: store, keys: keys, configure: configure, limits: limits, privacy: privacy, sink: sink, order: order) { port in
                try await body(TestCollector(store: store, port: port, path: path))
            }
            try store.close()
            return result
        } catch {
            try? store.close()
            throw error
        }
    }

    /// A collector whose ingest goes through the sink `makeSink` builds over its store (a test's
    /// gate or fault) and the given batch order; `body` gets the collector (for its store), the
    /// port of the collector with that sink, and the sink.
    static func run<S: EventSink, T: Sendable>(
        sink makeSink: @Sendable (any EventStore) -> S, order: BatchOrder = BatchOrder(),
        _ body: @Sendable (TestCollector, _ port: Int, S) async throws -> T
    ) async throws -> T {
        try await run { collector in
            let sink = makeSink(collector.store)
            return try await serve(store: collector.store, sink: sink, order: order) { port in try await body(collector, port, sink) }
        }
    }

    /// Starts a collector over `store` (any store), runs `body` with its port, then stops it.
    static func serve<T: Sendable>(
        store: any EventStore, keys: KeyStore? = nil, configure: (inout CollectorConfiguration) -> Void = { _ in },
        limits: IngestLimits = IngestLimits(), privacy: PrivacyPolicy? = nil, sink: (any EventSink)? = nil, order: BatchOrder = BatchOrder(),
        _ body: @Sendable (Int) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test.collector")
        logger.logLevel = .critical
        let broadcaster = SequenceBroadcaster()
        let metrics = CollectorMetrics()
        let writer = IngestWriter(
            store: store, logger: logger, onCommit: { broadcaster.publish($0) },
            onTransaction: { metrics.recordCommit(events: $0, nanoseconds: $1) })
        let ingestor = Ingestor(limits: limits, privacy: privacy, sink: sink ?? writer, order: order)
        var configuration = CollectorConfiguration()
        configuration.port = 0
        configuration.streamHeartbeatSeconds = 1
        configure(&configuration)
        let collector = Collector(
            configuration: configuration, store: store, ingestor: ingestor, broadcaster: broadcaster, metrics: metrics, keys: keys,
            logger: logger)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = collector.application { port in portContinuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [writer, app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                let result = try await body(port)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

extension HTTPConnection {
    /// POSTs `body` to /v1/events and parses the answer.
    func post(_ body: String, headers: [(String, String)] = []) async throws -> (status: Int, json: [String: Any]) {
        let response = try await request("POST", "/v1/events", headers: headers, body: Array(body.utf8))
        return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:])
    }

    func getJSON(_ path: String) async throws -> (status: Int, json: [String: Any]) {
        let response = try await request("GET", path)
        return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:])
    }
}

/// `count` distinct valid events as NDJSON lines.
func sampleLines(_ count: Int, seed: UInt64 = 1) -> [String] {
    var sampler = EventSampler(seed: seed)
    return (0..<count).map { _ in sampler.sample().render() }
}

func eventID(of line: String) -> String {
    let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    return object["event_id"] as! String
}
