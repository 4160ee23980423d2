import Foundation
import GRDB
import GRDBSQLite

/// CPU seconds (user and system, every thread) this process has used so far.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// How the benchmarks' SQLite baseline appends its rows. Both append every NDJSON line into a plain
/// (rowid, blob) table in WAL mode, one transaction per batch; they differ in the code in between.
enum AppendBaseline: String, CaseIterable {
    /// SQLite's C API: one prepared statement, each line bound in place, no copy and no Swift
    /// value made a row. The strictest: about as fast as SQLite appends at all (~250k rows/s,
    /// ~200 MiB/s of these events on the 2-core machine).
    case cAPI = "C API"
    /// GRDB's `Database.execute(sql:arguments:)`, a row at a time with the line as `Data`: the
    /// baseline of the collector issue, which measured it with GRDB ("append in rowid order ~105k
    /// rows/s", "about 85-95 MiB/s on this machine"); it measures ~115k rows/s, ~91 MiB/s here.
    case grdb = "GRDB"
}

/// The benchmarks' SQLite baseline: every NDJSON line of `batches` appended into a plain (rowid,
/// blob) table in WAL mode, one transaction per batch, with `fsync` (full or normal) as SQLite's
/// synchronous setting, through `way`.
/// Returns the seconds it took and the CPU seconds this process used meanwhile (every thread). The
/// table is checked afterwards, untimed: a baseline that stored less would flatter nothing.
func sqliteAppendBaseline(_ batches: [[UInt8]], path: String, fsync: String, through way: AppendBaseline = .cAPI) throws
    -> (seconds: Double, cpuSeconds: Double)
{
    let cpuBefore = processCPUSeconds()
    let seconds =
        switch way {
        case .cAPI: try cAPIAppend(batches, path: path, fsync: fsync)
        case .grdb: try grdbAppend(batches, path: path, fsync: fsync)
        }
    let cpuSeconds = processCPUSeconds() - cpuBefore
    let lines = batches.reduce(0) { $0 + $1.lazy.filter { $0 == UInt8(ascii: "\n") }.count }
    let bytes = batches.reduce(0) { $0 + $1.count } - lines
    let stored = try DatabaseQueue(path: path).read { db in
        try Row.fetchOne(db, sql: "SELECT count(*), COALESCE(sum(length(body)), 0) FROM events").map { ($0[0] as Int, $0[1] as Int) }
    }
    guard let stored, stored == (lines, bytes) else {
        throw CommandFailure("the \(way.rawValue) baseline stored \(stored.map { "\($0.0) rows of \($0.1) bytes" } ?? "nothing") of \(lines) lines of \(bytes) bytes")
    }
    return (seconds, cpuSeconds)
}

private func cAPIAppend(_ batches: [[UInt8]], path: String, fsync: String) throws -> Double {
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK, let db else { throw CommandFailure("cannot open \(path)") }
    defer { sqlite3_close(db) }
    func exec(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw CommandFailure("baseline: \(String(cString: sqlite3_errmsg(db)))")
        }
    }
    try exec("PRAGMA journal_mode = WAL")
    try exec("PRAGMA synchronous = \(fsync.uppercased())")
    try exec("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    var statement: OpaquePointer?
    sqlite3_prepare_v2(db, "INSERT INTO events (body) VALUES (?)", -1, &statement, nil)
    defer { sqlite3_finalize(statement) }
    let started = MonotonicClock.now()
    for batch in batches {
        try exec("BEGIN")
        batch.withUnsafeBytes { raw in
            var start = 0
            for i in 0..<raw.count where raw[i] == UInt8(ascii: "\n") {
                sqlite3_bind_blob(statement, 1, raw.baseAddress! + start, Int32(i - start), nil)
                sqlite3_step(statement)
                sqlite3_reset(statement)
                start = i + 1
            }
        }
        try exec("COMMIT")
    }
    return Double(MonotonicClock.now() - started) / 1e9
}

private func grdbAppend(_ batches: [[UInt8]], path: String, fsync: String) throws -> Double {
    var configuration = Configuration()
    let synchronous = fsync.uppercased()
    configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
    // A pool opens the file in WAL mode.
    let pool = try DatabasePool(path: path, configuration: configuration)
    defer { try? pool.close() }
    try pool.write { db in try db.execute(sql: "CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
    let started = MonotonicClock.now()
    for batch in batches {
        try pool.write { db in
            var start = 0
            for i in batch.indices where batch[i] == UInt8(ascii: "\n") {
                try db.execute(sql: "INSERT INTO events (body) VALUES (?)", arguments: [Data(batch[start..<i])])
                start = i + 1
            }
        }
    }
    return Double(MonotonicClock.now() - started) / 1e9
}
