import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization
import TelemetryCatalog

/// Pairs stored events into operations, in a file of their own, on a thread of its own, after the
/// events' transaction has committed: the writer's transaction (and so every acknowledgement)
/// never waits for pairing, and pairing runs beside it, on CPU the writer does not need
/// (`SCHED_IDLE`, while it keeps up and no read waits for it).
///
/// The operations file holds a durable watermark (`pairing_state.through`): every event with a
/// sequence at or below it has been paired, and it moves in the same transaction as the operations
/// it accounts for. So pairing is exactly once whatever happens: after a crash, or when events
/// were written with pairing off, the pairer reads the events above the watermark back from the
/// events table and pairs them, in sequence order, as it does live.
///
/// Live, the writer hands over the events of each committed transaction with their sequences (in
/// memory, up to ``maxQueuedEvents``; beyond that only the range, read back from the table later),
/// and this thread picks out the lifecycle events, so the usual path re-reads nothing. Reads of operations wait until pairing has caught up with every event
/// committed before they began (``waitUntilPaired(timeout:)``).
final class OperationPairer: @unchecked Sendable {
    /// The events of one committed transaction: sequences in `(after, through]`; its events as
    /// the writer had them, or `nil` when they were left to be read back.
    private struct Chunk {
        let after: Int64
        let through: Int64
        let events: Handed?
    }

    /// A transaction's events and the sequence each was stored under (`nil`: a duplicate). The
    /// pairing thread picks out the lifecycle events and puts them in sequence order, so the
    /// writer hands over two array references and copies nothing.
    struct Handed: Sendable {
        let events: [IncomingEvent]
        let sequences: [Int64?]
    }

    private enum Work {
        case memory([Handed], through: Int64)
        case table(after: Int64, through: Int64)
    }

    /// The most handed-over events (of every type; most are lifecycle events) held in memory
    /// waiting to be paired; past it, events are read back from the table when their turn comes
    /// (a re-validation each, ~+0.4 µs an event of pairing when it lags that far). An event held
    /// costs ~1.35 KB: with 50,000, `bench emitter` (two cores saturated, pairing behind) peaked at
    /// 254-262 MiB of RSS, with 20,000 at 215-217 MiB, at the same rate (2026-11-30); the
    /// collector's goal is under 300 MiB at any load.
    static let maxQueuedEvents = 20_000
    /// Pairing waits up to this long, or until this many events are queued, to pair them in one
    /// transaction.
    static let gatherSeconds = 0.2
    static let gatherEvents = 10_000
    /// The most handed-over events paired in one transaction.
    static let eventsPerTransaction = 20_000

    private let database: DatabaseQueue
    private let layout: OperationLayout
    private let catalog: Catalog
    /// How the events table keeps `_json` (read back with ``StoredForm/json(_:column:)``).
    private let storedForm: StoredForm
    /// Reads lifecycle events back from their typed columns, where it can.
    private let lifecycleEvents: StoredLifecycleEvents
    private let lifecycleTypes: String
    private let logger: Logger
    private let condition = NSCondition()
    private var chunks: [Chunk] = []
    private var queuedEvents = 0
    private var committed: Int64
    private var paired: Int64
    private var stopping = false
    private var running = false
    private let finished = DispatchSemaphore(value: 0)

    /// `database` is the operations file with the events file attached; pairing resumes after the
    /// watermark stored there, and `committed` is the newest stored event's sequence.
    init(
        database: DatabaseQueue, layout: OperationLayout, catalog: Catalog, storedForm: StoredForm, committed: Int64, logger: Logger
    ) throws {
        self.storedForm = storedForm
        self.lifecycleEvents = StoredLifecycleEvents(catalog: catalog, layout: layout, storedForm: storedForm)
        self.database = database
        self.layout = layout
        self.catalog = catalog
        self.logger = logger
        self.committed = committed
        let types = Set(catalog.lifecycles.flatMap { [$0.startEventType, $0.completeEventType] })
        lifecycleTypes = SQLiteStore.sqlList(types.sorted())
        paired = try database.read { db in try Int64.fetchOne(db, sql: "SELECT through FROM pairing_state") ?? 0 }
        if paired > committed {
            // Only if the events file was changed behind the store's back (the writer never gives
            // a sequence number twice): pair from what it holds.
            paired = committed
            try database.write { db in try db.execute(sql: "UPDATE pairing_state SET through = ?", arguments: [committed]) }
        }
    }

    /// Starts the pairing thread.
    func start() {
        condition.lock()
        running = true
        condition.unlock()
        let thread = Thread { [self] in
            StoreSupport.nameCurrentThread("store-pairing")
            withLock {
                pairingThread = pthread_self()
                // A read may already wait (it could not boost a thread not started yet), or
                // pairing may start far behind (after a crash, an upgrade): then not idle.
                setYielding(waitingReads == 0 && committed - paired < Self.yieldUntilLag)
            }
            loop()
            // Finalize the prepared statements on the connection's queue, before it closes.
            database.writeWithoutTransaction { _ in prepared = [] }
            finished.signal()
        }
        thread.start()
    }

