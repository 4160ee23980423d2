import Foundation
import GRDB
import GRDBSQLite
import TelemetryCatalog

/// Statistics of one event type over one time range that are asked together read the type's rows
/// once. The dashboard asks up to five of one type at once (a policy check's decisions, denials,
/// `eval_ms` and cache hits); on a store of 10 million events a day of one type is ~17,500 rows on
/// as many pages (rows are stored in arrival order), 60-90 ms to read each time, and a few
/// milliseconds to aggregate once in memory.
///
/// The first such query reads every typed column of the rows into memory (a *scan*); queries for
/// the same rows that come while it reads, or soon after, aggregate from it. Answers stay exact:
/// before each use, in the query's own read transaction, the scan takes in the events committed
/// since it was read (events are never changed, and sequence numbers grow with commits), and it is
/// read again when retention deleted events since (`sequence_floor.deleted`).
final class StatsScans: @unchecked Sendable {
    /// What a scan holds: the events of one type (of one tenant) in `since..<until`.
    struct Key: Hashable, Sendable {
        let eventType: String
        let since: Int64?
        let until: Int64?
        let tenant: String?
    }

    /// One column of a scan: each row's value as a code into the column's distinct values (code 0
    /// is NULL), so that a value many rows share (a tenant, a result, a model) is held, and made,
    /// once. A value may have more than one code (rows taken in later get codes of their own).
    struct Column: Sendable {
        var codes: [UInt32] = []
        var values: [DatabaseValue] = [.null]
    }

    /// The rows of one key, column by column, in the order of the plan's `scanFields`.
    struct Scan: Sendable {
        var columns: [Column]
        var times: [Int64]
        /// The newest sequence number of the events file when read, and its deletions count.
        var through: Int64
        var deleted: Int64
    }

    private enum Entry {
        case loading(Task<Scan?, any Error>)
        case ready(Scan, used: ContinuousClock.Instant)
        /// More rows than ``maxRows``: queries for it read the table themselves.
        case tooLarge(used: ContinuousClock.Instant)

        /// When it was last used; a scan being read counts as in use.
        func used(_ now: ContinuousClock.Instant) -> ContinuousClock.Instant {
            switch self {
            case .loading: now
            case .ready(_, let used), .tooLarge(let used): used
            }
        }
    }

    /// The most rows a scan holds (100,000: about 10 MB for the 20-odd columns of a type); 0
    /// turns scans off.
    let maxRows: Int
    /// How many scans were read (each serves every query of its key while it is kept).
    var reads: Int { withLock { readCount } }
    private var readCount = 0
    /// The most events committed since a scan was read that are taken into it; beyond, it is read again.
    static let maxCatchUp: Int64 = 50_000
    /// How long an unused scan is kept.
    let keep: Duration
    /// The most scans kept.
    static let maxEntries = 16
    /// The most rows all kept scans hold together, in scans of the most rows: the least recently
    /// used go first (about 100 MB at the default 100,000).
    static let heldScans = 4

    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    private let clock = ContinuousClock()

    init(maxRows: Int, keep: Duration = .seconds(10)) {
        self.maxRows = maxRows
        self.keep = keep
    }

    /// The scan for `key`: the one held, the one being read, or one read now by `load` (`nil`
    /// from it: too many rows). `nil` when the rows are too many to hold.
    func scan(_ key: Key, load: @escaping @Sendable () async throws -> Scan?) async throws -> Scan? {
        enum Found {
            case scan(Scan?)
            case task(Task<Scan?, any Error>, loads: Bool)
        }
        let found: Found = withLock {
            let now = clock.now
            entries = entries.filter { now - $0.value.used(now) < keep }
            switch entries[key] {
            case .ready(let scan, _)?:
                entries[key] = .ready(scan, used: now)
                return .scan(scan)
            case .tooLarge?:
                entries[key] = .tooLarge(used: now)
                return .scan(nil)
            case .loading(let running)?:
                return .task(running, loads: false)
            case nil:
                if entries.count >= Self.maxEntries, let oldest = entries.min(by: { $0.value.used(now) < $1.value.used(now) }) {
                    entries[oldest.key] = nil
                }
                let task = Task { try await load() }
                entries[key] = .loading(task)
                readCount += 1
                return .task(task, loads: true)
            }
        }
        let task: Task<Scan?, any Error>
        let loads: Bool
        switch found {
        case .scan(let scan): return scan
        case .task(let running, let loading): (task, loads) = (running, loading)
        }
        do {
            let scan = try await task.value
            if loads {
                withLock {
                    entries[key] = scan.map { .ready($0, used: clock.now) } ?? .tooLarge(used: clock.now)
                    evictBeyondBudget(keeping: key)
                }
            }
            return scan
        } catch {
            if loads { withLock { entries[key] = nil } }
            throw error
        }
    }

