public import Foundation

/// A typed telemetry event: one of the catalog's event types as a Swift struct (generated from the
/// catalog into `Events.swift`).
public protocol TelemetryEvent: Codable, Sendable {
    /// The wire `event_type`, e.g. `xumi.generation.start`.
    static var eventType: String { get }
    /// The catalog version the struct was generated from.
    static var version: String { get }
    /// The topic the event type is published on.
    static var topic: String { get }
    /// The envelope; the emitter fills what is unset (id, time, tenant, source, user and session).
    var envelope: EventEnvelope { get set }
    /// Appends the event as one flat JSON object (the wire form) without going through `Encoder`.
    func writeJSON(to writer: inout EventJSONWriter)
    /// Sets the environment fields the event has and the caller left unset.
    mutating func fillEnvironment(_ environment: EventEnvironment)
}

extension TelemetryEvent {
    /// The event as its wire JSON.
    public var jsonString: String {
        var writer = EventJSONWriter()
        writeJSON(to: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

/// The fields every event carries besides `event_type` and `version`, which come from its type.
///
/// Unset (`nil`) fields are filled by the emitter: a time-ordered UUIDv7 `event_id`, the current
/// `timestamp`, and `tenant_id`, `source`, `user_id` and `session_id` from its configuration and
/// the task-local ``EventContext``.
public struct EventEnvelope: Hashable, Sendable {
    public var eventID: UUID?
    public var timestamp: Date?
    public var tenantID: UUID?
    public var userID: UUID?
    public var sessionID: UUID?
    public var source: String?
    public var metadata: [String: EventJSON]?
    public var tags: [String: String]?

    /// Creates an envelope; everything left `nil` is filled by the emitter.
    public init(
        eventID: UUID? = nil, timestamp: Date? = nil, tenantID: UUID? = nil, userID: UUID? = nil, sessionID: UUID? = nil,
        source: String? = nil, metadata: [String: EventJSON]? = nil, tags: [String: String]? = nil
    ) {
        self.eventID = eventID
        self.timestamp = timestamp
        self.tenantID = tenantID
        self.userID = userID
        self.sessionID = sessionID
        self.source = source
        self.metadata = metadata
        self.tags = tags
    }

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id", eventType = "event_type", timestamp, tenantID = "tenant_id", userID = "user_id"
        case sessionID = "session_id", source, version, metadata, tags
    }

    /// Encodes the envelope's members into the event's (flat) object; `skipping` names members the
    /// event itself defines.
    public func encode(to encoder: any Encoder, eventType: String, version: String, skipping: Set<String> = []) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(eventID, forKey: .eventID)
        try container.encode(eventType, forKey: .eventType)
        try container.encodeIfPresent(timestamp?.eventTimestamp, forKey: .timestamp)
        try container.encodeIfPresent(tenantID, forKey: .tenantID)
        if !skipping.contains("user_id") { try container.encodeIfPresent(userID, forKey: .userID) }
        try container.encodeIfPresent(sessionID, forKey: .sessionID)
        try container.encodeIfPresent(source, forKey: .source)
        try container.encode(version, forKey: .version)
        try container.encodeIfPresent(metadata, forKey: .metadata)
        try container.encodeIfPresent(tags, forKey: .tags)
    }

    /// Decodes the envelope's members from an event's object.
    public init(from decoder: any Decoder, skipping: Set<String> = []) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        eventID = try container.decodeIfPresent(UUID.self, forKey: .eventID)
        timestamp = try container.decodeIfPresent(EventTimestamp.self, forKey: .timestamp)?.date
        tenantID = try container.decodeIfPresent(UUID.self, forKey: .tenantID)
        userID = skipping.contains("user_id") ? nil : try container.decodeIfPresent(UUID.self, forKey: .userID)
        sessionID = try container.decodeIfPresent(UUID.self, forKey: .sessionID)
        source = try container.decodeIfPresent(String.self, forKey: .source)
        metadata = try container.decodeIfPresent([String: EventJSON].self, forKey: .metadata)
        tags = try container.decodeIfPresent([String: String].self, forKey: .tags)
    }
}

/// The values the emitter reads once from the environment (see `Catalog.environmentVariables`)
/// and writes into every event that has the field and leaves it unset.
public struct EventEnvironment: Hashable, Sendable {
    public var nodeID: UUID?
    public var vmType: String?
    public var hostName: String?
    public var storageSize: Int64?
    public var storageType: String?

    public init(nodeID: UUID? = nil, vmType: String? = nil, hostName: String? = nil, storageSize: Int64? = nil, storageType: String? = nil) {
        self.nodeID = nodeID
        self.vmType = vmType
        self.hostName = hostName
        self.storageSize = storageSize
        self.storageType = storageType
    }

    /// Reads `TELEMETRY_NODE_ID`, `TELEMETRY_VM_TYPE`, `TELEMETRY_HOST_NAME` (default: the host's
    /// name), `TELEMETRY_STORAGE_SIZE` (bytes) and `TELEMETRY_STORAGE_TYPE` from `variables`.
    public static func from(_ variables: [String: String] = ProcessInfo.processInfo.environment) -> EventEnvironment {
        EventEnvironment(
            nodeID: variables["TELEMETRY_NODE_ID"].flatMap(UUID.init(uuidString:)),
            vmType: variables["TELEMETRY_VM_TYPE"],
            hostName: variables["TELEMETRY_HOST_NAME"] ?? ProcessInfo.processInfo.hostName,
            storageSize: variables["TELEMETRY_STORAGE_SIZE"].flatMap { Int64($0) },
            storageType: variables["TELEMETRY_STORAGE_TYPE"])
    }
}

/// A JSON value, for the free-form members of events (`metadata`, `user`, `resource`).
public enum EventJSON: Hashable, Sendable, Codable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByFloatLiteral
{
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([EventJSON])
    case object([String: EventJSON])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: EventJSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, EventJSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([EventJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: EventJSON].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let v): try container.encode(v)
        case .integer(let v): try container.encode(v)
        case .number(let v): try container.encode(v)
        case .string(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }
}

/// A timestamp as the wire carries it: RFC 3339 UTC with microseconds, whatever the `Encoder`'s
/// date strategy.
public struct EventTimestamp: Codable, Hashable, Sendable {
    public var date: Date

    public init(_ date: Date) { self.date = date }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let micros = ISO8601Micros.parse(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 timestamp: \(text)"))
        }
        date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(ISO8601Micros.format(date))
    }
}

extension Date {
    /// The date as the wire's timestamp.
    public var eventTimestamp: EventTimestamp { EventTimestamp(self) }
}
