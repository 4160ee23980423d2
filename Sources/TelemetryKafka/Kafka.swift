#if Kafka
import CRdKafka
import Logging

/// A Kafka failure: librdkafka's error name and text.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// librdkafka's error name, e.g. `_MSG_TIMED_OUT`, `NOT_ENOUGH_REPLICAS`, or `config`.
    public let code: String
    public let message: String

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: rd_kafka_resp_err_t) {
        code = String(cString: rd_kafka_err2name(error))
        message = String(cString: rd_kafka_err2str(error))
    }

    public var description: String { "\(code): \(message)" }
}

/// A message to produce.
public struct KafkaOutgoingMessage: Sendable {
    public var topic: String
    public var key: [UInt8]
    public var value: [UInt8]
    public var headers: [(name: String, value: [UInt8])]

    public init(topic: String, key: [UInt8], value: [UInt8], headers: [(name: String, value: [UInt8])] = []) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A consumed message.
public struct KafkaMessage: Sendable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: [UInt8]
    public let value: [UInt8]
    public let headers: [(name: String, value: [UInt8])]

    /// The first header named `name`, as UTF-8 text.
    public func header(_ name: String) -> String? {
        headerBytes(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The first header named `name`, as its bytes.
    public func headerBytes(_ name: String) -> [UInt8]? {
        headers.first { $0.name == name }?.value
    }
}

/// A librdkafka configuration built from properties; consumed by `rd_kafka_new`.
func makeConfiguration(_ properties: [String: String]) throws(KafkaError) -> OpaquePointer {
    let configuration = rd_kafka_conf_new()!
    var errors = [CChar](repeating: 0, count: 512)
    for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
        if rd_kafka_conf_set(configuration, name, value, &errors, errors.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(configuration)
            throw KafkaError("config", "\(name)=\(value): \(String(decoding: errors.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
    }
    return configuration
}

/// Where librdkafka's log lines go: the client's logger (instead of standard error).
final class KafkaLogSink: Sendable {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// syslog levels (librdkafka's) as swift-log levels.
    static func level(_ syslog: Int32) -> Logger.Level {
        switch syslog {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
    }
}

/// Creates a client of `type` from `configuration` (which it takes over); with `log`, librdkafka's
/// log lines go to its logger (the sink must live as long as the client).
func makeClient(_ type: rd_kafka_type_t, _ configuration: OpaquePointer, log: KafkaLogSink? = nil) throws(KafkaError) -> OpaquePointer {
    if let log {
        rd_kafka_conf_set_opaque(configuration, Unmanaged.passUnretained(log).toOpaque())
        rd_kafka_conf_set_log_cb(configuration) { client, level, facility, text in
            guard let client, let opaque = rd_kafka_opaque(client) else { return }
            let sink = Unmanaged<KafkaLogSink>.fromOpaque(opaque).takeUnretainedValue()
            sink.logger.log(
                level: KafkaLogSink.level(level), "kafka.\(facility.map { String(cString: $0) } ?? "log")",
                metadata: ["message": "\(text.map { String(cString: $0) } ?? "")"])
        }
    }
    var errors = [CChar](repeating: 0, count: 512)
    guard let client = rd_kafka_new(type, configuration, &errors, errors.count) else {
        rd_kafka_conf_destroy(configuration)
        throw KafkaError("client", String(decoding: errors.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return client
}
#endif