    /// Pairing yields the CPU to ingest (the events writer and the request threads) while it is
    /// less than this many sequences behind and no read waits for it; otherwise it runs at normal
    /// priority, so it cannot fall behind without bound nor keep a reader waiting. On two cores,
    /// pairing beside a busy writer slowed the writer's transactions by ~25%; yielding, it runs
    /// while they wait (fsync, requests) and costs ingest about two thirds of that.
    static let yieldUntilLag: Int64 = 200_000
    /// Whether the thread runs under `SCHED_IDLE`; with `pairingThread`, guarded by the lock.
    private var yielding = false
    private var pairingThread: pthread_t?
    /// Reads waiting in ``waitUntilPaired(timeout:)``.
    private var waitingReads = 0

    /// Sets the pairing thread's scheduling (from any thread): `SCHED_IDLE`, which runs only on an
    /// otherwise idle core, or the normal policy. Called with the lock held.
    private func setYielding(_ yields: Bool) {
        guard yields != yielding, let thread = pairingThread else { return }
        var parameters = sched_param(sched_priority: 0)
        // SCHED_IDLE is 5 on Linux; Glibc's module does not export the constant.
        pthread_setschedparam(thread, yields ? 5 : 0, &parameters)
        yielding = yields
    }

    /// Pairs what is queued (for at most `drainSeconds`), then stops the thread; what is left is
    /// paired from the events table when the store opens again.
    func stop(drainSeconds: Double = 5) {
        condition.lock()
        guard running, !stopping else {
            condition.unlock()
            return
        }
        stopping = true
        stopDeadline = Date().addingTimeInterval(drainSeconds)
        condition.broadcast()
        condition.unlock()
        finished.wait()
    }
    private var stopDeadline = Date.distantFuture
    /// Operations waiting for their start, by lifecycle (see ``countAwaitingStart(_:)``); `nil`
    /// until counted. Used on the pairing thread only.
    private var awaitingStart: [Int]?
    /// The watermark this pairer last committed: another value in the file means another store
    /// paired since.
    private var written: Int64 = -1
    /// Open operations whose start came first, by each of their UUID keys (see ``OpenStarts``);
    /// `nil` until read from the table. Used on the pairing thread only.
    private var openStarts: OpenStarts?
    private var openStartsRead = Date.distantPast
    /// Operations whose completion came first, by each of their UUID keys (see
    /// ``WaitingCompletions``); `nil` until read, with ``openStarts``. Pairing thread only.
    private var waiting: WaitingCompletions?
    /// Queries starts made for a completion that came first (what ``WaitingCompletions`` saves).
    private let startQueries = Atomic<Int>(0)
    var startQueriesMade: Int { startQueries.load(ordering: .relaxed) }
    /// Each role's statements, prepared once on the pairing connection, by compiled event index
    /// and role; used on the pairing thread only.
    private var prepared: [[PreparedRole]?] = []

    /// A committed transaction of the events writer: its sequences are in `(after, through]`.
    struct Handover: Sendable {
        let after: Int64
        let through: Int64
        let events: Handed
    }

    /// Called by the events writer after each transaction that stored events has committed.
    /// Handovers of concurrent writes may arrive out of order: each is placed by its range, and a
    /// range not yet handed over when the pairer reaches it is read back from the table.
    func committed(_ handover: Handover) {
        condition.lock()
        defer { condition.unlock() }
        guard handover.through > paired else { return }
        let count = handover.events.events.count
        let keep = queuedEvents + count <= Self.maxQueuedEvents
        let chunk = Chunk(after: handover.after, through: handover.through, events: keep ? handover.events : nil)
        if keep { queuedEvents += count }
        let position = chunks.lastIndex { $0.after <= chunk.after }.map { $0 + 1 } ?? 0
        chunks.insert(chunk, at: position)
        committed = max(committed, handover.through)
        condition.broadcast()
    }

    /// How many stored events wait to be paired (by sequence; most are not lifecycle events).
    var lag: Int64 { withLock { committed - paired } }

