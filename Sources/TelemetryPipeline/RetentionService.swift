public import Logging
public import ServiceLifecycle
public import TelemetryStore

/// Deletes events older than the retention period, in small transactions so that ingest never
/// waits long behind it.
public struct RetentionService: Service {
    let store: any EventStore
    let retentionMicros: Int64
    let interval: Duration
    let batchSize: Int
    let logger: Logger
    let now: @Sendable () -> Int64

    /// - Parameters:
    ///   - retention: how long events are kept, by their `timestamp`.
    ///   - interval: how often old events are looked for.
    ///   - batchSize: events deleted per transaction.
    ///   - now: the clock, UTC microseconds.
    public init(
        store: any EventStore, retention: Duration, interval: Duration = .seconds(60), batchSize: Int = 5_000,
        logger: Logger, now: @escaping @Sendable () -> Int64
    ) {
        self.store = store
        self.retentionMicros = retention.components.seconds * 1_000_000 + retention.components.attoseconds / 1_000_000_000_000
        self.interval = interval
        self.batchSize = batchSize
        self.logger = logger
        self.now = now
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            _ = await sweep()
            try? await Task.sleep(for: interval)
        }
    }

    /// Deletes every event older than the retention period; returns how many it deleted.
    public func sweep() async -> Int {
        let cutoff = now() - retentionMicros
        var total = 0
        while !Task.isCancelled {
            do {
                let deleted = try await store.deleteEvents(before: cutoff, limit: batchSize)
                total += deleted
                if deleted < batchSize { break }
                await Task.yield()
            } catch {
                logger.warning("retention.sweep.failed", metadata: ["error": "\(error)"])
                break
            }
        }
        if total > 0 { logger.info("retention.sweep", metadata: ["events.deleted": "\(total)"]) }
        return total
    }
}
