public import TelemetryCatalog

/// Where validated events are kept: the embedded SQLite store, or ClickHouse when the system scales out.
///
/// A store knows nothing of HTTP. Every method is safe to call concurrently; writes are atomic: a
/// ``write(_:)`` that throws has stored nothing of its batch.
public protocol EventStore: Sendable {
    /// Stores a batch of events and rejections in one transaction, durably (as the store's
    /// durability setting defines it) before it returns.
    ///
    /// Events whose `event_id` is already stored (or appears earlier in the batch) are duplicates:
    /// counted, not stored again.
    ///
    /// - Throws: ``StoreError`` when nothing could be stored (disk full, I/O error, …).
    func write(_ batch: WriteBatch) async throws -> WriteOutcome

    /// Events matching `query`, newest first, one page at a time.
    func events(_ query: EventQuery) async throws -> EventPage

    /// The stored (normalised) JSON of the event with `id`, if any; restricted to `tenant` when given.
    func event(id: UUIDValue, tenant: UUIDValue?) async throws -> StoredEvent?

    /// Rejected events, newest first.
    func rejected(_ query: RejectedQuery) async throws -> RejectedPage

    /// Deletes up to `limit` events whose timestamp is before `micros`, and up to `limit` operations
    /// that started before it; returns the larger of the two counts (0 when nothing is left to delete).
    func deleteEvents(before micros: Int64, limit: Int) async throws -> Int

    /// The sequence number of the newest stored event (0 when empty).
    func latestSequence() async throws -> Int64

    /// Operations matching `query`, newest first, one page at a time.
    func operations(_ query: OperationQuery) async throws -> OperationPage

    /// Aggregates of events or operations, grouped and bucketed as `query` asks.
    func stats(_ query: StatsQuery) async throws -> [StatsGroup]

    /// How many operations of each kind are stuck at `nowMicros`, every kind listed.
    func stuckOperationCounts(nowMicros: Int64) async throws -> [String: Int]

    /// The store's size on disk, bytes.
    func sizeBytes() async throws -> Int64

    /// Stored events not yet paired into operations, counted by sequence (most are not lifecycle
    /// events); 0 for a store that pairs when it reads.
    var pairingLag: Int64 { get }

    /// Event ids the dedupe index holds in memory, not yet merged into its table; 0 for a store
    /// without such a level.
    var dedupeRecentIDs: Int { get }
}

extension EventStore {
    public var pairingLag: Int64 { 0 }
    public var dedupeRecentIDs: Int { 0 }
}

/// One event to store, with where it came from.
public struct IncomingEvent: Sendable {
    public var event: NormalizedEvent
    /// When the collector received it, UTC microseconds.
    public var receivedMicros: Int64
    /// The request that carried it.
    public var requestID: String

    public init(event: NormalizedEvent, receivedMicros: Int64, requestID: String) {
        self.event = event
        self.receivedMicros = receivedMicros
        self.requestID = requestID
    }
}

/// An event that failed validation, kept with every reason.
public struct RejectedEvent: Sendable, Hashable {
    /// The raw bytes as received.
    public var raw: [UInt8]
    /// Every problem found.
    public var issues: [ValidationIssue]
    /// `event_type` and `event_id` as sent, when they could be read.
    public var eventType: String?
    public var eventID: String?
    /// The tenant the sender is authenticated as, when known.
    public var tenantID: String?
    /// Position of the event in its request.
    public var index: Int
    public var receivedMicros: Int64
    public var requestID: String
    /// Set by the store when read back.
    public var sequence: Int64 = 0

    public init(
        raw: [UInt8], issues: [ValidationIssue], eventType: String?, eventID: String?, tenantID: String? = nil,
        index: Int, receivedMicros: Int64, requestID: String
    ) {
        self.raw = raw
        self.issues = issues
        self.eventType = eventType
        self.eventID = eventID
        self.tenantID = tenantID
        self.index = index
        self.receivedMicros = receivedMicros
        self.requestID = requestID
    }
}

/// What one transaction stores.
public struct WriteBatch: Sendable {
    public var events: [IncomingEvent]
    public var rejected: [RejectedEvent]

    public init(events: [IncomingEvent] = [], rejected: [RejectedEvent] = []) {
        self.events = events
        self.rejected = rejected
    }
}

/// What became of each event of a ``WriteBatch``, in the batch's order.
public struct WriteOutcome: Sendable {
    /// For each event: its sequence number when stored, or `nil` when it was a duplicate.
    public var sequences: [Int64?]

    public init(sequences: [Int64?]) { self.sequences = sequences }

    public var stored: Int { sequences.count { $0 != nil } }
    public var duplicates: Int { sequences.count { $0 == nil } }
}

/// A stored event as read back.
public struct StoredEvent: Sendable {
    /// Position in the store; newer events have larger numbers.
    public var sequence: Int64
    /// The normalised event, as JSON text.
    public var json: String

    public init(sequence: Int64, json: String) {
        self.sequence = sequence
        self.json = json
    }
}

/// A filter on one catalog field: `field=value`, the value given as text and read per the field's type.
public struct FieldFilter: Sendable, Hashable {
    public var field: String
    public var value: String

    public init(field: String, value: String) {
        self.field = field
        self.value = value
    }
}

/// Which events to list.
public struct EventQuery: Sendable {
    public var eventType: String?
    public var topic: String?
    public var tenantID: String?
    public var source: String?
    /// Event `timestamp` bounds, UTC microseconds: `since` inclusive, `until` exclusive.
    public var since: Int64?
    public var until: Int64?
    public var fields: [FieldFilter]
    /// At most this many events.
    public var limit: Int
    /// Only events with a sequence number below this (the previous page's last), for paging.
    public var before: Int64?
    /// Only events with a sequence number above this, oldest first (for following a stream).
    public var after: Int64?

    public init(
        eventType: String? = nil, topic: String? = nil, tenantID: String? = nil, source: String? = nil,
        since: Int64? = nil, until: Int64? = nil, fields: [FieldFilter] = [], limit: Int = 100,
        before: Int64? = nil, after: Int64? = nil
    ) {
        self.eventType = eventType
        self.topic = topic
        self.tenantID = tenantID
        self.source = source
        self.since = since
        self.until = until
        self.fields = fields
        self.limit = limit
        self.before = before
        self.after = after
    }
}

/// One page of events and where the next starts.
public struct EventPage: Sendable {
    public var events: [StoredEvent]
    /// The sequence number to pass as `before` for the next page, or `nil` at the end.
    public var nextBefore: Int64?

    public init(events: [StoredEvent], nextBefore: Int64?) {
        self.events = events
        self.nextBefore = nextBefore
    }
}

/// Which rejected events to list.
public struct RejectedQuery: Sendable {
    public var tenantID: String?
    public var eventType: String?
    public var code: String?
    public var limit: Int
    public var before: Int64?

    public init(tenantID: String? = nil, eventType: String? = nil, code: String? = nil, limit: Int = 100, before: Int64? = nil) {
        self.tenantID = tenantID
        self.eventType = eventType
        self.code = code
        self.limit = limit
        self.before = before
    }
}

/// One page of rejected events.
public struct RejectedPage: Sendable {
    public var rejected: [RejectedEvent]
    public var nextBefore: Int64?

    public init(rejected: [RejectedEvent], nextBefore: Int64?) {
        self.rejected = rejected
        self.nextBefore = nextBefore
    }
}
