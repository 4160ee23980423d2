import ArgumentParser
import Logging
import ServiceLifecycle
import TelemetryPipeline

#if Kafka
import TelemetryKafka
#endif

/// What the CLI needs of Kafka, whether or not this build has it (trait `Kafka`).
enum KafkaSupport {
    #if Kafka
    static let isCompiled = true
    #else
    static let isCompiled = false
    #endif

    static let missingMessage =
        "this build of telemetry has no Kafka support; build it with `swift build --traits Kafka` (needs librdkafka-dev)"

    /// `NAME=VALUE` options as librdkafka properties.
    static func properties(_ options: [String]) throws -> [String: String] {
        var properties: [String: String] = [:]
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ValidationError("Kafka options are NAME=VALUE (librdkafka properties); got \(option)")
            }
            properties[parts[0]] = parts[1]
        }
        return properties
    }

    /// The largest event (its bytes as sent) the collector takes in Kafka mode with `properties`:
    /// one must fit a Kafka message, and librdkafka refuses a message over its
    /// `message.max.bytes` (1,000,000 by default, less than the 1 MiB an event may otherwise have).
    /// That refusal comes back on every retry, so a sender would retry such an event for good; it
    /// is rejected (`too_large`) with the request's other problems instead. The margin leaves room
    /// for the key, the headers, the record's framing and what normalisation may add.
    static func maxEventBytes(properties: [String: String]) -> Int {
        let messageMax = properties["message.max.bytes"].flatMap { Int($0) } ?? 1_000_000
        return max(1, messageMax - 16 << 10)
    }

    /// The collector's Kafka sink and the service that flushes its producer at shutdown.
    static func sink(bootstrap: String, topicPrefix: String, properties: [String: String], logger: Logger) throws -> (any EventSink, any Service) {
        #if Kafka
        let producer = try KafkaProducer(bootstrap: bootstrap, configuration: properties, logger: logger)
        // Before the collector listens: its first requests would otherwise wait for the topics'
        // metadata (at most 5 s here when the brokers do not answer; then they wait as before).
        producer.warmUp(topics: KafkaEventSink.topics(prefix: topicPrefix))
        return (KafkaEventSink(producer: producer, topicPrefix: topicPrefix), producer)
        #else
        throw CommandFailure(missingMessage)
        #endif
    }
}
