#if Kafka
import Foundation
import TelemetryCatalog
import TelemetryClient
import TelemetryKafka
import TelemetryProcess
import Testing

/// `serve --kafka` and `consume` as the processes a user runs, over librdkafka's mock cluster (three
/// brokers on loopback, in the test process): events posted to the collector reach the topics, the
/// consumer loads them into the store, and the collector over that store answers queries on them.
@Suite(.timeLimit(.minutes(3))) struct KafkaCommandTests {
    /// An event under the collector's 1 MiB but over librdkafka's 1,000,000-byte messages used to
    /// make the whole request a 503 that every retry met again (`MSG_SIZE_TOO_LARGE`): a sender
    /// retried it for good. In Kafka mode the per-event limit is now below the message limit, so
    /// it is rejected (`too_large`) and the request's other events are produced.
    @Test func anEventTooLargeForAKafkaMessageIsRejectedAndTheRestProduced() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        for topic in KafkaEventSink.topics() { try cluster.createTopic(topic, partitions: 3, replicationFactor: 3) }
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data, extraArguments: ["--kafka", cluster.bootstrap, "--fsync", "normal"])
        defer { server.stop() }
        var sampler = EventSampler(seed: 23)
        let definition = Catalog.builtin.latest("xumi.generation.start")!
        var big = sampler.sample(definition)
        big["metadata"] = .object((0..<5).map { ("k\($0)", .string(String(repeating: "v", count: 203_000))) })
        var fits = sampler.sample(definition)
        fits["metadata"] = .object((0..<5).map { ("k\($0)", .string(String(repeating: "v", count: 190_000))) })
        let body = Array((big.render() + "\n" + fits.render()).utf8)
        let http = HTTPConnection(host: "127.0.0.1", port: server.port)
        let posted = try await http.request("POST", "/v1/events", headers: [("Content-Type", "application/x-ndjson")], body: body)
        #expect(posted.status == 200, "\(posted.status): \(posted.text)")
        #expect(posted.text.contains(#""accepted":1"#) && posted.text.contains(#""code":"too_large""#), "\(posted.text)")
        #expect(posted.text.contains("over the limit of 983616 bytes per event"), "\(posted.text)")
    }

    /// `bench kafka` end to end on a tiny input (its figures are not checked: a test is no
    /// benchmark): both kcat baselines ran (kcat fails the bench if it cannot produce a line), and
    /// the producer's ratio is read against each, consistently with the rates printed.
    @Test func kafkaBenchMeasuresTheProducerAgainstKcatsBareLinesAndTheSameMessages() async throws {
        let result = try await CLI.runOffPool(["bench", "kafka", "--events", "2000", "--batch-size", "500", "--producer-rounds", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        func rate(_ prefix: String) -> Double? {
            lines.first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count).split(separator: " ").first ?? "") }
        }
        let bare = try #require(rate("producer baseline: kcat -P, bare lines (one topic)"), "\(result.stdout)")
        let same = try #require(rate("producer baseline: kcat -P, the same messages (key, headers)"), "\(result.stdout)")
        let serve = try #require(rate("producer: serve --kafka (HTTP, validation, 7 topics)"), "\(result.stdout)")
        #expect(bare > 0 && same > 0 && serve > 0)
        let ratio = try #require(lines.first { $0.hasPrefix("ratio: producer at ") }, "\(result.stdout)")
        let percents = ratio.split(whereSeparator: { !$0.isNumber }).compactMap { Double($0) }
        #expect(percents.count == 2, "\(ratio)")
        if percents.count == 2 {
            // The rates are printed rounded to a message a second, the ratios to a percent.
            #expect(abs(percents[0] - 100 * serve / same) <= 1, "\(ratio)")
            #expect(abs(percents[1] - 100 * serve / bare) <= 1, "\(ratio)")
        }
        #expect(lines.contains { $0.hasPrefix("on the brokers: 2000 messages") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasPrefix("ratio: consumer at ") && $0.contains("% of the GRDB append") }, "\(result.stdout)")
    }

    /// Into either store: `consume --store clickhouse:…` as well as the SQLite file.
    @Test(arguments: StoreKind.allCases) func serveKafkaThenConsumeIntoTheStoreTheCollectorReads(_ kind: StoreKind) async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        for topic in KafkaEventSink.topics() { try cluster.createTopic(topic, partitions: 3, replicationFactor: 3) }
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let store = try kind.serveArguments()
        let server = try await ServerProcess.start(data: data, extraArguments: ["--kafka", cluster.bootstrap, "--fsync", "normal"] + store)
        defer { server.stop() }
        let consumer = try await ConsumerProcess.start(bootstrap: cluster.bootstrap, data: data, extraArguments: store)
        defer { consumer.stop(signal: SIGKILL) }

        var sampler = EventSampler(seed: 21)
        sampler.linksLifecycles = true
        sampler.lifecycleLag = 3
        let lines = (0..<500).map { _ in sampler.sample().render() }
        let http = HTTPConnection(host: "127.0.0.1", port: server.port)
        let posted = try await http.request("POST", "/v1/events", body: Array(lines.joined(separator: "\n").utf8))
        #expect(posted.status == 200 && posted.text.contains(#""accepted":500"#), "\(posted.text)")

        // The consumer loads them; the collector reads the same store.
        try await waitUntil(60) {
            let page = try await http.request("GET", "/v1/stats?agg=count")
            return page.text.contains(#""count":500"#)
        }
        let operations = try await http.request("GET", "/v1/operations?limit=5")
        #expect(operations.text.contains(#""status""#), "pairing happened in the consumer's writes")

        let metrics = try await HTTPConnection(host: "127.0.0.1", port: consumer.metricsPort).request("GET", "/metrics").text
        #expect(metrics.contains(#"telemetry_consumer_messages_total{outcome="stored"} 500"#), "\(metrics.prefix(600))")
        #expect(metrics.contains("telemetry_consumer_lag_messages{"))

        // SIGTERM: the batch in hand is finished, offsets committed, the group left; exit 0.
        let (status, output) = consumer.stop(signal: SIGTERM)
        #expect(status == 0)
        #expect(output.contains("consumed 500 messages"), "\(output)")
    }
}

