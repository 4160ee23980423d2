import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization
import TelemetryCatalog

/// The dedupe index of `event_id`, in two levels, so that random (v4) ids do not each change a
/// page of their own of an ever-growing index.
///
/// A unique index on the events table costs one changed page an event once it holds many more
/// pages than a transaction has ids (`bench store --preload`: 83k events/s into an empty store,
/// ~50k from a million events on, against ~100k with no id index at all). Here:
///
/// - the newest ids (up to ``SQLiteStoreConfiguration/recentIDs``) are held in memory only, in
///   64 slices by their first 6 bits: they are already in the events table, which is their
///   durable record, and are read from it again when the store opens;
/// - older ids are in `event_ids (event_id PRIMARY KEY, seq)`. When memory holds more than its
///   bound, a transaction also moves the next slices, round robin, into that table: each slice is
///   a 64th of the key space, so a slice's ids change a few neighbouring pages each instead of a
///   random page each. `event_id_slices` records, for each slice, the sequence number through which
///   its ids are in the table (written in the same transaction). An id above the largest in the
///   table (time-ordered UUIDv7 ids, the SDK's) is appended to it at once instead;
/// - a Bloom filter over every id this index has taken in answers "certainly not stored" for new
///   ids without reading the table; a possible hit is checked in `event_ids`. It is built from the
///   table on a thread of its own when the store opens (~1 s for 2 million ids), and until then
///   every id that is not in memory is looked up in the table.
///
/// The writer calls ``prepare(_:)`` at the start of each write transaction, ``isStored(_:_:)``
/// for each id, and ``record(_:_:)`` before it commits; ``committed()`` after the commit and
/// ``invalidate()`` when the transaction failed. Another connection that wrote to the file (a
/// `consume` beside a collector) changes SQLite's `data_version`, and ``prepare(_:)`` then reads
/// the index again from the tables. Readers look in memory (``recentSequence(of:)``), then in
/// the table (``mergedSequence(of:_:)``).
final class EventIDIndex: Sendable {
    static let sliceCount = 64

    static func slice(of id: UUIDValue) -> Int { Int(id.high >> 58) }

    private struct State {
        var recent = [[UUIDValue: Int64]](repeating: [:], count: EventIDIndex.sliceCount)
        var recentCount = 0
        /// For each slice, the sequence number through which its ids are in `event_ids`.
        var through = [Int64](repeating: 0, count: EventIDIndex.sliceCount)
        /// Where the round robin of merges goes on.
        var nextSlice = 0
        /// Slices merged by the transaction being committed: their ids at or below `through` leave memory.
        var merged: [Int] = []
        var filter = IDFilter()
        /// The newest sequence number this index has taken in.
        var known: Int64 = 0
        /// The largest id in `event_ids` (nil when it is empty): a new id above it is appended to
        /// the table at once instead of waiting in memory.
        var largestMerged: UUIDValue? = nil
        var dataVersion: Int64 = -1
        /// False until loaded, and after a failed transaction: ``prepare(_:)`` reads the tables again.
        var valid = false
        /// A reader asked the writer to load the index again (``claimRefresh()``).
        var refreshClaimed = false
    }

    private let state = Mutex(State())
    /// The thread that builds the filter: asked to stop, and waited for, when the store closes.
    private let build = FilterBuild()
    /// Ids held in memory past which a transaction merges slices into `event_ids`.
    let memoryBound: Int

    init(memoryBound: Int) {
        self.memoryBound = max(1, memoryBound)
    }

    // MARK: writer

    /// Loads the index, or loads it again when another connection wrote since this one's last
    /// transaction or a transaction failed. Call inside the write transaction.
    func prepare(_ db: Database) throws {
        let version = try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0
        try state.withLock { state in
            state.refreshClaimed = false
            if state.valid && state.dataVersion == version { return }
            try Self.load(&state, db)
            state.dataVersion = version
            state.valid = true
        }
    }