    /// Keeps `scan`, brought up to date by a query, unless a newer one is kept already.
    func update(_ key: Key, _ scan: Scan) {
        withLock {
            if case .ready(let held, _)? = entries[key], held.through >= scan.through { return }
            if case .loading? = entries[key] { return }
            entries[key] = .ready(scan, used: clock.now)
            evictBeyondBudget(keeping: key)
        }
    }

    /// Forgets the least recently used scans but `key`'s while all hold more than the budget.
    /// Called with the lock held.
    private func evictBeyondBudget(keeping key: Key) {
        func rows(_ entry: Entry) -> Int {
            if case .ready(let scan, _) = entry { scan.times.count } else { 0 }
        }
        var held = entries.values.reduce(0) { $0 + rows($1) }
        let now = clock.now
        while held > maxRows * Self.heldScans,
            let oldest = entries.filter({ $0.key != key && rows($0.value) > 0 }).min(by: { $0.value.used(now) < $1.value.used(now) })
        {
            held -= rows(oldest.value)
            entries[oldest.key] = nil
        }
    }

    /// Forgets the scan of `key` (retention deleted events since it was read).
    func remove(_ key: Key) {
        withLock {
            if case .loading? = entries[key] { return }
            entries[key] = nil
        }
    }

    private func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

extension SQLiteStore {
    /// Answers a stats query of events of one type from the shared scan of its rows (see
    /// ``StatsScans``); `nil` when the rows are too many to hold in memory.
    func statsFromScan(_ key: StatsScans.Key, _ plan: StatsPlan) async throws -> [StatsGroup]? {
        for _ in 0..<2 {
            guard let scan = try await statsScans.scan(key, load: { [self] in try await self.readScan(key, plan) }) else {
                return nil
            }
            // In the query's own read transaction: what was committed before it began is counted.
            let answer: (groups: [StatsGroup], caughtUp: StatsScans.Scan?)? = try await read { db in
                let (newest, deleted) = try Self.scanState(db)
                guard deleted == scan.deleted, newest - scan.through <= StatsScans.maxCatchUp else { return nil }
                var current = scan
                var caughtUp: StatsScans.Scan? = nil
                if newest > scan.through {
                    try Self.readRows(
                        of: key, plan, since: key.since, until: key.until, after: scan.through, through: newest, into: &current, db)
                    current.through = newest
                    caughtUp = current
                }
                return (try Self.aggregate(plan, current), caughtUp)
            }
            if let answer {
                if let caughtUp = answer.caughtUp { statsScans.update(key, caughtUp) }
                return answer.groups
            }
            statsScans.remove(key)
        }
        return nil
    }

    /// Reads the rows of `key` into a new scan; `nil` beyond ``StatsScans/maxRows``. A bounded
    /// range is read in parts, one a core, side by side (while one query reads a scan, the
    /// others asking for it only wait), each up to the same newest sequence number.
    private func readScan(_ key: StatsScans.Key, _ plan: StatsPlan) async throws -> StatsScans.Scan? {
        let maxRows = statsScans.maxRows
        let (newest, deleted) = try await read { db in try Self.scanState(db) }
        var ranges: [(since: Int64?, until: Int64?)] = [(key.since, key.until)]
        if let since = key.since, let until = key.until, until > since {
            let parts = Int64(max(1, min(4, ProcessInfo.processInfo.activeProcessorCount)))
            let width = max(1, (until - since + parts - 1) / parts)
            ranges = stride(from: since, to: until, by: Int(width)).map { ($0, min(until, $0 + width)) }
        }
        let parts = try await withThrowingTaskGroup(of: (Int, StatsScans.Scan?).self) { group in
            for (index, range) in ranges.enumerated() {
                group.addTask { [self] in
                    let part = try await read { db in
                        var part = StatsScans.Scan(
                            columns: Array(repeating: StatsScans.Column(), count: plan.scanFields.count), times: [], through: newest,
                            deleted: deleted)
                        let complete = try Self.readRows(
                            of: key, plan, since: range.since, until: range.until, after: nil, through: newest, into: &part, maxRows: maxRows, db)
                        return complete ? part : nil
                    }
                    return (index, part)
                }
            }
            var parts = [StatsScans.Scan?](repeating: nil, count: ranges.count)
            for try await (index, part) in group { parts[index] = part }
            return parts
        }
        // Joined in time order; each part's codes follow the values of those before it.
        guard var scan = parts.first ?? nil else { return nil }
        for part in parts.dropFirst() {
            guard let part, scan.times.count + part.times.count <= maxRows else { return nil }
            scan.times += part.times
            for column in scan.columns.indices {
                let offset = UInt32(scan.columns[column].values.count - 1)
                scan.columns[column].codes += part.columns[column].codes.map { $0 == 0 ? 0 : $0 + offset }
                scan.columns[column].values += part.columns[column].values.dropFirst()
            }
        }
        return scan
    }