    /// Waits until every event up to `target` has been paired, or `timeout` passed (then
    /// operations are answered from what is paired; the lag is exported as a metric). Another
    /// process on the same files (a `consume` beside a collector) may be the one pairing them:
    /// `durable` reads the watermark in the operations file, checked every 10 ms.
    func waitUntilPaired(through target: Int64, timeout: Duration, durable: () async -> Int64?) async {
        let waits = withLock {
            guard paired < target else { return false }
            // Events this process did not write (another process on the same files wrote them,
            // and its pairer may be starved or idle, or have pairing off) are read back from the
            // table and paired here: whichever pairer commits first moves the watermark, and
            // the other skips what it covers.
            committed = max(committed, target)
            waitingReads += 1
            setYielding(false)
            condition.broadcast()
            return true
        }
        guard waits else { return }
        defer { withLock { waitingReads -= 1 } }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var round = 0
        while withLock({ paired < target && !stopping }) && clock.now < deadline {
            round += 1
            if round % 10 == 0, let stored = await durable(), stored >= target { return }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    // MARK: the thread

    private func loop() {
        var failures = 0
        while true {
            condition.lock()
            while !stopping && paired >= committed { condition.wait() }
            // Gather a larger transaction (fewer commits, each page of the operations' indexes
            // written once for many operations: ~20% less CPU an event than pairing each hand-over
            // at once), unless a read waits or pairing is behind.
            let gatherUntil = Date().addingTimeInterval(Self.gatherSeconds)
            while !stopping && waitingReads == 0 && queuedEvents < Self.gatherEvents
                && committed - paired < Self.yieldUntilLag && Date() < gatherUntil
            {
                _ = condition.wait(until: gatherUntil)
            }
            if stopping && (paired >= committed || Date() >= stopDeadline) {
                condition.unlock()
                return
            }
            let work = nextWork()
            condition.unlock()
            do {
                let through = try process(work)
                condition.lock()
                advance(to: through)
                let lag = committed - paired
                if lag > Self.yieldUntilLag || waitingReads > 0 {
                    setYielding(false)
                } else if lag < Self.yieldUntilLag / 4 {
                    setYielding(true)
                }
                condition.unlock()
                failures = 0
            } catch {
                failures += 1
                logger.error(
                    "store.pairing.failed",
                    metadata: ["error.message": "\(error)", "pairing.attempt": "\(failures)"])
                condition.lock()
                let wait = min(5.0, 0.05 * pow(2, Double(min(failures, 7))))
                if !stopping { _ = condition.wait(until: Date().addingTimeInterval(wait)) }
                let giveUp = stopping
                condition.unlock()
                if giveUp { return }
            }
        }
    }

    /// The next transaction's work: the queued events that follow the watermark, or the range up to
    /// the next queued ones to read back from the table. Called with the lock held.
    private func nextWork() -> Work {
        while let first = chunks.first, first.through <= paired { dropFirstChunk() }
        if let first = chunks.first, first.after == paired, first.events != nil {
            var parts: [Handed] = []
            var count = 0
            var through = paired
            for chunk in chunks {
                guard chunk.after == through, let more = chunk.events,
                    parts.isEmpty || count + more.events.count <= Self.eventsPerTransaction
                else { break }
                parts.append(more)
                count += more.events.count
                through = chunk.through
            }
            return .memory(parts, through: through)
        }
        let upTo = chunks.first { $0.events != nil && $0.after > paired }?.after ?? committed
        return .table(after: paired, through: upTo)
    }

    private func dropFirstChunk() {
        let chunk = chunks.removeFirst()
        queuedEvents -= chunk.events?.events.count ?? 0
    }

    /// Called with the lock held.
    private func advance(to through: Int64) {
        guard through > paired else { return }
        paired = through
        while let first = chunks.first, first.through <= paired { dropFirstChunk() }
        condition.broadcast()
    }

    /// Pairs one transaction's worth of events; returns the new watermark.
    private func process(_ work: Work) throws -> Int64 {
        try database.writeWithoutTransaction { db in
            // Events to read back are read first, in a read transaction of their own: the
            // pairing transaction itself never reads the events file, so it never holds a
            // snapshot of it (which would keep the events writer's checkpoints from finishing).
            var readBack: [(sequence: Int64, event: NormalizedEvent)] = []
            var readThrough: Int64 = 0
            if case .table(let after, let last) = work {
                // Start at the stored watermark: another process may have paired further.
                let stored = try Int64.fetchOne(db, sql: "SELECT through FROM pairing_state") ?? 0
                (readBack, readThrough) = try readStored(after: max(after, stored), through: last, db)
            }
            var through: Int64 = 0
            // Deferred, and the first statement writes the operations file: only that file is
            // locked for writing (BEGIN IMMEDIATE would lock the attached events file too, and
            // stall the events writer).
            do {
                try db.inTransaction(.deferred) {
                    try db.execute(sql: "UPDATE pairing_state SET through = through")
                    // Another store open on the same files may have paired further.
                    let stored = try Int64.fetchOne(db, sql: "SELECT through FROM pairing_state") ?? 0
                    if stored != written || awaitingStart == nil || openStarts == nil || openStarts?.wantsRead == true
                        || waiting?.wantsRead == true
                    {
                        try countAwaitingStart(db)
                        // Read at most every 10 s (two stores pairing by turns would read them for
                        // every transaction); meanwhile completions and starts ask the table.
                        let now = Date()
                        if now.timeIntervalSince(openStartsRead) >= 10 {
                            openStarts = try OpenStarts(layout: layout, db)
                            waiting = try WaitingCompletions(layout: layout, db)
                            openStartsRead = now
                        } else {
                            openStarts = OpenStarts(off: layout)
                            waiting = WaitingCompletions(off: layout)
                        }
                    }
                    // By index: iterating the pairs would copy each event (a retain of each of its
                    // buffers, and a release after).
                    switch work {
                    case .memory(let parts, let last):
                        // The lifecycle events not yet paired, in sequence order (the writer
                        // stores a transaction's events in event_id order).
                        var order: [(sequence: Int64, part: Int32, index: Int32)] = []
                        for (p, part) in parts.enumerated() {
                            for (i, sequence) in part.sequences.enumerated() {
                                guard let sequence, sequence > stored,
                                    !layout.roles[part.events[i].event.compiled.index].isEmpty
                                else { continue }
                                order.append((sequence, Int32(p), Int32(i)))
                            }
                        }
                        order.sort { $0.sequence < $1.sequence }
                        for entry in order {
                            try pair(parts[Int(entry.part)].events[Int(entry.index)].event, entry.sequence, db)
                        }
                        through = last
                    case .table:
                        for i in readBack.indices where readBack[i].sequence > stored {
                            try pair(readBack[i].event, readBack[i].sequence, db)
                        }
                        through = readThrough
                    }
                    through = max(through, stored)
                    try db.execute(sql: "UPDATE pairing_state SET through = ?", arguments: [through])
                    return .commit
                }
            } catch {
                // Read again from the table: this transaction's changes are gone.
                awaitingStart = nil
                openStarts = nil
                waiting = nil
                throw error
            }
            written = through
            return through
        }
    }

    /// Counts, by lifecycle, the operations whose completion came first and waits for its start.
    /// A start looks for such an operation only when there is one of its kind (usually none: the
    /// start comes first), which saves a query for most starts. Kept up as pairing goes; counted
    /// again from the table when another store paired too, or after a failed transaction.
    private func countAwaitingStart(_ db: Database) throws {
        var counts = [Int](repeating: 0, count: layout.lifecycles.count)
        for (kind, count) in try Row.fetchAll(db, sql: "SELECT kind, count(*) FROM operations WHERE start_seq IS NULL GROUP BY kind")
            .map({ ($0[0] as String, $0[1] as Int) })
        {
            if let index = layout.lifecycles.firstIndex(where: { $0.kind == kind }) { counts[index] = count }
        }
        awaitingStart = counts
    }

    /// Reads back the stored lifecycle events in `(after, through]` (from their typed columns,
    /// ``StoredLifecycleEvents``, or else their normalised JSON, validated again), at most
    /// ``eventsPerTransaction``; returns them and how far they reach.
    private func readStored(after: Int64, through: Int64, _ db: Database) throws
        -> ([(sequence: Int64, event: NormalizedEvent)], Int64)
    {
        guard after < through else { return ([], through) }
        // NOT INDEXED: walk the rowid range, not every lifecycle event through the type index.
        let statement = try db.cachedStatement(
            sql: """
                SELECT * FROM events NOT INDEXED
                WHERE _seq > ? AND _seq <= ? AND event_type IN (\(lifecycleTypes)) ORDER BY _seq LIMIT \(Self.eventsPerTransaction)
                """
        ).sqliteStatement
        var validator = EventValidator(catalog: catalog)
        var rows = 0
        var last = after
        sqlite3_bind_int64(statement, 1, after)
        sqlite3_bind_int64(statement, 2, through)
        defer { sqlite3_reset(statement) }
        var events: [(sequence: Int64, event: NormalizedEvent)] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(statement))))
            }
            rows += 1
            last = sqlite3_column_int64(statement, storedForm.sequenceColumn)
            if let event = lifecycleEvents.event(statement) {
                events.append((last, event))
                continue
            }
            let json = StoredForm.json(statement, column: storedForm.jsonColumn)
            switch json.withUnsafeBytes({ validator.validate($0) }) {
            case .valid(let event):
                events.append((last, event))
            case .invalid(let invalid):
                // Only a privacy policy that rewrote a pairing key into a non-UUID can do this.
                logger.warning(
                    "store.pairing.skipped",
                    metadata: ["event.sequence": "\(last)", "error.message": "\(invalid.issues.first?.message ?? "invalid")"])
            }
        }
        return (events, rows == Self.eventsPerTransaction ? last : through)
    }

    /// Pairs one stored event: each lifecycle role it plays.
    private func pair(_ event: NormalizedEvent, _ sequence: Int64, _ db: Database) throws {
        let index = event.compiled.index
        if layout.roles[index].isEmpty { return }
        if prepared.count <= index { prepared += Array(repeating: nil, count: index + 1 - prepared.count) }
        let roles: [PreparedRole]
        if let known = prepared[index] {
            roles = known
        } else {
            roles = try layout.roles[index].map { try PreparedRole($0, db) }
            prepared[index] = roles
        }
        let asked = waiting!.startQueries
        defer { if waiting!.startQueries > asked { startQueries.add(waiting!.startQueries - asked, ordering: .relaxed) } }
        try event.json.withUnsafeBufferPointer { json in
            for role in roles {
                try Self.pair(
                    event, sequence, role, json, awaitingStart: &awaitingStart!, openStarts: &openStarts!, waiting: &waiting!)
            }
        }
    }
}