    /// Whether `id` is already stored: in memory, or (when the filter may hold it) in `event_ids`.
    /// `probe` is `SELECT 1 FROM event_ids WHERE event_id = ?` on the writer's connection.
    func isStored(_ id: UUIDValue, _ probe: SQLiteStatement) throws -> Bool {
        enum Answer { case stored, absent, maybe }
        let answer = state.withLock { state -> Answer in
            // The filter holds every id of memory too: a new id is told by it alone.
            guard state.filter.mayContain(id) else { return .absent }
            return state.recent[Self.slice(of: id)][id] != nil ? .stored : .maybe
        }
        switch answer {
        case .stored: return true
        case .absent: return false
        case .maybe:
            sqlite3_reset(probe)
            id.withBytes { _ = sqlite3_bind_blob(probe, 1, $0.baseAddress, 16, transient) }
            let rc = sqlite3_step(probe)
            sqlite3_reset(probe)
            guard rc == SQLITE_ROW || rc == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errstr(rc)))
            }
            return rc == SQLITE_ROW
        }
    }

    /// Takes in the ids a transaction stored (`(id, sequence)` in ascending id order, as the writer
    /// inserts them) and, when memory
    /// holds more than its bound, writes the next slices into `event_ids`. Call inside the
    /// transaction, after the inserts. Memory changes only once the writes succeeded.
    func record(_ stored: [(id: UUIDValue, sequence: Int64)], _ db: Database) throws {
        guard let newest = stored.lazy.map(\.sequence).max() else { return }
        // Ids above the table's largest go to its end at once: time-ordered ids (UUIDv7, the SDK's)
        // are an append there, as they were to a unique index, and need no place in memory. The
        // others wait in memory for their slice's merge.
        var largest = state.withLock { $0.largestMerged }
        var appended: [(id: UUIDValue, sequence: Int64)] = []
        var added = [[(id: UUIDValue, sequence: Int64)]](repeating: [], count: Self.sliceCount)
        assert(zip(stored, stored.dropFirst()).allSatisfy { $0.id < $1.id }, "record takes ids in ascending order")
        for entry in stored {
            if largest.map({ entry.id > $0 }) ?? true {
                appended.append(entry)
                largest = entry.id
            } else {
                added[Self.slice(of: entry.id)].append(entry)
            }
        }
        let waiting = stored.count - appended.count
        // The slices to merge, round robin, until what stays in memory is within the bound.
        let (merged, nextSlice, known) = state.withLock { state -> ([(slice: Int, ids: [(UUIDValue, Int64)])], Int, Int64) in
            var merged: [(slice: Int, ids: [(UUIDValue, Int64)])] = []
            var remaining = state.recentCount + waiting
            var slice = state.nextSlice
            while remaining > memoryBound && merged.count < Self.sliceCount {
                let ids = state.recent[slice].map { ($0.key, $0.value) } + added[slice].map { ($0.id, $0.sequence) }
                remaining -= ids.count
                merged.append((slice, ids))
                slice = (slice + 1) % Self.sliceCount
            }
            // A slice with nothing in memory has every id in the table: its mark moves up too (now
            // and then), or time-ordered ids, which never wait in memory, would leave the marks
            // behind, and the store would read back all that came since at open.
            let known = max(state.known, newest)
            for idle in 0..<Self.sliceCount
            where state.recent[idle].isEmpty && added[idle].isEmpty && known - state.through[idle] > Int64(memoryBound)
                && !merged.contains(where: { $0.slice == idle })
            {
                merged.append((idle, []))
            }
            return (merged, slice, known)
        }
        let insert = try db.cachedStatement(sql: "INSERT OR REPLACE INTO event_ids (event_id, seq) VALUES (?, ?)").sqliteStatement
        func put(_ id: UUIDValue, _ sequence: Int64) throws {
            sqlite3_reset(insert)
            id.withBytes { _ = sqlite3_bind_blob(insert, 1, $0.baseAddress, 16, transient) }
            sqlite3_bind_int64(insert, 2, sequence)
            try Self.step(insert)
        }
        for (id, sequence) in appended { try put(id, sequence) }
        if !merged.isEmpty {
            let mark = try db.cachedStatement(sql: "UPDATE event_id_slices SET through = ? WHERE slice = ?").sqliteStatement
            for (slice, ids) in merged {
                // In key order: the slice's pages of the table are walked forwards once.
                for (id, sequence) in ids.sorted(by: { $0.0 < $1.0 }) { try put(id, sequence) }
                sqlite3_reset(mark)
                sqlite3_bind_int64(mark, 1, known)
                sqlite3_bind_int64(mark, 2, Int64(slice))
                try Self.step(mark)
            }
        }
        state.withLock { state in
            for (slice, entries) in added.enumerated() {
                for (id, sequence) in entries { state.recent[slice][id] = sequence }
            }
            for (id, _) in stored { state.filter.add(id) }
            state.recentCount += waiting
            state.known = known
            state.largestMerged = largest
            for (slice, _) in merged { state.through[slice] = known }
            if !merged.isEmpty { state.nextSlice = nextSlice }
            // Added to, not replaced: a second writer's transaction may come before this one's commit.
            state.merged += merged.map(\.slice)
        }
    }

    /// The transaction committed: the ids of the slices it merged leave memory (only now, so that a
    /// reader finds an id in memory or in the table at any moment).
    func committed() {
        state.withLock { state in
            for s in state.merged {
                let through = state.through[s]
                let before = state.recent[s].count
                if state.recent[s].values.contains(where: { $0 > through }) {
                    state.recent[s] = state.recent[s].filter { $0.value > through }
                } else {
                    // The usual case (one writer): the whole slice was merged; keep its storage.
                    state.recent[s].removeAll(keepingCapacity: true)
                }
                state.recentCount -= before - state.recent[s].count
            }
            state.merged = []
        }
    }

    /// The transaction failed: what memory took in may not be stored. The next ``prepare(_:)``
    /// reads the tables again.
    func invalidate() {
        state.withLock { state in
            state.valid = false
            state.merged = []
        }
    }

    /// Retention deleted these events (inside its transaction): their ids leave the table and
    /// memory, so that the same id sent again is stored again, as it would be were it never sent.
    func remove(_ deleted: [UUIDValue], _ db: Database) throws {
        guard !deleted.isEmpty else { return }
        let delete = try db.cachedStatement(sql: "DELETE FROM event_ids WHERE event_id = ?").sqliteStatement
        for id in deleted.sorted() {
            sqlite3_reset(delete)
            id.withBytes { _ = sqlite3_bind_blob(delete, 1, $0.baseAddress, 16, transient) }
            try Self.step(delete)
        }
        state.withLock { state in
            for id in deleted where state.recent[Self.slice(of: id)].removeValue(forKey: id) != nil {
                state.recentCount -= 1
            }
        }
    }

    // MARK: readers

    /// The sequence number of the event with `id` if memory holds it. A reader looks here first and
    /// then, when it is not, in `event_ids` (``mergedSequence(of:_:)``) in a read that begins after
    /// this call: memory lets go of merged ids only after their merge committed, so the id is found
    /// in one place or the other.
    /// `known` is the newest sequence number this index has taken in: events above it were written
    /// by another connection, and are neither in memory nor, maybe, in the table yet.
    func recentSequence(of id: UUIDValue) -> (sequence: Int64?, known: Int64) {
        // Memory as it is, even after a failed transaction: it still holds every id above the marks
        // of the last commit (and maybe ids that were not stored, whose rows the caller won't find).
        state.withLock { ($0.recent[Self.slice(of: id)][id], $0.known) }
    }

    /// Whether a reader that found events of another connection should have the writer load the
    /// index again; true once until ``prepare(_:)`` has run.
    func claimRefresh() -> Bool {
        state.withLock { state in
            if state.refreshClaimed { return false }
            state.refreshClaimed = true
            return true
        }
    }

    /// The sequence number of the event with `id` in `event_ids`.
    static func mergedSequence(of id: UUIDValue, _ db: Database) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT seq FROM event_ids WHERE event_id = ?", arguments: [id.withBytes { Data($0) }])
    }

    /// Ids held in memory now (a gauge, and for tests).
    var recentCount: Int { state.withLock { $0.recentCount } }

    // MARK: the filter

    /// Builds the filter over `event_ids` on a thread of its own, reading through `pool` (call
    /// once, after the first ``prepare(_:)``).
    func startBuildingFilter(_ pool: DatabasePool, logger: Logger) {
        let build = self.build
        let thread = Thread { [self] in
            StoreSupport.nameCurrentThread("store-idfilter")
            do {
                try pool.read { db in try self.buildFilter(db, cancelled: { build.isCancelled }) }
            } catch {
                // Every id not in memory is then looked up in the table: slower, still exact.
                logger.warning("store.id_filter.failed", metadata: ["error": "\(error)"])
            }
            build.finish()
        }
        build.started()
        thread.start()
    }

    /// Stops the filter's build, if it runs, and waits for its thread.
    func stopBuildingFilter() {
        build.cancelAndWait()
    }

    /// Every id of the table (a snapshot that begins after the first load), then every id taken in
    /// since that load: together, every stored id.
    func buildFilter(_ db: Database, cancelled: () -> Bool) throws {
        let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM event_ids") ?? 0
        var filter = BloomFilters(expected: count)
        let ids = try db.makeStatement(sql: "SELECT event_id FROM event_ids")
        let statement = ids.sqliteStatement
        var read = 0
        while sqlite3_step(statement) == SQLITE_ROW {
            if let id = Self.blobUUID(statement, 0) { filter.add(id) }
            read += 1
            if read & 0xFFFF == 0, cancelled() { return }
        }
        withExtendedLifetime(ids) {}
        state.withLock { state in
            for id in state.filter.pending { filter.add(id) }
            state.filter = IDFilter(filter: filter)
        }
    }

    /// Whether the filter is built (for tests).
    var filterIsBuilt: Bool { state.withLock { $0.filter.filter != nil } }

    // MARK: loading

    private static func load(_ state: inout State, _ db: Database) throws {
        let first = !state.valid && state.dataVersion == -1
        var through = [Int64](repeating: 0, count: sliceCount)
        for row in try Row.fetchAll(db, sql: "SELECT slice, through FROM event_id_slices") {
            let slice: Int = row[0]
            if (0..<sliceCount).contains(slice) { through[slice] = row[1] }
        }
        if first {
            // The filter over the table is built apart (startBuildingFilter); ids taken in
            // meanwhile wait for it.
            state.filter = IDFilter()
        } else {
            // Another connection may have moved ids of memory into the table: the filter must hold them.
            for slice in state.recent { for id in slice.keys { state.filter.add(id) } }
        }
        // Ids above a slice's mark are in the events table only: read them back into memory. Ids of
        // events this index has not seen (another connection's) join the filter too, since that
        // connection may already have merged them.
        let marks = through.min() ?? 0
        let from = first ? marks : min(marks, state.known)
        var recent = [[UUIDValue: Int64]](repeating: [:], count: sliceCount)
        var count = 0
        // Everything up to the newest event is taken in now: readers look for other connections'
        // events above it only.
        var known = max(state.known, try Int64.fetchOne(db, sql: "SELECT max(_seq) FROM events") ?? 0)
        let rows = try db.makeStatement(sql: "SELECT event_id, _seq FROM events WHERE _seq > ?")
        let statement = rows.sqliteStatement
        sqlite3_bind_int64(statement, 1, from)
        while sqlite3_step(statement) == SQLITE_ROW {
            guard let id = blobUUID(statement, 0) else { continue }
            let sequence = sqlite3_column_int64(statement, 1)
            let slice = Self.slice(of: id)
            if sequence > through[slice] {
                recent[slice][id] = sequence
                count += 1
            }
            if first || sequence > state.known { state.filter.add(id) }
            known = max(known, sequence)
        }
        withExtendedLifetime(rows) {}
        state.recent = recent
        state.recentCount = count
        state.through = through
        state.known = known
        state.merged = []
    }

    private static func blobUUID(_ statement: SQLiteStatement, _ column: Int32) -> UUIDValue? {
        guard sqlite3_column_bytes(statement, column) == 16, let bytes = sqlite3_column_blob(statement, column) else { return nil }
        // Read in place (the generic UUIDValue(bytes:) cost ~2 µs an id here, unspecialised).
        return UUIDValue(
            high: UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)),
            low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    private static func step(_ statement: SQLiteStatement) throws {
        let rc = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errstr(rc)))
        }
    }
}

