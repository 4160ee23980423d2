public import Logging
public import ServiceLifecycle
import Synchronization
public import TelemetryStore

/// The single writer of the store: requests submit their batches, and every batch waiting when the
/// store finishes a transaction goes into the next one together (group commit). Concurrent
/// requests thus share one commit (and one fsync) instead of queueing for one each, and each
/// request's acknowledgement waits only for the transaction that holds its events.
public final class IngestWriter: Service, Sendable {
    private struct Job {
        var batch: WriteBatch
        var continuation: CheckedContinuation<WriteOutcome, any Error>
    }

    private struct State {
        var pending: [Job] = []
        var pendingEvents = 0
        var stopped = false
    }

    private let store: any EventStore
    private let logger: Logger
    private let maxEventsPerTransaction: Int
    private let state = Mutex(State())
    private let doorbell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation
    private let onCommit: @Sendable (Int64) -> Void
    private let onTransaction: @Sendable (_ events: Int, _ nanoseconds: UInt64) -> Void

    /// Creates the writer.
    ///
    /// - Parameters:
    ///   - store: where batches are written.
    ///   - maxEventsPerTransaction: a transaction takes waiting batches until it holds this many
    ///     events (a single larger batch still goes in whole).
    ///   - onCommit: called after each commit with the newest stored sequence number.
    ///   - onTransaction: called after each committed transaction with its event count and duration.
    public init(
        store: any EventStore, logger: Logger, maxEventsPerTransaction: Int = 20_000,
        onCommit: @escaping @Sendable (Int64) -> Void = { _ in },
        onTransaction: @escaping @Sendable (_ events: Int, _ nanoseconds: UInt64) -> Void = { _, _ in }
    ) {
        self.onTransaction = onTransaction
        self.store = store
        self.logger = logger
        self.maxEventsPerTransaction = maxEventsPerTransaction
        self.onCommit = onCommit
        (doorbell, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Writes `batch` in the next transaction and returns once that transaction has committed.
    ///
    /// - Throws: ``StoreError`` when the transaction failed (nothing of the batch was stored), or
    ///   when the writer has stopped.
    public func submit(_ batch: consuming WriteBatch) async throws -> WriteOutcome {
        let count = batch.events.count
        // Moved into the job: the writer then holds the only reference to the events.
        var handed: WriteBatch? = .some(consume batch)
        return try await withCheckedThrowingContinuation { continuation in
            let accepted = state.withLock { state -> Bool in
                guard !state.stopped else { return false }
                state.pending.append(Job(batch: handed.take()!, continuation: continuation))
                state.pendingEvents += count
                return true
            }
            if accepted {
                ring.yield()
            } else {
                continuation.resume(throwing: StoreError(.unavailable, "the collector is shutting down"))
            }
        }
    }

    /// Events waiting for a transaction (a queue-depth gauge).
    public var pendingEvents: Int { state.withLock { $0.pendingEvents } }

    public func run() async throws {
        await withGracefulShutdownHandler {
            for await _ in doorbell {
                await drain()
                if state.withLock({ $0.stopped }) { break }
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopped = true }
            self.ring.yield()
        }
        // Whatever was accepted before the stop is still written.
        await drain()
        ring.finish()
    }

    private func drain() async {
        while true {
            let jobs = state.withLock { state -> [Job] in
                var taken: [Job] = []
                var events = 0
                while let job = state.pending.first, taken.isEmpty || events + job.batch.events.count <= maxEventsPerTransaction {
                    state.pending.removeFirst()
                    events += job.batch.events.count
                    taken.append(job)
                }
                state.pendingEvents -= events
                return taken
            }
            if jobs.isEmpty { return }
            await write(consume jobs)
        }
    }

    private func write(_ jobs: consuming [Job]) async {
        let counts = jobs.map(\.batch.events.count)
        // One batch is written as it is; several are moved into one, reserved once (copying
        // cost six retains an event here and six releases when the copies were freed).
        var merged = WriteBatch()
        if jobs.count == 1 {
            swap(&merged, &jobs[0].batch)
        } else {
            merged.events.reserveCapacity(counts.reduce(0, +))
            for index in jobs.indices {
                merged.events.appendMoving(&jobs[index].batch.events)
                merged.rejected += jobs[index].batch.rejected
            }
        }
        do {
            let started = ContinuousClock.now
            let outcome = try await store.write(merged)
            let elapsed = (ContinuousClock.now - started).components
            onTransaction(merged.events.count, UInt64(elapsed.seconds) * 1_000_000_000 + UInt64(elapsed.attoseconds / 1_000_000_000))
            var offset = 0
            for (job, count) in zip(jobs, counts) {
                job.continuation.resume(returning: WriteOutcome(sequences: Array(outcome.sequences[offset..<(offset + count)])))
                offset += count
            }
            if let newest = outcome.sequences.compactMap({ $0 }).max() { onCommit(newest) }
        } catch {
            logger.warning("ingest.transaction.failed", metadata: ["batch.count": "\(jobs.count)", "error": "\(error)"])
            for job in jobs { job.continuation.resume(throwing: error) }
        }
    }
}

extension Array {
    /// Moves every element of `other`, in order, to the end of this array, leaving `other`
    /// empty: no element is copied (for elements holding references, no retain or release). When
    /// `other` shares its storage, its elements are copied once first, as any mutation would.
    package mutating func appendMoving(_ other: inout [Element]) {
        if isEmpty && capacity <= other.count {
            swap(&self, &other)
            return
        }
        reserveCapacity(count + other.count)
        // Reversed through a buffer pointer, whose swaps move; Array's own reverse() copied each
        // element (a retain and a release of every reference it holds).
        other.withUnsafeMutableBufferPointer { $0.reverse() }
        while let element = other.popLast() { append(element) }
    }
}
