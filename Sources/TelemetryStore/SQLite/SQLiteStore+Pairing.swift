import Foundation
import GRDB
import TelemetryCatalog

extension SQLiteStore {
    /// Pairs the events a transaction just stored into operations, in the same transaction, so that
    /// operations are exactly as durable as the events they come from.
    ///
    /// Only newly stored events pair (a duplicate has no sequence number), which makes pairing
    /// idempotent; halves pair whatever order they arrive in, and never across tenants.
    func pairOperations(_ events: [IncomingEvent], _ sequences: [Int64?], _ db: Database) throws {
        for (index, incoming) in events.enumerated() {
            guard let sequence = sequences[index] else { continue }
            for role in operationLayout.roles[incoming.event.compiled.index] {
                try pair(incoming.event, sequence, role, db)
            }
        }
    }

    private func pair(_ event: NormalizedEvent, _ sequence: Int64, _ role: OperationLayout.Role, _ db: Database) throws {
        if let condition = role.conditionSlot, event.value(at: condition) != .bool(true) { return }
        let keys = role.keySlots.map { $0 >= 0 ? OperationLayout.databaseValue(event.value(at: $0)) : .null }
        let tenant = event.tenantID.withBytes { Data($0) }
        let eventID = event.eventID.withBytes { Data($0) }
        let time = event.timestampMicros

        // Find the other half: a completion pairs by the first key it carries; a start by any key
        // under which a completion waits.
        var match: Row?
        for (i, key) in keys.enumerated() where !key.isNull {
            match = try Row.fetchOne(
                db.cachedStatement(sql: role.matchSQL[i]), arguments: [role.kind, tenant, key])
            if match != nil || role.isCompletion { break }
        }

        let status: DatabaseValue
        if role.isCompletion {
            let succeeded = role.resultSlot.map { event.value(at: $0) == .bool(true) } ?? true
            status = (succeeded ? OperationStatus.succeeded : .failed).rawValue.databaseValue
        } else {
            status = OperationStatus.running.rawValue.databaseValue
        }
        let attributes = role.attributes.map { OperationLayout.databaseValue(event.value(at: $0.slot)) }

        guard let match else {
            // The first half to arrive: a new operation.
            let spans = try spanValues(event, role, otherSequence: nil, db)
            var arguments: [DatabaseValue] = [role.kind.databaseValue, tenant.databaseValue] + keys
            arguments += [status, time.databaseValue, time.databaseValue, eventID.databaseValue, sequence.databaseValue]
            try db.cachedStatement(sql: role.insertSQL).execute(arguments: StatementArguments(arguments + attributes + spans))
            return
        }
        let operation: Int64 = match[0]
        let otherSequence: Int64? = role.isCompletion ? match[3] : match[4]
        let spans = try spanValues(event, role, otherSequence: otherSequence, db)
        var arguments: [DatabaseValue]
        if role.isCompletion {
            arguments = [status, time.databaseValue, time.databaseValue, eventID.databaseValue, sequence.databaseValue]
        } else {
            arguments = [time.databaseValue, time.databaseValue, time.databaseValue, eventID.databaseValue, sequence.databaseValue]
            arguments += keys
        }
        arguments += attributes + spans + [operation.databaseValue]
        try db.cachedStatement(sql: role.updateSQL).execute(arguments: StatementArguments(arguments))
    }

    /// Each span of the role's lifecycle in milliseconds, or null while an instant is unknown.
    private func spanValues(_ event: NormalizedEvent, _ role: OperationLayout.Role, otherSequence: Int64?, _ db: Database)
        throws -> [DatabaseValue]
    {
        guard !role.spans.isEmpty else { return [] }
        var other: Row?
        if let otherSequence, !role.otherSQL.isEmpty {
            other = try Row.fetchOne(db.cachedStatement(sql: role.otherSQL), arguments: [otherSequence])
        }
        func micros(_ instant: OperationLayout.Instant) -> Int64? {
            switch instant {
            case .here(let slot):
                if case .timestamp(_, let micros)? = event.value(at: slot) { return micros }
                return nil
            case .other(let index):
                return other?[index]
            }
        }
        return role.spans.map { span in
            guard let from = micros(span.from), let to = micros(span.to) else { return .null }
            return (Double(to - from) / 1000).databaseValue
        }
    }
}