/// The Bloom filter over the stored ids, or, while it is being built, the ids taken in meanwhile
/// (for which the answer is "maybe": the table is asked).
struct IDFilter {
    var filter: BloomFilters? = nil
    var pending: [UUIDValue] = []

    mutating func add(_ id: UUIDValue) {
        if filter != nil { filter?.add(id) } else { pending.append(id) }
    }

    func mayContain(_ id: UUIDValue) -> Bool {
        filter?.mayContain(id) ?? true
    }
}

/// The filter's build thread: cancelled and waited for at close.
final class FilterBuild: Sendable {
    private struct State {
        var running = false
        var cancelled = false
    }
    private let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)

    func started() { state.withLock { $0.running = true } }

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    func finish() { done.signal() }

    func cancelAndWait() {
        let running = state.withLock { state -> Bool in
            state.cancelled = true
            defer { state.running = false }
            return state.running
        }
        if running { done.wait() }
    }
}

/// A Bloom filter that grows: filters of doubling capacity, the newest taking new ids. Blocked: an
/// id's 7 bits lie in one 64-byte block, so that adding or asking costs one cache miss, not seven
/// (loading 2 million ids at open spent 28% of its time on those misses). At least 12 bits an id:
/// ~1-2% false positives at capacity.
struct BloomFilters {
    private struct Filter {
        var words: [UInt64]
        /// Blocks (of 8 words) - 1; a power of two - 1.
        let blockMask: UInt64
        let capacity: Int
        var count = 0