extension OperationPairer {
    /// Finds the other half: a completion pairs by the first key it carries; a start by any key
    /// under which a completion waits. Whichever half comes first inserts the operation's row; the
    /// second fills in its side. Halves never pair across tenants. Values are bound straight from
    /// the normalised event into prepared statements, like the event insert does.
    private static func pair(
        _ event: NormalizedEvent, _ sequence: Int64, _ prepared: PreparedRole, _ json: UnsafeBufferPointer<UInt8>,
        awaitingStart: inout [Int], openStarts: inout OpenStarts, waiting: inout WaitingCompletions
    ) throws {
        let role = prepared.role
        if let condition = role.conditionSlot {
            guard case .bool(true) = event.values[condition] else { return }
        }
        func present(_ slot: Int) -> Bool {
            guard slot >= 0 else { return false }
            switch event.values[slot] {
            case .absent, .null: return false
            default: return true
            }
        }
        func bindKind(_ stmt: SQLiteStatement, _ parameter: Int32) {
            role.kind.withCString { _ = sqlite3_bind_text(stmt, parameter, $0, -1, transient) }
        }
        func bindField(_ stmt: SQLiteStatement, _ parameter: Int32, _ slot: Int) {
            if slot < 0 {
                sqlite3_bind_null(stmt, parameter)
            } else {
                SQLiteStore.bind(event.values[slot], to: stmt, parameter, json: json, asUUID: false)
            }
        }
        func step(_ stmt: SQLiteStatement) throws {
            let rc = sqlite3_step(stmt)
            sqlite3_reset(stmt)
            guard rc == SQLITE_DONE || rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
        }

        // Find the other half: a completion pairs by the first key it carries; a start by any key
        // under which a completion waits.
        var operation: Int64? = nil
        var other: [Int64?] = []
        // A start looks only when a completion of its kind waits for one. A completion finds its
        // start in memory when its first key is a UUID the memory is sure of.
        var looks = role.isCompletion || awaitingStart[role.lifecycle] > 0
        var remembered: OpenStarts.Key? = nil
        if role.isCompletion, let first = role.keySlots.firstIndex(where: present), case .uuid(let key) = event.values[role.keySlots[first]] {
            let rememberedKey = OpenStarts.Key(lifecycle: role.lifecycle, keyIndex: first, tenant: event.tenantID, key: key)
            switch openStarts.lookup(rememberedKey) {
            case .none:
                looks = false
            case .one(let found, let instants):
                operation = found
                other = role.otherColumns.map { openStarts.instant($0, of: role.lifecycle, in: instants) }
                looks = false
                remembered = rememberedKey
            case .unsure:
                break
            }
        }
        // A start asks only by the keys under which a completion may wait.
        var matchedKey: Int? = nil
        for (i, slot) in role.keySlots.enumerated() where looks && present(slot) {
            if !role.isCompletion, !waiting.mayWait(role.lifecycle, keyIndex: i, tenant: event.tenantID, event.values[slot]) { continue }
            matchedKey = i
            if !role.isCompletion { waiting.startQueries += 1 }
            let stmt = prepared.match[i]
            bindKind(stmt, 1)
            event.tenantID.withBytes { _ = sqlite3_bind_blob(stmt, 2, $0.baseAddress, 16, transient) }
            bindField(stmt, 3, slot)
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_ROW {
                operation = sqlite3_column_int64(stmt, 0)
                // The other half's instants, for spans.
                other = (0..<role.otherColumns.count).map { i in
                    let column = Int32(i + 1)
                    return sqlite3_column_type(stmt, column) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, column)
                }
            }
            sqlite3_reset(stmt)
            guard rc == SQLITE_ROW || rc == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(stmt))))
            }
            if operation != nil || role.isCompletion { break }
        }

        var status: StaticString = "running"
        if role.isCompletion {
            var succeeded = true
            if let result = role.resultSlot, case .bool(let value) = event.values[result] { succeeded = value }
            status = succeeded ? "succeeded" : "failed"
        }
        let spans = spanValues(event, role, other: other)
        let time = event.timestampMicros
        func bindCommon(_ stmt: SQLiteStatement, _ p: inout Int32) {
            event.eventID.withBytes { _ = sqlite3_bind_blob(stmt, p, $0.baseAddress, 16, transient) }
            sqlite3_bind_int64(stmt, p + 1, sequence)
            p += 2
        }
        func bindRest(_ stmt: SQLiteStatement, _ p: inout Int32) {
            for attribute in role.attributes {
                bindField(stmt, p, attribute.slot)
                p += 1
            }
            for span in spans {
                if let span { sqlite3_bind_double(stmt, p, span) } else { sqlite3_bind_null(stmt, p) }
                p += 1
            }
            for instant in role.ownInstants {
                if case .timestamp(let micros, _, _, _) = event.values[instant.slot] {
                    sqlite3_bind_int64(stmt, p, micros)
                } else {
                    sqlite3_bind_null(stmt, p)
                }
                p += 1
            }
        }

        guard let operation else {
            // The first half to arrive: a new operation.
            if role.isCompletion {
                awaitingStart[role.lifecycle] += 1
                for (i, slot) in role.keySlots.enumerated() where present(slot) {
                    waiting.add(role.lifecycle, keyIndex: i, tenant: event.tenantID, event.values[slot])
                }
            }
            let stmt = prepared.insert
            bindKind(stmt, 1)
            event.tenantID.withBytes { _ = sqlite3_bind_blob(stmt, 2, $0.baseAddress, 16, transient) }
            var p: Int32 = 3
            for slot in role.keySlots {
                bindField(stmt, p, slot)
                p += 1
            }
            sqlite3_bind_text(stmt, p, status.utf8Start, Int32(status.utf8CodeUnitCount), nil)
            sqlite3_bind_int64(stmt, p + 1, time)
            sqlite3_bind_int64(stmt, p + 2, time)
            p += 3
            bindCommon(stmt, &p)
            bindRest(stmt, &p)
            try step(stmt)
            if !role.isCompletion {
                let rowid = sqlite3_last_insert_rowid(sqlite3_db_handle(stmt))
                openStarts.started(rowid, role, event, time: time)
            }
            return
        }
        if !role.isCompletion {
            awaitingStart[role.lifecycle] -= 1
            if let matchedKey {
                waiting.remove(role.lifecycle, keyIndex: matchedKey, tenant: event.tenantID, event.values[role.keySlots[matchedKey]])
            }
        }
        let stmt = prepared.update
        var p: Int32 = 1
        if role.isCompletion {
            sqlite3_bind_text(stmt, 1, status.utf8Start, Int32(status.utf8CodeUnitCount), nil)
            p = 2
        } else {
            sqlite3_bind_int64(stmt, p, time)  // _at_us becomes the start
            p += 1
        }
        sqlite3_bind_int64(stmt, p, time)
        sqlite3_bind_int64(stmt, p + 1, time)
        p += 2
        bindCommon(stmt, &p)
        if !role.isCompletion {
            for slot in role.keySlots {
                bindField(stmt, p, slot)
                p += 1
            }
        }
        bindRest(stmt, &p)
        sqlite3_bind_int64(stmt, p, operation)
        try step(stmt)
        if let remembered {
            openStarts.completed(remembered)
            if sqlite3_changes(sqlite3_db_handle(stmt)) == 0 {
                // Completed or deleted since it was remembered: look for it in the table.
                openStarts.forget(remembered)
                try pair(event, sequence, prepared, json, awaitingStart: &awaitingStart, openStarts: &openStarts, waiting: &waiting)
            }
        }
    }

    /// Each span of the role's lifecycle in milliseconds, or `nil` while an instant is unknown;
    /// `other` holds the other half's instants from the operation's row (empty for the first half).
    private static func spanValues(_ event: NormalizedEvent, _ role: OperationLayout.Role, other: [Int64?]) -> [Double?] {
        guard !role.spans.isEmpty else { return [] }
        func micros(_ instant: OperationLayout.Instant) -> Int64? {
            switch instant {
            case .here(let slot):
                if case .timestamp(let micros, _, _, _) = event.values[slot] { return micros }
                return nil
            case .other(let index):
                return index >= 0 && index < other.count ? other[index] : nil
            }
        }
        return role.spans.map { span in
            guard let from = micros(span.from), let to = micros(span.to) else { return nil }
            return Double(to - from) / 1000
        }
    }
}

