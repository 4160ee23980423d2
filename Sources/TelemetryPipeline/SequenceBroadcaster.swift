import Synchronization

/// Tells every subscriber (live streams) the newest stored sequence number after each commit.
public final class SequenceBroadcaster: Sendable {
    private let subscribers = Mutex<[Int: AsyncStream<Int64>.Continuation]>([:])
    private let nextID = Atomic<Int>(0)

    public init() {}

    /// Publishes `sequence` to every subscriber; slow subscribers see only the newest.
    public func publish(_ sequence: Int64) {
        subscribers.withLock { subscribers in
            for continuation in subscribers.values { continuation.yield(sequence) }
        }
    }

    /// A stream of newest sequence numbers, from now until the stream is dropped.
    public func subscribe() -> AsyncStream<Int64> {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: Int64.self, bufferingPolicy: .bufferingNewest(1))
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        subscribers.withLock { $0[id] = continuation }
        return stream
    }

    /// Number of live subscribers.
    public var count: Int { subscribers.withLock { $0.count } }
}
