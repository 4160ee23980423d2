/// How a start event and a completion event pair up into one operation with a duration and an outcome.
///
/// Lifecycles are data in the catalog, next to the events they pair; the store implements the
/// pairing once for all of them. Pairing never crosses tenants: both halves must carry the same
/// `tenant_id`.
public struct LifecycleDefinition: Hashable, Sendable {
    /// The operation kind, e.g. `generation`.
    public var kind: String
    /// A one-line description of what the operation is.
    public var title: String
    /// The event type that starts the operation.
    public var startEventType: String
    /// The event type that completes it.
    public var completeEventType: String
    /// How a completion finds its start, in order of preference: a completion is matched by the first
    /// key it carries a value for, and only by that one.
    public var keys: [PairingKey]
    /// Which key names the operation in listings (`key` in the API), as an index into ``keys``.
    public var displayKey: Int
    /// A start counts only when this bool field of it is `true` (e.g. a pod's lifetime starts only
    /// at a deploy that succeeded); `nil` for every start.
    public var startsWhen: String?
    /// A completion counts only when this bool field of it is `true`; `nil` for every completion.
    public var completesWhen: String?
    /// The bool field of the completion that says whether the operation succeeded.
    public var resultField: String?
    /// Fields copied onto the operation (from the completion when it has them, else the start), so
    /// that operations can be filtered and grouped by them.
    public var attributes: [String]
    /// Extra durations between two instants of the operation (e.g. a generation's time in queue).
    public var spans: [Span]
    /// How long a start may wait for its completion before the operation counts as `stuck`
    /// (seconds); `nil` when it never does (a pod may live for months).
    public var stuckAfterSeconds: Int?

    /// Creates a lifecycle definition.
    public init(
        kind: String, title: String, start: String, complete: String, keys: [PairingKey], displayKey: Int = 0,
        startsWhen: String? = nil, completesWhen: String? = nil, resultField: String? = "result",
        attributes: [String], spans: [Span] = [], stuckAfterSeconds: Int?
    ) {
        self.kind = kind
        self.title = title
        self.startEventType = start
        self.completeEventType = complete
        self.keys = keys
        self.displayKey = displayKey
        self.startsWhen = startsWhen
        self.completesWhen = completesWhen
        self.resultField = resultField
        self.attributes = attributes
        self.spans = spans
        self.stuckAfterSeconds = stuckAfterSeconds
    }

    /// One way of pairing: the start's `startField` equals the completion's `completeField`.
    public struct PairingKey: Hashable, Sendable {
        public var startField: String
        public var completeField: String

        /// Creates a pairing key.
        public init(start: String, complete: String) {
            self.startField = start
            self.completeField = complete
        }
    }

    /// An instant of an operation: a timestamp field of its start or of its completion.
    public struct Instant: Hashable, Sendable {
        public var ofCompletion: Bool
        public var field: String

        /// The start's `field`.
        public static func start(_ field: String) -> Instant { Instant(ofCompletion: false, field: field) }
        /// The completion's `field`.
        public static func completion(_ field: String) -> Instant { Instant(ofCompletion: true, field: field) }
    }

    /// A named duration, in milliseconds, from one instant to another.
    public struct Span: Hashable, Sendable {
        public var name: String
        public var from: Instant
        public var to: Instant
        public var description: String

        /// Creates a span.
        public init(_ name: String, from: Instant, to: Instant, description: String) {
            self.name = name
            self.from = from
            self.to = to
            self.description = description
        }
    }
}

extension LifecycleDefinition {
    /// The columns every operation has; attribute and span names may not reuse them.
    public static let reservedNames: Set<String> = [
        "kind", "key", "tenant_id", "status", "started_at", "completed_at", "duration_ms", "start_event_id",
        "complete_event_id", "attributes", "success",
    ]
}

extension Catalog {
    /// Checks lifecycle definitions against the events: the types exist, and every field they name
    /// is a field of the side it is read from.
    static func check(lifecycles: [LifecycleDefinition], events: [EventDefinition], envelope: [FieldDefinition])
        throws(CatalogError)
    {
        var kinds: Set<String> = []
        func fields(of eventType: String) -> [String: FieldType]? {
            let versions = events.filter { $0.eventType == eventType }
            guard !versions.isEmpty else { return nil }
            var result: [String: FieldType] = [:]
            for field in envelope + versions.flatMap(\.fields) { result[field.name] = field.type }
            return result
        }
        for lifecycle in lifecycles {
            let kind = lifecycle.kind
            guard kinds.insert(kind).inserted else {
                throw CatalogError("duplicate_lifecycle", "the lifecycle \(kind) is defined twice")
            }
            guard let start = fields(of: lifecycle.startEventType) else {
                throw CatalogError("unknown_event_type", "lifecycle \(kind) starts with \(lifecycle.startEventType), which the catalog does not define")
            }
            guard let complete = fields(of: lifecycle.completeEventType) else {
                throw CatalogError("unknown_event_type", "lifecycle \(kind) completes with \(lifecycle.completeEventType), which the catalog does not define")
            }
            guard !lifecycle.keys.isEmpty, lifecycle.keys.count <= 2, lifecycle.keys.indices.contains(lifecycle.displayKey) else {
                throw CatalogError("bad_lifecycle", "lifecycle \(kind) needs one or two pairing keys")
            }
            for key in lifecycle.keys {
                guard let a = start[key.startField], let b = complete[key.completeField], a.kind == b.kind else {
                    throw CatalogError("bad_lifecycle", "lifecycle \(kind): \(key.startField) of the start and \(key.completeField) of the completion must both exist with one type")
                }
            }
            for (name, side) in [(lifecycle.startsWhen, start), (lifecycle.completesWhen, complete), (lifecycle.resultField, complete)] {
                if let name, side[name]?.kind != .bool {
                    throw CatalogError("bad_lifecycle", "lifecycle \(kind): \(name) must be a bool field")
                }
            }
            for name in lifecycle.attributes {
                guard start[name] != nil || complete[name] != nil else {
                    throw CatalogError("bad_lifecycle", "lifecycle \(kind): attribute \(name) is a field of neither event")
                }
                guard !LifecycleDefinition.reservedNames.contains(name) else {
                    throw CatalogError("bad_lifecycle", "lifecycle \(kind): \(name) is reserved for operations")
                }
            }
            for span in lifecycle.spans {
                guard !LifecycleDefinition.reservedNames.contains(span.name), !lifecycle.attributes.contains(span.name) else {
                    throw CatalogError("bad_lifecycle", "lifecycle \(kind): span \(span.name) reuses a name")
                }
                for instant in [span.from, span.to] {
                    let side = instant.ofCompletion ? complete : start
                    guard side[instant.field]?.kind == .timestamp else {
                        throw CatalogError("bad_lifecycle", "lifecycle \(kind): span \(span.name) reads \(instant.field), which is no timestamp")
                    }
                }
            }
        }
    }

    /// The lifecycle whose kind is `kind`.
    public func lifecycle(_ kind: String) -> LifecycleDefinition? {
        lifecycles.first { $0.kind == kind }
    }
}
