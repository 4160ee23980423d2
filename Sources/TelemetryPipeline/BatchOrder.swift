import Synchronization

/// A request that must follow another of its sender's was refused: the batch it follows was not
/// stored (it failed, or was refused), or did not arrive or finish within the wait. Nothing of the
/// request was taken; the sender sends the batch it follows first, then this one.
public struct OutOfOrder: Error, Sendable {
    public let message: String

    init(following key: BatchOrder.Key, _ why: String) {
        message = "batch \(key.batch), which this one follows, was not stored: \(why)"
    }
}

/// The order of a sender's batches when it has more than one request in flight.
///
/// A request may name its batch (`Telemetry-Batch`) and the batch it follows (`Telemetry-After`).
/// A request that follows another is validated at once, side by side with it, and is handed to
/// the store only after the batch it follows has been stored (its transaction committed), so a
/// sender's events are stored in the order it sent them, while its next batch is validated during
/// the commit of the one before. When the batch it follows was not stored, it is refused with
/// ``OutOfOrder``: a client that sees one of its requests fail then sees every later one fail too,
/// and sends them again in order.
///
/// Batch names belong to their sender (the API key; all keyless senders share one space), and a
/// bounded number of finished ones is remembered (``rememberedBatches``).
public final class BatchOrder: Sendable {
    /// A batch: who sent it and its name.
    public struct Key: Hashable, Sendable {
        public var sender: String
        public var batch: String

        public init(sender: String, batch: String) {
            self.sender = sender
            self.batch = batch
        }
    }

    private enum State {
        /// Named by a follower before it arrived.
        case expected
        case inProgress
        case stored
        case failed(String)
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Void, any Error>
        /// Refuses the waiter after ``BatchOrder/wait``; cancelled once it is answered.
        var timer: Task<Void, Never>
    }

    private struct Entry {
        var state: State
        var waiters: [Waiter] = []

        /// In progress or awaited: not to be forgotten.
        var isOpen: Bool {
            switch state {
            case .expected, .inProgress: true
            case .stored, .failed: false
            }
        }
    }

    private struct Table {
        var entries: [Key: Entry] = [:]
        /// Finished batches, oldest first (`head` onwards), for forgetting the oldest.
        var finished: [Key] = []
        var head = 0
        var nextWaiter = 0
    }

    private let table = Mutex(Table())
    /// How long a follower waits for the batch it follows to be stored.
    public let wait: Duration
    /// Finished batches remembered; a follower of one already forgotten waits out ``wait`` and is
    /// refused (its sender sends it again, in order).
    public let rememberedBatches: Int

    public init(wait: Duration = .seconds(10), rememberedBatches: Int = 10_000) {
        self.wait = wait
        self.rememberedBatches = rememberedBatches
    }

    /// A request naming `key` has begun.
    public func begin(_ key: Key) {
        table.withLock { table in
            if table.entries[key] == nil {
                table.entries[key] = Entry(state: .inProgress)
            } else {
                // Awaited before it arrived, or sent again: its followers wait for this attempt.
                table.entries[key]!.state = .inProgress
            }
        }
    }

    /// The request naming `key` has finished: `nil` when its batch was stored, else why not.
    public func finish(_ key: Key, failure: String?) {
        let waiters = table.withLock { table -> [Waiter] in
            let waiters = table.entries[key]?.waiters ?? []
            table.entries[key] = Entry(state: failure.map { .failed($0) } ?? .stored)
            table.finished.append(key)
            while table.finished.count - table.head > rememberedBatches {
                let oldest = table.finished[table.head]
                table.head += 1
                if let entry = table.entries[oldest], entry.waiters.isEmpty, !entry.isOpen {
                    table.entries[oldest] = nil
                }
            }
            if table.head > 4096, table.head * 2 > table.finished.count {
                table.finished.removeFirst(table.head)
                table.head = 0
            }
            return waiters
        }
        for waiter in waiters {
            waiter.timer.cancel()
            if let failure {
                waiter.continuation.resume(throwing: OutOfOrder(following: key, failure))
            } else {
                waiter.continuation.resume()
            }
        }
    }

    /// Returns once the batch `key` has been stored.
    ///
    /// - Throws: ``OutOfOrder`` when it failed, or was not stored within ``wait``.
    public func waitUntilStored(_ key: Key) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let wait = self.wait
            let answer = table.withLock { table -> Result<Void, OutOfOrder>? in
                let id = table.nextWaiter
                table.nextWaiter += 1
                switch table.entries[key]?.state {
                case .stored:
                    return .success(())
                case .failed(let why):
                    return .failure(OutOfOrder(following: key, why))
                case nil, .expected, .inProgress:
                    let timer = Task {
                        do { try await Task.sleep(for: wait) } catch { return }
                        self.timeOut(key, waiter: id)
                    }
                    table.entries[key, default: Entry(state: .expected)].waiters.append(
                        Waiter(id: id, continuation: continuation, timer: timer))
                    return nil
                }
            }
            if let answer { continuation.resume(with: answer.mapError { $0 as any Error }) }
        }
    }

    /// Refuses waiter `id` of `key` if it is still waiting.
    private func timeOut(_ key: Key, waiter id: Int) {
        let seconds = wait.components.seconds
        let refused = table.withLock { table -> (Waiter, String)? in
            guard var entry = table.entries[key], let index = entry.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            let waiter = entry.waiters.remove(at: index)
            let why: String
            if case .expected = entry.state {
                why = "no request naming it (Telemetry-Batch) arrived within \(seconds) s"
                // Nobody sent it: forget it once nobody waits for it.
                table.entries[key] = entry.waiters.isEmpty ? nil : entry
            } else {
                why = "it was not stored within \(seconds) s"
                table.entries[key] = entry
            }
            return (waiter, why)
        }
        if let (waiter, why) = refused {
            waiter.continuation.resume(throwing: OutOfOrder(following: key, why))
        }
    }

    /// Batches remembered, for tests: finished, in progress and awaited.
    package var count: Int { table.withLock { $0.entries.count } }

    /// Requests waiting for the batch they follow, for tests.
    package var waiting: Int { table.withLock { $0.entries.values.reduce(0) { $0 + $1.waiters.count } } }
}
