import ArgumentParser
import Foundation
import Logging
import TelemetryCatalog
import TelemetryClickHouse
import TelemetryProcess
import TelemetryStore

struct ClickHouseBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clickhouse",
        abstract: "Insert rate of the ClickHouse store, with clickhouse-client's own INSERT of the same rows as the baseline.",
        discussion: """
            Starts a ClickHouse server of its own on loopback (Debian's clickhouse-server; or uses \
            --store), samples and validates --events events of every type, then measures, in one run:

              store: ClickHouseStore.write in batches of --batch-size, as the
                collector and the Kafka consumer call it: the dedupe lookup of
                the batch's ids, the events INSERT (RowBinary: typed columns and
                the normalised JSON), the ids INSERT
              baseline: clickhouse-client --query "INSERT … FORMAT JSONEachRow"
                of the very rows the store wrote (read back from it), into a
                table of the same definition

            The two alternate for --rounds rounds (each into a new database or table), since the \
            machine's load moves between runs; the medians are compared. Databases are dropped at \
            the end. The default batch is what `consume` writes to ClickHouse (50,000; the \
            collector's group commits take up to 100,000): ClickHouse charges per INSERT.
            """
    )

    @Option(help: "Events to insert.")
    var events: Int = 200_000

    @Option(help: "Events per store write.")
    var batchSize: Int = 50_000

    @Option(help: "Use this ClickHouse server (clickhouse:http://HOST:PORT/DATABASE; the database part is ignored) instead of starting one.")
    var store: String?

    @Option(help: "The native (TCP) port clickhouse-client uses with --store.")
    var clientPort: Int = 9000

    @Option(help: "Rounds of store and baseline, alternating.")
    var rounds: Int = 3

    func validate() throws {
        guard events > 0, batchSize > 0, rounds > 0 else { throw ValidationError("--events, --batch-size and --rounds must be positive") }
        if let store { _ = try ClickHouseLocation(store) }
    }

    func run() async throws {
        guard let client = ClickHouseLocalServer.client else { throw CommandFailure("clickhouse-client is not installed (Debian package clickhouse-client)") }
        var logger = Logger(label: "telemetry.bench")
        logger.logLevel = .error
        let server: ClickHouseLocalServer? = store == nil ? try ClickHouseLocalServer() : nil
        defer {
            server?.stop()
            server?.removeFiles()
        }
        let base = try store.map { try ClickHouseLocation($0) } ?? server!.location(database: "default")
        let tcpPort = server?.tcpPort ?? clientPort
        print("ClickHouse \(server == nil ? "at" : "started on") http://\(base.host):\(base.port) (native port \(tcpPort))")

        // The events, validated up front: validation is the collector's cost, not the store's.
        var sampler = EventSampler(seed: 9)
        sampler.linksLifecycles = true
        var validator = EventValidator()
        var batches: [[IncomingEvent]] = []
        var current: [IncomingEvent] = []
        var progress = ProgressBar(total: events, minimumTotal: 1, items: "events")
        for index in 0..<events {
            guard case .valid(let event) = validator.validate(sampler.sample().render()) else { continue }
            current.append(IncomingEvent(event: event, receivedMicros: event.timestampMicros, requestID: "bench"))
            if current.count == batchSize {
                batches.append(current)
                current.removeAll(keepingCapacity: true)
            }
            if index % 10_000 == 0 { progress.update(bytes: index, items: index) }
        }
        if !current.isEmpty { batches.append(current) }
        progress.finish()
        let count = batches.reduce(0) { $0 + $1.count }

        func storeRun(_ database: String) async throws -> (rate: Double, store: ClickHouseStore) {
            var location = base
            location.database = database
            let store = try await ClickHouseStore(configuration: ClickHouseStoreConfiguration(location: location), logger: logger)
            var progress = ProgressBar(total: count, minimumTotal: 1, items: "events")
            var written = 0
            let began = MonotonicClock.now()
            for batch in batches {
                written += try await store.write(WriteBatch(events: batch)).stored
                progress.update(bytes: written, items: written)
            }
            let seconds = Double(MonotonicClock.now() - began) / 1e9
            progress.finish()
            guard written == count else { throw CommandFailure("the store wrote \(written) of \(count) events") }
            return (Double(count) / seconds, store)
        }
        func clickHouseClient(_ query: String, input: URL? = nil, output: URL? = nil) throws -> Double {
            if let output { _ = FileManager.default.createFile(atPath: output.path, contents: nil) }
            let began = MonotonicClock.now()
            let process = try ChildProcess(
                executable: client, arguments: ["--host", base.host, "--port", String(tcpPort), "--query", query],
                standardInput: input.map { .file($0.path) } ?? .null, standardOutput: output.map { .file($0.path) } ?? .null,
                standardError: .inherit)
            guard process.waitUntilExit() == .exited(0) else { throw CommandFailure("clickhouse-client failed: \(query.prefix(80))") }
            return Double(MonotonicClock.now() - began) / 1e9
        }

        var storeRates: [Double] = []
        var clientRates: [Double] = []
        var stores: [ClickHouseStore] = []
        let rows = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-clickhouse-bench-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: rows) }
        _ = try clickHouseClient("CREATE DATABASE IF NOT EXISTS bench_client")
        for round in 1...rounds {
            let run = try await storeRun("bench_store_\(round)")
            stores.append(run.store)
            storeRates.append(run.rate)
            print(String(format: "round %d  store:             %9.0f events/s", round, run.rate))
            if round == 1 {
                // The baseline inserts exactly the rows the store wrote.
                _ = try clickHouseClient("SELECT * FROM bench_store_1.events FORMAT JSONEachRow", output: rows)
            }
            _ = try clickHouseClient("CREATE TABLE bench_client.events_\(round) AS bench_store_1.events")
            let seconds = try clickHouseClient("INSERT INTO bench_client.events_\(round) FORMAT JSONEachRow", input: rows)
            clientRates.append(Double(count) / seconds)
            print(String(format: "round %d  clickhouse-client: %9.0f events/s", round, Double(count) / seconds))
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let size = (try? FileManager.default.attributesOfItem(atPath: rows.path)[.size] as? Int) ?? 0
        print(
            String(
                format: "median: store %.0f events/s, clickhouse-client %.0f events/s (INSERT … FORMAT JSONEachRow, %@ of rows): %.2f (%d events, %d a batch)",
                median(storeRates), median(clientRates), formatBytes(size), median(storeRates) / median(clientRates), count, batchSize))
        for store in stores {
            try? await store.dropDatabase()
            store.close()
        }
        _ = try? clickHouseClient("DROP DATABASE IF EXISTS bench_client")
    }
}