/// A lifecycle role with its statements prepared on the pairing connection (GRDB's statement
/// cache would hash each statement's SQL text for every lifecycle event).
final class PreparedRole {
    let role: OperationLayout.Role
    let match: [SQLiteStatement]
    let insert: SQLiteStatement
    let update: SQLiteStatement
    /// Owns the statements: they are finalized with it.
    private let statements: [Statement]

    init(_ role: OperationLayout.Role, _ db: Database) throws {
        self.role = role
        let match = try role.matchSQL.map { try db.makeStatement(sql: $0) }
        let insert = try db.makeStatement(sql: role.insertSQL)
        let update = try db.makeStatement(sql: role.updateSQL)
        self.match = match.map(\.sqliteStatement)
        self.insert = insert.sqliteStatement
        self.update = update.sqliteStatement
        statements = match + [insert, update]
    }
}

/// One of an operation's pairing keys, as the pairer's memories hold it: the lifecycle, which of
/// its keys, the tenant (halves never pair across tenants) and the key's UUID.
struct OperationKey: Hashable {
    let lifecycle: Int
    let keyIndex: Int
    let tenant: UUIDValue
    let key: UUIDValue
}

/// The pairer's memory of open operations whose start came first, by each of their UUID keys: a
/// completion finds its start here instead of querying the table (a third of pairing's statements).
/// Read from the table when pairing starts, after another store paired, or after a failed
/// transaction, and kept up as starts are inserted and completed. For a key, the memory is sure
/// there is no open start, or of the one open start, or unsure (several started under it, or its
/// key is not a UUID): then the table is asked, as before. Beyond ``maxOperations`` open starts
/// of a lifecycle (stuck operations pile up) it is off for that lifecycle, whose completions ask
/// the table.
struct OpenStarts {
    typealias Key = OperationKey