        init(capacity: Int) {
            self.capacity = capacity
            var blocks: UInt64 = 1
            while blocks * 512 < UInt64(capacity) * 12 { blocks <<= 1 }
            words = [UInt64](repeating: 0, count: Int(blocks * 8))
            blockMask = blocks - 1
        }

        func contains(_ block: Int, _ h2: UInt64) -> Bool {
            words.withUnsafeBufferPointer { words in
                for i: UInt64 in 0..<7 {
                    let bit = (h2 >> (i * 9)) & 511
                    if words[block + Int(bit >> 6)] & (1 << (bit & 63)) == 0 { return false }
                }
                return true
            }
        }
    }

    private var filters: [Filter]

    init(expected: Int = 0) {
        filters = [Filter(capacity: max(1 << 20, expected * 2))]
    }

    /// Two hashes of the id, mixed (v7 ids share their high bits).
    private static func hashes(_ id: UUIDValue) -> (UInt64, UInt64) {
        func mix(_ x: UInt64) -> UInt64 {
            var z = x &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let a = mix(id.low ^ (id.high &* 0xFF51_AFD7_ED55_8CCD))
        return (a, mix(a ^ id.high))
    }

    mutating func add(_ id: UUIDValue) {
        if filters[filters.count - 1].count >= filters[filters.count - 1].capacity {
            filters.append(Filter(capacity: filters[filters.count - 1].capacity * 2))
        }
        let (h1, h2) = Self.hashes(id)
        let last = filters.count - 1
        let block = Int(h1 & filters[last].blockMask) * 8
        filters[last].words.withUnsafeMutableBufferPointer { words in
            for i: UInt64 in 0..<7 {
                let bit = (h2 >> (i * 9)) & 511
                words[block + Int(bit >> 6)] |= 1 << (bit & 63)
            }
        }
        filters[last].count += 1
    }

    func mayContain(_ id: UUIDValue) -> Bool {
        let (h1, h2) = Self.hashes(id)
        return filters.contains { $0.contains(Int(h1 & $0.blockMask) * 8, h2) }
    }
}
