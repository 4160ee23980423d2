import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif
import GRDBSQLite

extension SQLiteStore {
    /// What ``backup(from:to:progress:)`` copied.
    public struct BackupSummary: Sendable {
        /// Events and operations in the copy.
        public var events: Int
        public var operations: Int
        /// The copy's two files, in bytes.
        public var bytes: Int64
    }

    /// Copies the store at `path` (the events file and its operations file) to the store path
    /// `destination`, as it is at one moment, while a collector may go on writing to it.
    ///
    /// Each file is copied by `VACUUM INTO` from a read transaction of its own, so the copy is one
    /// consistent snapshot of it and the writer is never stopped (its checkpoints cannot pass the
    /// snapshot meanwhile: the log grows by what is written during the copy). The operations file
    /// goes first: its pairing watermark can then only trail the events copied, and the store
    /// that opens the copy pairs the rest, as after a crash. Each file is written under a
    /// temporary name, synced (`VACUUM INTO` syncs nothing), and renamed into place, so an
    /// interrupted backup leaves no file that looks whole.
    ///
    /// - Parameter progress: called now and then with the bytes written so far and the bytes
    ///   expected (the pages the two files use), from the calling thread.
    /// - Throws: ``StoreError`` (`store_unavailable`) when a file cannot be read or written, or a
    ///   destination file exists.
    public static func backup(from path: String, to destination: String, progress: @escaping (Int64, Int64) -> Void = { _, _ in })
        throws -> BackupSummary
    {
        let files = [(operationsPath(path), operationsPath(destination)), (path, destination)]
        for (source, target) in files {
            guard FileManager.default.fileExists(atPath: source) else {
                throw StoreError(.unavailable, "there is no store at \(source)")
            }
            guard !FileManager.default.fileExists(atPath: target) else {
                throw StoreError(.unavailable, "\(target) exists; a backup writes only new files")
            }
        }
        // Read-write connections, though they only read: a read-only one cannot open a WAL file
        // whose shared-memory index is missing (a store closed cleanly).
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let sources = try files.map { (source, _) in
            do {
                return try DatabaseQueue(path: source, configuration: configuration)
            } catch {
                throw StoreError(.unavailable, "cannot open \(source): \(error)", cause: error)
            }
        }
        // What the copies will hold: the pages in use, read before they start.
        let expected = try sources.reduce(Int64(0)) { total, queue in
            let pages = try queue.read { db in
                try Int64.fetchOne(
                    db,
                    sql: """
                        SELECT ((SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count()))
                            * (SELECT page_size FROM pragma_page_size())
                        """) ?? 0
            }
            return total + pages
        }
        var done: Int64 = 0
        for (index, (source, target)) in files.enumerated() {
            try copy(sources[index], from: source, to: target, counting: done, of: expected, progress: progress)
            done += Int64((try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0)
            progress(done, expected)
        }
        // What the copies hold, read back from them.
        let copies = try files.map { (_, target) in try DatabaseQueue(path: target, configuration: configuration) }
        let operations = try copies[0].read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM operations") ?? 0 }
        let events = try copies[1].read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0 }
        return BackupSummary(events: events, operations: operations, bytes: done)
    }

    /// SQLite's `PRAGMA integrity_check` of the file at `path` (a copy, closed): `ok` when it is
    /// sound, else its first problems.
    public static func integrityCheck(ofFile path: String) throws -> String {
        let answers = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check(5)") }
        return answers.joined(separator: "; ")
    }

    /// Copies the SQLite file `source` (any of the collector's: its key file too) to the new file
    /// `target` as ``backup(from:to:progress:)`` copies the store's.
    public static func backupFile(_ source: String, to target: String) throws {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw StoreError(.unavailable, "\(target) exists; a backup writes only new files")
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: source, configuration: configuration)
        } catch {
            throw StoreError(.unavailable, "cannot open \(source): \(error)", cause: error)
        }
        try copy(queue, from: source, to: target, counting: 0, of: 0) { _, _ in }
    }

    /// `VACUUM INTO` a temporary name beside `target`, synced, then renamed to `target` (and the
    /// folder synced), reporting the bytes written as the file grows.
    private static func copy(
        _ queue: DatabaseQueue, from source: String, to target: String, counting before: Int64, of expected: Int64,
        progress: @escaping (Int64, Int64) -> Void
    ) throws {
        let partial = target + ".part"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            try vacuum(queue, into: partial, counting: before, of: expected, progress: progress)
            try sync(partial)
            try FileManager.default.moveItem(atPath: partial, toPath: target)
            let folder = (target as NSString).deletingLastPathComponent
            try sync(folder.isEmpty ? "." : folder)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw StoreError(.unavailable, "cannot copy \(source) to \(target): \(error)", cause: error)
        }
    }

    /// `VACUUM INTO partial` from `queue`, reporting the bytes written as the file grows.
    private static func vacuum(
        _ queue: DatabaseQueue, into partial: String, counting before: Int64, of expected: Int64,
        progress: @escaping (Int64, Int64) -> Void
    ) throws {
        // Called by SQLite every 100,000 steps of its virtual machine: the file's size so far.
        var last = Date.distantPast
        let box = ProgressBox {
            guard Date().timeIntervalSince(last) >= 0.1 else { return }
            last = Date()
            let written = Int64((try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int) ?? 0)
            progress(before + written, expected)
        }
        try queue.inDatabase { db in
            let context = Unmanaged.passUnretained(box).toOpaque()
            sqlite3_progress_handler(
                db.sqliteConnection, 100_000,
                { context in
                    Unmanaged<ProgressBox>.fromOpaque(context!).takeUnretainedValue().report()
                    return 0
                }, context)
            defer { sqlite3_progress_handler(db.sqliteConnection, 0, nil, nil) }
            try db.execute(sql: "VACUUM INTO ?", arguments: [partial])
        }
        withExtendedLifetime(box) {}
    }

    /// Flushes `path` (a file or a folder) to the disk.
    private static func sync(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError(.unavailable, "cannot open \(path) to sync it: \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw StoreError(.unavailable, "cannot sync \(path): \(String(cString: strerror(errno)))") }
    }
}

/// The closure SQLite's progress handler calls, behind a pointer.
private final class ProgressBox {
    let report: () -> Void
    init(_ report: @escaping () -> Void) { self.report = report }
}
