import Foundation
import GRDBSQLite

/// CPU seconds (user and system, every thread) this process has used so far.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The benchmarks' SQLite baseline: every NDJSON line of `batches` appended into a plain (rowid,
/// blob) table in WAL mode, one transaction per batch, with `fsync` (full or normal) as SQLite's
/// synchronous setting. Returns the seconds it took.
func sqliteAppendBaseline(_ batches: [[UInt8]], path: String, fsync: String) throws -> Double {
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

