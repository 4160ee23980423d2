#if Kafka
import CRdKafka
import Logging

/// librdkafka's mock cluster: real Kafka brokers (the wire protocol, partitions, consumer groups,
/// idempotent producers) in this process, listening on loopback ports. For tests and benchmarks;
/// any client, ours or `kcat`, reaches it through ``bootstrap``.
public final class KafkaMockCluster: @unchecked Sendable {
    // @unchecked: librdkafka's mock API is thread-safe (it hands each call to the cluster's thread).
    private let host: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,…` of the brokers.
    public let bootstrap: String
    /// The Kafka protocol's ApiKey of Produce requests, for ``pushRequestErrors(apiKey:_:)``.
    public static let produceAPIKey: Int16 = 0
    /// The mock brokers' own log lines (quiet unless asked).
    private static let log: KafkaLogSink = {
        var logger = Logger(label: "telemetry.kafka.mock")
        logger.logLevel = .critical
        return KafkaLogSink(logger: logger)
    }()

    /// Starts a cluster of `brokers` brokers.
    public init(brokers: Int = 3) throws(KafkaError) {
        // The cluster lives in a client of its own, which nothing else uses.
        host = try makeClient(RD_KAFKA_PRODUCER, try makeConfiguration(["log_level": "3"]), log: Self.log)
        guard let cluster = rd_kafka_mock_cluster_new(host, Int32(brokers)) else {
            rd_kafka_destroy(host)
            throw KafkaError("mock", "cannot start a mock cluster of \(brokers) brokers")
        }
        self.cluster = cluster
        bootstrap = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(host)
    }

    /// Creates `topic` (the cluster also creates topics on first use, with its default partitions).
    public func createTopic(_ topic: String, partitions: Int = 3, replicationFactor: Int = 3) throws(KafkaError) {
        let error = rd_kafka_mock_topic_create(cluster, topic, Int32(partitions), Int32(replicationFactor))
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(error) }
    }

    /// Takes broker `id` (1…brokers) down: its connections close and it accepts none.
    public func setBrokerDown(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_down(cluster, id)
    }

    /// Brings broker `id` back.
    public func setBrokerUp(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_up(cluster, id)
    }

    /// Makes the next requests of `apiKey` (e.g. ``produceAPIKey``) fail with `errors`, in order,
    /// one request each. Error codes are Kafka's (`NOT_ENOUGH_REPLICAS` is 19, `REQUEST_TIMED_OUT` 7,
    /// `MESSAGE_TOO_LARGE` 10, …).
    public func pushRequestErrors(apiKey: Int16, _ errors: [Int32]) {
        var codes = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        rd_kafka_mock_push_request_errors_array(cluster, apiKey, codes.count, &codes)
    }
}
#endif