/// `telemetry consume` as a child process, with its metrics port.
final class ConsumerProcess: @unchecked Sendable {
    let process: ChildProcess
    let metricsPort: Int
    private var seen = Data()

    private init(bootstrap: String, data: URL, extraArguments: [String]) throws {
        process = try ChildProcess(
            executable: CLI.executable.path,
            arguments: [
                "consume", "--kafka", bootstrap, "--data", data.path, "--fsync", "normal", "--metrics-port", "0", "--batch-size", "200",
                "--log-level", "error",
            ] + extraArguments,
            standardOutput: .pipe)
        var port: Int? = nil
        let deadline = Date().addingTimeInterval(30)
        while port == nil && Date() < deadline {
            let chunk = process.standardOutput!.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
            if let match = String(decoding: seen, as: UTF8.self).firstMatch(of: /metrics on http:\/\/127\.0\.0\.1:(\d+)/) { port = Int(match.1) }
        }
        guard let port else {
            process.signal(SIGKILL)
            process.waitUntilExit()
            throw CLIError("consume did not start: \(String(decoding: seen, as: UTF8.self))")
        }
        metricsPort = port
    }

    static func start(bootstrap: String, data: URL, extraArguments: [String] = []) async throws -> ConsumerProcess {
        try await offThePool { try ConsumerProcess(bootstrap: bootstrap, data: data, extraArguments: extraArguments) }
    }

    /// Signals the consumer, waits for it, and returns its exit status and everything it printed.
    @discardableResult
    func stop(signal: Int32) -> (Int32, String) {
        process.signal(signal)
        let status = process.waitUntilExit().status
        let rest = process.standardOutput!.readDataToEndOfFile()
        return (status, String(decoding: seen + rest, as: UTF8.self))
    }
}
#endif
