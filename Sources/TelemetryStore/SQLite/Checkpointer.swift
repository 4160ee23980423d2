import Foundation
import GRDBSQLite
import Logging

/// Copies the events file's write-ahead log back into the database on a thread of its own, so
/// that the events writer does not.
///
/// With SQLite's automatic checkpoint alone, the commit that takes the log past its threshold
/// copies every page of the log into the database and syncs it, on the writer's thread, while
/// every request waits. Here a second connection runs passive checkpoints (which never block the
/// writer nor readers) on the other core, after commits: every ~2,000 events, or a second after
/// fewer. The writer keeps its automatic checkpoint: by the time it fires, this thread has copied
/// nearly all of the log, so it copies only the newest frames; and only a checkpoint that catches
/// up right after a commit lets the writer's next transaction start the log again from its
/// beginning. A writer whose transactions follow each other back to back never starts one at such
/// a moment otherwise, and the log would grow without bound.
///
/// The checkpoints change nothing that is acknowledged: a checkpoint copies committed pages and
/// syncs the database file (at the connection's `synchronous` setting) before the log is reused.
final class Checkpointer: @unchecked Sendable {
    private let path: String
    private let synchronous: String
    private let logger: Logger
    private let condition = NSCondition()
    private var pending = false
    private var stopping = false
    private var running = false
    private let finished = DispatchSemaphore(value: 0)
    /// The thread's connection, opened by ``start()`` and used by the thread alone.
    private var connection: OpaquePointer?
    /// Frames copied into the database by this thread, and its checkpoints; guarded by the lock.
    private var framesCopied: Int64 = 0
    private var checkpoints = 0

    init(path: String, synchronous: String, logger: Logger) {
        self.path = path
        self.synchronous = synchronous
        self.logger = logger
    }

    /// Opens the thread's connection and starts the thread.
    func start() throws {
        var connection: OpaquePointer?
        let rc = sqlite3_open_v2(path, &connection, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let connection else {
            let message = connection.map { String(cString: sqlite3_errmsg($0)) } ?? "code \(rc)"
            sqlite3_close(connection)
            throw StoreError(.unavailable, "cannot open \(path) for checkpoints: \(message)")
        }
        // A first read opens the log (a connection learns that the file is in WAL mode from it;
        // older SQLite versions' checkpoints on a connection that has read nothing do nothing).
        sqlite3_exec(connection, "PRAGMA synchronous = \(synchronous); SELECT count(*) FROM sqlite_schema", nil, nil, nil)
        condition.lock()
        running = true
        self.connection = connection
        condition.unlock()
        let thread = Thread { [self] in
            StoreSupport.nameCurrentThread("store-checkpt")
            loop(connection: withLock { self.connection! })
            sqlite3_close(withLock { self.connection! })
            finished.signal()
        }
        thread.start()
    }

    /// A checkpoint runs once this many events were committed since the last one, or
    /// ``quietSeconds`` after the last one when fewer were: each checkpoint syncs the log and
    /// the database, so small commits (a few events a request) must not each cost two more
    /// syncs. `bench ingest`'s transactions hold ~2,000 events: one checkpoint each.
    static let eventsPerCheckpoint = 2_000
    static let quietSeconds = 1.0
    private var eventsSince = 0
    private var lastCheckpoint = ContinuousClock.now

    /// Called by the writer after each commit of `events` events.
    func committed(events: Int) {
        condition.lock()
        eventsSince += events
        pending = true
        if eventsSince >= Self.eventsPerCheckpoint { condition.signal() }
        condition.unlock()
    }

    /// Stops the thread (after the checkpoint it is running, if any) and closes its connection.
    func stop() {
        condition.lock()
        guard running, !stopping else {
            condition.unlock()
            return
        }
        stopping = true
        condition.signal()
        condition.unlock()
        finished.wait()
    }

    private func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    private func loop(connection: OpaquePointer) {
        while true {
            condition.lock()
            while !stopping {
                if pending && eventsSince >= Self.eventsPerCheckpoint { break }
                if pending {
                    // Fewer events than a checkpoint's worth: wait for more, or for quiet.
                    let due = lastCheckpoint + .seconds(Self.quietSeconds)
                    if ContinuousClock.now >= due { break }
                    _ = condition.wait(until: Date().addingTimeInterval(Self.quietSeconds))
                } else {
                    condition.wait()
                }
            }
            let stop = stopping
            pending = false
            eventsSince = 0
            lastCheckpoint = .now
            condition.unlock()
            if stop { return }
            var logFrames: Int32 = 0
            var copied: Int32 = 0
            let before = framesCopiedInLog
            let rc = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, &logFrames, &copied)
            switch rc {
            case SQLITE_OK:
                // `copied` counts the log's frames in the database, this checkpoint's and earlier
                // ones'; the log starts again from 0 when the writer restarts it.
                framesCopiedInLog = Int64(copied)
                condition.lock()
                framesCopied += Int64(copied) >= before ? Int64(copied) - before : Int64(copied)
                checkpoints += 1
                condition.unlock()
            case SQLITE_BUSY, SQLITE_LOCKED:
                // Another checkpoint runs (the writer's automatic one, another process's): it
                // copies the same frames.
                break
            default:
                // Disk full or an I/O error: the writer's own commits report it; try again after
                // the next commit.
                logger.warning(
                    "store.checkpoint.failed",
                    metadata: ["error.code": "\(rc)", "error.message": "\(String(cString: sqlite3_errmsg(connection)))"])
            }
        }
    }
    /// Frames of the current log known copied after the last checkpoint; used on the thread only.
    private var framesCopiedInLog: Int64 = 0

    /// Frames copied and checkpoints run so far.
    var statistics: (framesCopied: Int64, checkpoints: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (framesCopied, checkpoints)
    }
}