    /// The newest sequence number and how many events retention has deleted.
    private static func scanState(_ db: Database) throws -> (newest: Int64, deleted: Int64) {
        let row = try Row.fetchOne(db, sql: "SELECT (SELECT max(_seq) FROM events), (SELECT deleted FROM sequence_floor)")
        return (row?[0] ?? 0, row?[1] ?? 0)
    }

    /// Appends the rows of `key` in `since..<until` with sequence numbers in `(after, through]`
    /// (all of them up to `through` when `after` is `nil`) to `scan`; false when they would be
    /// more than `maxRows`.
    @discardableResult
    private static func readRows(
        of key: StatsScans.Key, _ plan: StatsPlan, since: Int64?, until: Int64?, after: Int64?, through: Int64,
        into scan: inout StatsScans.Scan, maxRows: Int = .max, _ db: Database
    ) throws -> Bool {
        var conditions = ["event_type = ?", "_seq <= ?"]
        var arguments: [DatabaseValue] = [key.eventType.databaseValue, through.databaseValue]
        if let after {
            conditions.append("_seq > ?")
            arguments.append(after.databaseValue)
        }
        if let since {
            conditions.append("\"timestamp\" >= ?")
            arguments.append(since.databaseValue)
        }
        if let until {
            conditions.append("\"timestamp\" < ?")
            arguments.append(until.databaseValue)
        }
        if let tenant = key.tenant {
            conditions.append("tenant_id = ?")
            arguments.append(uuidValue(tenant).databaseValue)
        }
        // Catching up walks the few newest rows by sequence; a first read goes through the
        // (event_type, timestamp) index.
        let sql = """
            SELECT "timestamp"\(plan.scanFields.map { ", " + $0.sql }.joined())
            FROM events \(after == nil ? "INDEXED BY events_by_type_time" : "NOT INDEXED")
            WHERE \(conditions.joined(separator: " AND "))
            """
        let statement = try db.makeStatement(sql: sql)
        try statement.setArguments(StatementArguments(arguments))
        let stmt = statement.sqliteStatement
        var interners = Array(repeating: Interner(), count: plan.scanFields.count)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return true }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
            if scan.times.count >= maxRows { return false }
            scan.times.append(sqlite3_column_int64(stmt, 0))
            for column in interners.indices {
                let code = interners[column].code(stmt, Int32(column + 1), &scan.columns[column].values)
                scan.columns[column].codes.append(code)
            }
        }
    }

    /// Gives each value read its code in a column, without making a value for one seen already:
    /// an open-addressing table of codes by a hash of SQLite's bytes (Swift's dictionaries hash
    /// with SipHash, which made up a sixth of a scan's time).
    private struct Interner {
        private var hashes = [UInt64](repeating: 0, count: 64)
        private var codes = [UInt32](repeating: 0, count: 64)
        private var count = 0

        mutating func code(_ stmt: SQLiteStatement, _ index: Int32, _ values: inout [DatabaseValue]) -> UInt32 {
            let type = sqlite3_column_type(stmt, index)
            let hash: UInt64
            var integer: Int64 = 0
            var double: Double = 0
            var raw = UnsafeRawBufferPointer(start: nil, count: 0)
            switch type {
            case SQLITE_NULL:
                return 0
            case SQLITE_INTEGER:
                integer = sqlite3_column_int64(stmt, index)
                hash = Self.mix(UInt64(bitPattern: integer) &+ 1)
            case SQLITE_FLOAT:
                double = sqlite3_column_double(stmt, index)
                hash = Self.mix(double.bitPattern &+ 2)
            default:
                let start = type == SQLITE_TEXT ? UnsafeRawPointer(sqlite3_column_text(stmt, index)) : sqlite3_column_blob(stmt, index)
                raw = UnsafeRawBufferPointer(start: start, count: Int(sqlite3_column_bytes(stmt, index)))
                hash = Self.hash(raw, seed: UInt64(type))
            }
            let tag = hash | 1  // 0 marks an empty slot
            let mask = hashes.count - 1
            var slot = Int(truncatingIfNeeded: hash >> 7) & mask
            while hashes[slot] != 0 {
                if hashes[slot] == tag {
                    let known = codes[slot]
                    let same: Bool =
                        switch (values[Int(known)].storage, type) {
                        case (.int64(let v), SQLITE_INTEGER): v == integer
                        case (.double(let v), SQLITE_FLOAT): v.bitPattern == double.bitPattern
                        case (.string(var text), SQLITE_TEXT):
                            text.withUTF8 { $0.count == raw.count && (raw.isEmpty || memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0) }
                        case (.blob(let data), SQLITE_BLOB):
                            data.count == raw.count && data.withUnsafeBytes { raw.isEmpty || memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 }
                        default: false
                        }
                    if same { return known }
                }
                slot = (slot + 1) & mask
            }
            values.append(DatabaseValue(sqliteStatement: stmt, index: index))
            let code = UInt32(values.count - 1)
            hashes[slot] = tag
            codes[slot] = code
            count += 1
            if count * 2 > hashes.count { grow() }
            return code
        }

        private mutating func grow() {
            let (oldHashes, oldCodes) = (hashes, codes)
            hashes = [UInt64](repeating: 0, count: oldHashes.count * 2)
            codes = [UInt32](repeating: 0, count: oldHashes.count * 2)
            let mask = hashes.count - 1
            for (tag, code) in zip(oldHashes, oldCodes) where tag != 0 {
                var slot = Int(truncatingIfNeeded: tag >> 7) & mask
                while hashes[slot] != 0 { slot = (slot + 1) & mask }
                hashes[slot] = tag
                codes[slot] = code
            }
        }

        private static func mix(_ x: UInt64) -> UInt64 {
            var z = x &* 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        private static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
            var h = mix(seed &+ UInt64(bytes.count))
            var offset = 0
            while offset + 8 <= bytes.count {
                h = mix(h ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                offset += 8
            }
            if offset < bytes.count {
                var tail: UInt64 = 0
                for i in offset..<bytes.count { tail = tail << 8 | UInt64(bytes[i]) }
                h = mix(h ^ tail)
            }
            return h
        }
    }

    /// The plan's aggregates over the rows of a scan that pass its filters. Rows are told apart
    /// by their columns' codes, turned into values once for each group.
    private static func aggregate(_ plan: StatsPlan, _ scan: StatsScans.Scan) throws -> [StatsGroup] {
        var position: [String: Int] = [:]
        for (index, field) in plan.scanFields.enumerated() { position[field.name] = index }
        // For each filter, whether each code passes.
        let filters = plan.fieldFilters.map { filter in
            let column = scan.columns[position[filter.name]!]
            return (codes: column.codes, passes: column.values.map { matches($0, filter.value) })
        }
        // Group columns' codes mapped to one code per distinct value.
        let groups = plan.groups.map { group in
            let column = scan.columns[position[group.name]!]
            var first: [DatabaseValue: UInt32] = [:]
            let canonical = column.values.enumerated().map { code, value in
                if let known = first[value] { return known }
                first[value] = UInt32(code)
                return UInt32(code)
            }
            return (codes: column.codes, canonical: canonical, values: column.values)
        }
        let value = plan.valueName.map { name in
            let column = scan.columns[position[name]!]
            return (codes: column.codes, numbers: column.values.map { Double.fromDatabaseValue($0) })
        }
        struct RowKey: Hashable {
            var codes: UInt64 = 0
            var bucket: Int64 = 0
            var more: [UInt32] = []
        }
        var aggregation = Aggregation(plan)
        var positions: [RowKey: Int] = [:]
        rows: for row in scan.times.indices {
            for filter in filters where !filter.passes[Int(filter.codes[row])] { continue rows }
            var key = RowKey()
            for (g, group) in groups.enumerated() {
                let code = group.canonical[Int(group.codes[row])]
                if g < 2 { key.codes |= UInt64(code) << (32 * UInt64(g)) } else { key.more.append(code) }
            }
            if let interval = plan.intervalMicros { key.bucket = (scan.times[row] / interval) * interval }
            let at: Int
            if let known = positions[key] {
                at = known
            } else {
                var groupValues = groups.map { $0.values[Int($0.canonical[Int($0.codes[row])])] }
                if plan.intervalMicros != nil { groupValues.append(key.bucket.databaseValue) }
                at = try aggregation.position(of: groupValues)
                positions[key] = at
            }
            aggregation.add(at: at, value: value.flatMap { $0.numbers[Int($0.codes[row])] }, time: scan.times[row])
        }
        return aggregation.groups()
    }

    /// `column = value` as SQLite compares a stored value with a bound one (an integer equals
    /// the same number stored as a real).
    private static func matches(_ stored: DatabaseValue, _ value: DatabaseValue) -> Bool {
        switch (stored.storage, value.storage) {
        case (.int64(let a), .double(let b)): Double(a) == b
        case (.double(let a), .int64(let b)): a == Double(b)
        case (.null, _), (_, .null): false
        default: stored == value
        }
    }
}

extension SQLiteStore {
    /// How many shared stats scans were read since the store opened (see ``StatsScans``).
    package var statsScansRead: Int { statsScans.reads }
}
