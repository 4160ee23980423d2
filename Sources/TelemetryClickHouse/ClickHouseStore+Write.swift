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
                try await insert("INSERT INTO event_ids (event_id, timestamp, _seq, event_type, tenant_id) FORMAT TabSeparated", pending)
                pendingIDRows.withLock { $0.removeFirst(min($0.count, pending.count)) }
            }
            if !batch.events.isEmpty {
                let ids = batch.events.map { $0.event.eventID.description }
                // The rows are built (on this task) while ClickHouse looks the ids up; the
                // duplicates' rows are dropped afterwards, which is rare.
                async let storedLookup = storedIDs(ids)
                let numbers = nextSequences(ids.count)
                var rows: [UInt8] = []
                rows.reserveCapacity(ids.count * 1400)
                var ends: [Int] = []
                ends.reserveCapacity(ids.count)
                for (index, incoming) in batch.events.enumerated() {
                    appendRow(incoming, id: ids[index], sequence: numbers[index], to: &rows)
                    ends.append(rows.count)
                }
                var seen = try await storedLookup
                var fresh: [Int] = []
                for (index, id) in ids.enumerated() where seen.insert(id).inserted {
                    fresh.append(index)
                }
                if !fresh.isEmpty {
                    if fresh.count < ids.count {
                        var kept: [UInt8] = []
                        kept.reserveCapacity(rows.count)
                        for index in fresh { kept += rows[(index == 0 ? 0 : ends[index - 1])..<ends[index]] }
                        rows = kept
                    }
                    var idRows: [UInt8] = []
                    idRows.reserveCapacity(fresh.count * 64)
                    for index in fresh {
                        let event = batch.events[index].event
                        idRows += "\(ids[index])\t\(event.timestampMicros)\t\(numbers[index])\t".utf8
                        TSV.append(escaping: event.eventType, to: &idRows)
                        idRows += "\t\(event.tenantID)\n".utf8
                        sequences[index] = numbers[index]
                    }
                    try await insert("INSERT INTO events (\(layout.insertColumns)) FORMAT RowBinary", rows)
                    do {
                        try await insert("INSERT INTO event_ids (event_id, timestamp, _seq, event_type, tenant_id) FORMAT TabSeparated", idRows)
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

    /// Which of `ids` are stored already. The ids go as external data (a temporary table sent with
    /// the query), not as SQL literals: parsing 10,000 literals cost ClickHouse ~100 ms a batch.
    private func storedIDs(_ ids: [String]) async throws -> Set<String> {
        var table: [UInt8] = []
        table.reserveCapacity(ids.count * 37)
        for id in ids {
            table += id.utf8
            table.append(0x0A)
        }
        let rows = try await client.rows(
            "SELECT event_id FROM event_ids WHERE event_id IN batch_ids", externalTable: ("batch_ids", "event_id String", table))
        var found: Set<String> = []
        for row in rows { if let id = row.first?.string { found.insert(id) } }
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

    /// One events row in ClickHouse's RowBinary form, columns in ``ClickHouseLayout/insertColumns``
    /// order: numbers little-endian, strings with a LEB128 length, `Nullable` values after a
    /// null flag. Cheaper to write than text, and cheaper for ClickHouse to read.
    private func appendRow(_ incoming: IncomingEvent, id: String, sequence: Int64, to out: inout [UInt8]) {
        let event = incoming.event
        RowBinary.append(sequence, to: &out)
        RowBinary.append(string: id.utf8, to: &out)
        RowBinary.append(incoming.receivedMicros, to: &out)
        RowBinary.append(string: incoming.requestID.utf8, to: &out)
        RowBinary.append(string: event.json, to: &out)
        if event.unknownFields.isEmpty {
            out.append(0)
        } else {
            RowBinary.append(string: JSONValue.array(event.unknownFields.map { .string($0) }).render().utf8, to: &out)
        }
        let slots = layout.slotOfColumn[event.compiled.index]
        for (index, column) in layout.columns.enumerated() {
            let slot = slots[index]
            let value: StoredValue = slot < 0 ? .absent : event.values[slot]
            if !column.required {
                if case .absent = value { out.append(1); continue }
                if case .null = value { out.append(1); continue }
                if case .object = value { out.append(1); continue }
                out.append(0)
            }
            switch column.type {
            case .integer, .timestamp:
                switch value {
                case .integer(let v): RowBinary.append(v, to: &out)
                case .timestamp(let micros, _, _, _): RowBinary.append(micros, to: &out)
                case .number(let v): RowBinary.append(Int64(v), to: &out)
                default: RowBinary.append(Int64(0), to: &out)
                }
            case .number:
                switch value {
                case .number(let v): RowBinary.append(v.bitPattern, to: &out)
                case .integer(let v): RowBinary.append(Double(v).bitPattern, to: &out)
                default: RowBinary.append(Double(0).bitPattern, to: &out)
                }
            case .bool:
                if case .bool(let v) = value { out.append(v ? 1 : 0) } else { out.append(0) }
            default:
                appendText(event, slot: slot, value: value, type: column.type, to: &out)
            }
        }
    }

    /// A String column's value: the field's text (UUIDs in canonical form, numbers as written).
    private func appendText(_ event: NormalizedEvent, slot: Int, value: StoredValue, type: FieldType, to out: inout [UInt8]) {
        switch value {
        case .absent, .null, .object: out.append(0)
        case .integer(let v): RowBinary.append(string: String(v).utf8, to: &out)
        case .number(let v): RowBinary.append(string: "\(v)".utf8, to: &out)
        case .bool(let v): RowBinary.append(string: (v ? "1" : "0").utf8, to: &out)
        case .timestamp(let micros, _, _, _): RowBinary.append(string: String(micros).utf8, to: &out)
        case .uuid(let uuid): RowBinary.append(string: uuid.description.utf8, to: &out)
        case .text(let start, let end, let escaped):
            if escaped || type == .uuid, case .string(let text)? = event.value(at: slot) {
                RowBinary.append(string: (type == .uuid ? StoreSupport.canonicalUUIDText(text) : text).utf8, to: &out)
            } else {
                RowBinary.append(string: event.json[Int(start)..<Int(end)], to: &out)
            }
        }
    }
}

/// ClickHouse's RowBinary format.
enum RowBinary {
    static func append(_ value: Int64, to out: inout [UInt8]) {
        append(UInt64(bitPattern: value), to: &out)
    }

    static func append(_ value: UInt64, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    /// A string: its length as LEB128, then its bytes.
    static func append<C: Collection>(string bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        var length = UInt64(bytes.count)
        repeat {
            var byte = UInt8(length & 0x7F)
            length >>= 7
            if length != 0 { byte |= 0x80 }
            out.append(byte)
        } while length != 0
        out += bytes
    }
}