    /// The start's instants a span may need: `started_us`, then the start role's own instants.
    typealias Instants = (Int64?, Int64?, Int64?)

    enum Found {
        case none
        case one(operation: Int64, instants: Instants)
        case unsure
    }

    private enum Entry {
        case one(operation: Int64, instants: Instants)
        case several
    }

    /// The most open starts remembered of one lifecycle (about 100 bytes each for a key);
    /// beyond, the lifecycle's completions ask the table.
    static let maxOperations = 100_000
    private var entries: [Key: Entry] = [:]
    /// By lifecycle: not remembered (too many open starts, or more instants than kept).
    private var off: [Bool]
    /// By lifecycle: starts remembered, less those completed through the memory (completions
    /// through the table are not subtracted: the count only errs high, and reaching the most
    /// asks for a new read).
    private var remembered: [Int]
    /// A lifecycle went off at its most: read the table again (the pairer does, at most every 10 s).
    private(set) var wantsRead = false
    /// By lifecycle: the start role's instant columns, in ``Instants`` order.
    private let instantColumns: [[String]]

    /// Memory of nothing: every completion asks the table.
    init(off layout: OperationLayout) {
        instantColumns = Self.instantColumns(layout)
        off = Array(repeating: true, count: layout.lifecycles.count)
        remembered = Array(repeating: 0, count: layout.lifecycles.count)
    }

