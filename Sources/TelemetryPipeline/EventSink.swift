public import TelemetryStore

/// Where the ingest pipeline hands validated batches: the store's group-committing writer
/// (``IngestWriter``), or a Kafka producer. Either way `submit` returns only once the batch is
/// durable there (committed, or acknowledged by every broker that must), and throws a
/// ``StoreError`` when it is not, so that nothing is acknowledged that could still be lost.
public protocol EventSink: Sendable {
    /// Makes `batch` durable; the outcome has one entry per event (`nil` for a duplicate, when the
    /// sink can tell). The batch is handed over (`consuming`): a sink that merges batches moves
    /// their events instead of copying each.
    func submit(_ batch: consuming WriteBatch) async throws -> WriteOutcome

    /// Events accepted and not yet durable (a queue-depth gauge).
    var pendingEvents: Int { get }
}

extension IngestWriter: EventSink {}
