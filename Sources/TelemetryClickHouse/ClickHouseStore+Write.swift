import Logging
import Synchronization
import Foundation
import TelemetryCatalog
public import TelemetryStore

extension ClickHouseStore {
    /// Stores a batch: ids already stored (or earlier in the batch) are duplicates; the new events
    /// go in one INSERT into `events`, then their ids into `event_ids`, then the rejections.
    ///
    /// A failed INSERT is sent again with the same bytes (ClickHouse's block dedupe drops a repeat
    /// on replicated tables) a few times, then the write throws ``StoreError/Code/unavailable``
    /// and nothing is acknowledged. Events are inserted before their ids, so that an id is never
    /// indexed for an event that is not stored (a retry would then be refused as a duplicate:
    /// a loss). When the events went in but their ids did not, the ids are kept and inserted
    /// before the next write does anything else, so that the sender's retry counts as duplicates.
    /// Only an events INSERT whose answer was lost (or this process dying between the two
    /// INSERTs) can leave an event stored twice: the copies collapse when ClickHouse merges, and
    /// counts and stats read with FINAL, so they count it once before that.
    public func write(_ batch: WriteBatch) async throws -> WriteOutcome {
        var sequences = [Int64?](repeating: nil, count: batch.events.count)
        do {
            let pending = pendingIDRows.withLock { $0 }
            if !pending.isEmpty {
                try await insert("INSERT INTO event_ids (event_id, timestamp, _seq) FORMAT TabSeparated", pending)
                pendingIDRows.withLock { $0.removeFirst(min($0.count, pending.count)) }
            }
            if !batch.events.isEmpty {
                let ids = batch.events.map { $0.event.eventID.description }
                let stored = try await storedIDs(Array(Set(ids)))
                var seen = stored
                var fresh: [Int] = []
                for (index, id) in ids.enumerated() where seen.insert(id).inserted {
                    fresh.append(index)
                }
                if !fresh.isEmpty {
                    let numbers = nextSequences(fresh.count)
                    var rows: [UInt8] = []
                    rows.reserveCapacity(fresh.count * 1200)
                    var idRows: [UInt8] = []
                    idRows.reserveCapacity(fresh.count * 64)
                    for (position, index) in fresh.enumerated() {
                        let incoming = batch.events[index]
                        appendRow(incoming, id: ids[index], sequence: numbers[position], to: &rows)
                        idRows += Array("\(ids[index])\t\(incoming.event.timestampMicros)\t\(numbers[position])\n".utf8)
                        sequences[index] = numbers[position]
                    }
                    try await insert("INSERT INTO events (\(layout.insertColumns)) FORMAT TabSeparated", rows)
                    do {
                        try await insert("INSERT INTO event_ids (event_id, timestamp, _seq) FORMAT TabSeparated", idRows)
                    } catch {
                        pendingIDRows.withLock { $0 += idRows }
                        throw error
                    }
                }
            }
            if !batch.rejected.isEmpty {
                let numbers = nextSequences(batch.rejected.count)
                var rows: [UInt8] = []
                for (rejected, number) in zip(batch.rejected, numbers) {
                    let codes = "," + rejected.issues.map(\.code.rawValue).joined(separator: ",") + ","
                    rows += Array("\(number)\t\(rejected.receivedMicros)\t".utf8)
                    TSV.append(escaping: rejected.requestID, to: &rows)
                    rows += Array("\t\(rejected.index)\t".utf8)
                    for text in [rejected.tenantID.map(StoreSupport.canonicalUUIDText), rejected.eventType, rejected.eventID] {
                        if let text { TSV.append(escaping: text, to: &rows) } else { rows += TSV.null }
                        rows.append(0x09)
                    }
                    TSV.append(escaping: codes, to: &rows)
                    rows.append(0x09)
                    TSV.append(escaping: StoreSupport.issuesJSON(rejected.issues), to: &rows)
                    rows.append(0x09)
                    TSV.append(escaping: rejected.raw, to: &rows)
                    rows.append(0x0A)
                }
                try await insert(
                    "INSERT INTO rejected (_seq, _received_us, _request_id, _index, tenant_id, event_type, event_id, codes, errors, raw) FORMAT TabSeparated",
                    rows)
            }
        } catch let error as StoreError {
            logger.error("store.write.failed", metadata: ["error.code": "\(error.code)", "error.message": "\(error.message)"])
            throw error
        }
        return WriteOutcome(sequences: sequences)
    }

    /// Which of `ids` are stored already.
    private func storedIDs(_ ids: [String]) async throws -> Set<String> {
        var found: Set<String> = []
        // IN lists of up to 20k ids (~800 KB of SQL; max_query_size raised to match).
        for start in stride(from: 0, to: ids.count, by: 20_000) {
            let chunk = ids[start..<min(ids.count, start + 20_000)]
            let rows = try await client.rows(
                "SELECT event_id FROM event_ids WHERE event_id IN (\(SQL.list(Array(chunk))))",
                settings: [("max_query_size", "4000000")])
            for row in rows { if let id = row.first?.string { found.insert(id) } }
        }
        return found
    }

    /// Sends an INSERT, again with the same bytes after a failure, up to the configured attempts.
    private func insert(_ sql: String, _ body: [UInt8]) async throws {
        var attempt = 1
        while true {
            do {
                _ = try await client.execute(sql, body: body)
                return
            } catch let error as StoreError where attempt < configuration.insertAttempts {
                logger.warning("store.insert.retry", metadata: ["attempt": "\(attempt)", "error.message": "\(error.message)"])
                attempt += 1
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// One events row in TabSeparated form.
    private func appendRow(_ incoming: IncomingEvent, id: String, sequence: Int64, to out: inout [UInt8]) {
        let event = incoming.event
        out += Array("\(sequence)\t\(id)\t\(incoming.receivedMicros)\t".utf8)
        TSV.append(escaping: incoming.requestID, to: &out)
        out.append(0x09)
        TSV.append(escaping: event.json, to: &out)
        out.append(0x09)
        if !event.unknownFields.isEmpty {
            TSV.append(escaping: JSONValue.array(event.unknownFields.map { .string($0) }).render(), to: &out)
        }
        // Columns in table order, each written straight into the row (this runs for every event).
        for (column, slot) in layout.slotOfColumn[event.compiled.index].enumerated() {
            out.append(0x09)
            if slot < 0 || !appendCell(event, slot: slot, type: layout.columns[column].type, to: &out) { out += TSV.null }
        }
        out.append(0x0A)
    }

    /// Appends a field's value as column text; returns false (nothing appended) for NULL.
    private func appendCell(_ event: NormalizedEvent, slot: Int, type: FieldType, to out: inout [UInt8]) -> Bool {
        switch event.values[slot] {
        case .absent, .null, .object: return false
        case .integer(let v): out += String(v).utf8
        case .number(let v): out += "\(v)".utf8
        case .bool(let v): out.append(v ? 0x31 : 0x30)
        case .timestamp(let micros, _, _, _): out += String(micros).utf8
        case .uuid(let uuid): out += uuid.description.utf8
        case .text(let start, let end, let escaped):
            if escaped || type == .uuid {
                guard case .string(let text)? = event.value(at: slot) else { return false }
                TSV.append(escaping: type == .uuid ? StoreSupport.canonicalUUIDText(text) : text, to: &out)
            } else {
                TSV.append(escaping: event.json[Int(start)..<Int(end)], to: &out)
            }
        }
        return true
    }
}
