public import TelemetryCatalog

/// A start/completion pair (or one half of it, while the other is missing) as an operation with a
/// duration and an outcome; the catalog's ``LifecycleDefinition``s say which events pair.
public struct Operation: Sendable {
    /// The lifecycle kind, e.g. `generation`.
    public var kind: String
    /// The value that names the operation (the lifecycle's display key, e.g. the `task_id`), as text.
    public var key: String?
    public var tenantID: UUIDValue
    public var status: OperationStatus
    /// When the start happened (its `timestamp`), UTC microseconds; `nil` while only the completion is known.
    public var startedMicros: Int64?
    /// When the completion happened, UTC microseconds; `nil` while running.
    public var completedMicros: Int64?
    /// Completion minus start, milliseconds; `nil` until both halves are known.
    public var durationMilliseconds: Double?
    public var startEventID: UUIDValue?
    public var completeEventID: UUIDValue?
    /// The lifecycle's attributes and spans that have a value, in the lifecycle's order.
    public var attributes: [(String, JSONValue)]
    /// The operation's position in the store: operations created later have larger numbers.
    public var sequence: Int64
    /// When it started, or completed while the start is unknown: the listing's order.
    public var atMicros: Int64

    public init(
        kind: String, key: String?, tenantID: UUIDValue, status: OperationStatus, startedMicros: Int64?,
        completedMicros: Int64?, durationMilliseconds: Double?, startEventID: UUIDValue?, completeEventID: UUIDValue?,
        attributes: [(String, JSONValue)], sequence: Int64, atMicros: Int64
    ) {
        self.atMicros = atMicros
        self.kind = kind
        self.key = key
        self.tenantID = tenantID
        self.status = status
        self.startedMicros = startedMicros
        self.completedMicros = completedMicros
        self.durationMilliseconds = durationMilliseconds
        self.startEventID = startEventID
        self.completeEventID = completeEventID
        self.attributes = attributes
        self.sequence = sequence
    }

    /// The operation as the API's JSON object.
    public var json: JSONValue {
        func time(_ micros: Int64?) -> JSONValue { micros.map { .string(ISO8601Timestamp.string(fromMicroseconds: $0)) } ?? .null }
        return .object([
            ("kind", .string(kind)),
            ("key", key.map { .string($0) } ?? .null),
            ("tenant_id", .string(tenantID.description)),
            ("status", .string(status.rawValue)),
            ("started_at", time(startedMicros)),
            ("completed_at", time(completedMicros)),
            ("duration_ms", durationMilliseconds.map { .number($0) } ?? .null),
            ("start_event_id", startEventID.map { .string($0.description) } ?? .null),
            ("complete_event_id", completeEventID.map { .string($0.description) } ?? .null),
            ("attributes", .object(attributes)),
        ])
    }
}

/// Where an operation stands.
public struct OperationStatus: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Started, not yet completed, within its kind's timeout.
    public static let running = OperationStatus("running")
    /// Completed with `result` true.
    public static let succeeded = OperationStatus("succeeded")
    /// Completed with `result` false.
    public static let failed = OperationStatus("failed")
    /// Started, not completed, and older than its kind's timeout. A late completion still completes it.
    public static let stuck = OperationStatus("stuck")

    public static let all: [OperationStatus] = [.running, .succeeded, .failed, .stuck]

    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// The status named `name`, if any.
    public init?(name: String) {
        guard let found = Self.all.first(where: { $0.rawValue == name }) else { return nil }
        self = found
    }

    public var description: String { rawValue }
}

/// Which operations to list.
public struct OperationQuery: Sendable {
    public var kind: String?
    public var status: OperationStatus?
    public var tenantID: String?
    /// The operation's key (`task_id`, `resource_id`, …) as text.
    public var key: String?
    /// Bounds on when the operation started (or completed, when its start is unknown), UTC
    /// microseconds: `since` inclusive, `until` exclusive.
    public var since: Int64?
    public var until: Int64?
    /// `attribute=value` filters on the lifecycle's attributes.
    public var attributes: [FieldFilter]
    public var limit: Int
    /// Only operations after this one in the listing's order (the previous page's last).
    public var before: OperationCursor?
    /// The time `stuck` is judged at, UTC microseconds.
    public var nowMicros: Int64

    public init(
        kind: String? = nil, status: OperationStatus? = nil, tenantID: String? = nil, key: String? = nil,
        since: Int64? = nil, until: Int64? = nil, attributes: [FieldFilter] = [], limit: Int = 100,
        before: OperationCursor? = nil, nowMicros: Int64
    ) {
        self.kind = kind
        self.status = status
        self.tenantID = tenantID
        self.key = key
        self.since = since
        self.until = until
        self.attributes = attributes
        self.limit = limit
        self.before = before
        self.nowMicros = nowMicros
    }
}

/// One page of operations, newest first.
public struct OperationPage: Sendable {
    public var operations: [Operation]
    /// What to pass as `before` for the next page, or `nil` at the end.
    public var next: OperationCursor?

    public init(operations: [Operation], next: OperationCursor?) {
        self.operations = operations
        self.next = next
    }
}

/// A position in the operations listing (newest started first): an operation's time and sequence.
public struct OperationCursor: Hashable, Sendable, CustomStringConvertible {
    public var atMicros: Int64
    public var sequence: Int64

    public init(atMicros: Int64, sequence: Int64) {
        self.atMicros = atMicros
        self.sequence = sequence
    }

    /// Reads the text form, `MICROS.SEQUENCE`.
    public init?(_ text: String) {
        let parts = text.split(separator: ".")
        guard parts.count == 2, let at = Int64(parts[0]), let sequence = Int64(parts[1]), sequence > 0 else { return nil }
        self.init(atMicros: at, sequence: sequence)
    }

    /// The text form, as the API's `next_cursor`.
    public var description: String { "\(atMicros).\(sequence)" }
}