    private static func instantColumns(_ layout: OperationLayout) -> [[String]] {
        var columns = [[String]](repeating: ["started_us"], count: layout.lifecycles.count)
        for roles in layout.roles {
            for role in roles where !role.isCompletion {
                columns[role.lifecycle] = ["started_us"] + role.ownInstants.map(\.column)
            }
        }
        return columns
    }

    /// Reads the open operations whose start came first from the table.
    init(layout: OperationLayout, _ db: Database) throws {
        instantColumns = Self.instantColumns(layout)
        off = instantColumns.map { $0.count > 3 }
        remembered = Array(repeating: 0, count: layout.lifecycles.count)
        for (lifecycle, definition) in layout.lifecycles.enumerated() where !off[lifecycle] {
            // Counted through the (kind, _at_us) index of open operations.
            let open = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM operations WHERE kind = ? AND complete_seq IS NULL AND start_seq IS NOT NULL",
                arguments: [definition.kind]) ?? 0
            if open > Self.maxOperations { off[lifecycle] = true }
        }
        for (lifecycle, definition) in layout.lifecycles.enumerated() where !off[lifecycle] {
            let keyCount = definition.keys.count
            let names = instantColumns[lifecycle]
            let sql = """
                SELECT _seq, tenant_id\((0..<keyCount).map { ", key\($0 + 1)" }.joined())\(names.map { ", \"\($0)\"" }.joined())
                FROM operations WHERE kind = ? AND complete_seq IS NULL AND start_seq IS NOT NULL
                """
            let rows = try Row.fetchCursor(db, sql: sql, arguments: [definition.kind])
            while let row = try rows.next() {
                guard let tenant = (row[1] as Data?).flatMap({ UUIDValue(bytes: $0) }) else { continue }
                var instants: Instants = (nil, nil, nil)
                for (i, _) in names.enumerated() {
                    let value: Int64? = row[2 + keyCount + i]
                    switch i {
                    case 0: instants.0 = value
                    case 1: instants.1 = value
                    default: instants.2 = value
                    }
                }
                for keyIndex in 0..<keyCount {
                    let value = row[2 + keyIndex] as DatabaseValue
                    if value.isNull { continue }
                    guard let data = Data.fromDatabaseValue(value), let key = UUIDValue(bytes: data) else {
                        // A key that is not a UUID: completions by it ask the table.
                        continue
                    }
                    add(Key(lifecycle: lifecycle, keyIndex: keyIndex, tenant: tenant, key: key), row[0], instants)
                }
                remembered[lifecycle] += 1
            }
        }
    }

    private mutating func add(_ key: Key, _ operation: Int64, _ instants: Instants) {
        entries[key] = entries[key] == nil ? .one(operation: operation, instants: instants) : .several
    }

    func lookup(_ key: Key) -> Found {
        if off[key.lifecycle] { return .unsure }
        switch entries[key] {
        case nil: return .none
        case .one(let operation, let instants)?: return .one(operation: operation, instants: instants)
        case .several?: return .unsure
        }
    }

    /// The value of `column` among a start's instants of `lifecycle`.
    func instant(_ column: String, of lifecycle: Int, in instants: Instants) -> Int64? {
        switch instantColumns[lifecycle].firstIndex(of: column) {
        case 0?: instants.0
        case 1?: instants.1
        case 2?: instants.2
        default: nil
        }
    }

    /// A start inserted operation `operation`: remembered under each of its UUID keys.
    mutating func started(_ operation: Int64, _ role: OperationLayout.Role, _ event: NormalizedEvent, time: Int64) {
        if off[role.lifecycle] { return }
        if remembered[role.lifecycle] >= Self.maxOperations {
            off[role.lifecycle] = true
            wantsRead = true
            entries = entries.filter { $0.key.lifecycle != role.lifecycle }
            return
        }
        remembered[role.lifecycle] += 1
        var instants: Instants = (time, nil, nil)
        for (i, own) in role.ownInstants.enumerated() {
            guard case .timestamp(let micros, _, _, _) = event.values[own.slot] else { continue }
            if i == 0 { instants.1 = micros } else if i == 1 { instants.2 = micros }
        }
        for (keyIndex, slot) in role.keySlots.enumerated() where slot >= 0 {
            guard case .uuid(let key) = event.values[slot] else { continue }
            add(Key(lifecycle: role.lifecycle, keyIndex: keyIndex, tenant: event.tenantID, key: key), operation, instants)
        }
    }

    /// The operation remembered under `key` was completed.
    mutating func completed(_ key: Key) {
        entries[key] = nil
        remembered[key.lifecycle] -= 1
    }

    /// The operation remembered under `key` is gone from the table: the table is asked.
    mutating func forget(_ key: Key) {
        entries[key] = .several
    }
}

/// The pairer's memory of operations whose completion came first and waits for its start, by each
/// of their UUID keys, so that a start asks the table only by a key under which a completion may
/// wait. Counting such operations by lifecycle was not enough: a completion whose start never
/// comes (lost, or emitted by a service without telemetry) waits for good, and from then on every
/// start of its lifecycle asked the table (`bench ingest`: 51,938 of 51,941 starts did).
///
/// The memory may hold keys of operations that are no longer waiting (a completion paired by
/// another of its keys, or deleted by retention): a start then asks the table for nothing, as
/// before. It never lacks one of the pairer's own: it is read from the table with ``OpenStarts``
/// (when pairing starts, after another store paired, after a failed transaction), and kept up
/// as completions come first. A lifecycle with a waiting completion keyed by a value that is not
/// a UUID, or more than ``maxKeys`` keys in all, is not remembered: its starts ask the table.
struct WaitingCompletions {
    typealias Key = OperationKey

    /// The most keys remembered (about 100 bytes each); beyond, every lifecycle asks the table
    /// until the memory is read again.
    static let maxKeys = 200_000
    /// How many waiting operations have each key (two completions may come first under one).
    private var keys: [Key: Int] = [:]
    /// By lifecycle: not remembered, starts ask the table.
    private var off: [Bool]
    /// The memory went off at its most: read the table again (the pairer does, at most every 10 s).
    private(set) var wantsRead = false
    /// Queries made by starts so far (counted by the pairer, for ``OperationPairer/startQueries``).
    var startQueries = 0

    /// Memory of nothing: every start asks the table.
    init(off layout: OperationLayout) {
        off = Array(repeating: true, count: layout.lifecycles.count)
    }

    /// Reads the keys of the operations whose completion came first from the table.
    init(layout: OperationLayout, _ db: Database) throws {
        off = Array(repeating: false, count: layout.lifecycles.count)
        for (lifecycle, definition) in layout.lifecycles.enumerated() {
            for keyIndex in definition.keys.indices {
                // Through the (kind, tenant_id, keyN) index of operations waiting for their start.
                let rows = try Row.fetchCursor(
                    db, sql: "SELECT tenant_id, key\(keyIndex + 1) FROM operations WHERE kind = ? AND start_seq IS NULL AND key\(keyIndex + 1) IS NOT NULL",
                    arguments: [definition.kind])
                while let row = try rows.next(), !off[lifecycle] {
                    guard let tenant = (row[0] as Data?).flatMap({ UUIDValue(bytes: $0) }),
                        let key = Data.fromDatabaseValue(row[1] as DatabaseValue).flatMap({ UUIDValue(bytes: $0) })
                    else {
                        off[lifecycle] = true
                        break
                    }
                    keys[Key(lifecycle: lifecycle, keyIndex: keyIndex, tenant: tenant, key: key), default: 0] += 1
                }
            }
            if off[lifecycle] { keys = keys.filter { $0.key.lifecycle != lifecycle } }
        }
        if keys.count > Self.maxKeys { turnOff() }
    }

    private mutating func turnOff() {
        off = off.map { _ in true }
        keys = [:]
        wantsRead = true
    }

    /// Whether a completion of `lifecycle` may wait under `value` as its key number `keyIndex`.
    func mayWait(_ lifecycle: Int, keyIndex: Int, tenant: UUIDValue, _ value: StoredValue) -> Bool {
        if off[lifecycle] { return true }
        guard case .uuid(let key) = value else { return false }
        return keys[Key(lifecycle: lifecycle, keyIndex: keyIndex, tenant: tenant, key: key)] != nil
    }

    /// A completion came first and waits under `value` as its key number `keyIndex`.
    mutating func add(_ lifecycle: Int, keyIndex: Int, tenant: UUIDValue, _ value: StoredValue) {
        if off[lifecycle] { return }
        guard case .uuid(let key) = value else {
            off[lifecycle] = true
            keys = keys.filter { $0.key.lifecycle != lifecycle }
            return
        }
        keys[Key(lifecycle: lifecycle, keyIndex: keyIndex, tenant: tenant, key: key), default: 0] += 1
        if keys.count > Self.maxKeys { turnOff() }
    }

    /// A start found the completion waiting under `value`.
    mutating func remove(_ lifecycle: Int, keyIndex: Int, tenant: UUIDValue, _ value: StoredValue) {
        guard !off[lifecycle], case .uuid(let key) = value else { return }
        let entry = Key(lifecycle: lifecycle, keyIndex: keyIndex, tenant: tenant, key: key)
        if let count = keys[entry] { keys[entry] = count > 1 ? count - 1 : nil }
    }
}
