import Foundation
import GRDB
import TelemetryCatalog

/// The operations table's columns and, for every compiled event, the lifecycle roles it plays,
/// all derived from the catalog's lifecycle definitions.
struct OperationLayout: Sendable {
    /// An attribute or span column.
    struct Column: Sendable {
        let name: String
        let type: FieldType
        var quoted: String { "\"\(name)\"" }
        var sqlType: String { ColumnLayout.sqlType(type) }
    }

    /// What an event of some type does for one lifecycle. A class: pairing passes it around for
    /// every lifecycle event, and a struct of this many arrays costs a retain of each per copy.
    final class Role: @unchecked Sendable {
        let lifecycle: Int
        let kind: String
        let isCompletion: Bool
        /// For each pairing key of the lifecycle, the slot of this side's field.
        let keySlots: [Int]
        /// The slot of the bool field that must be true for the event to count, if any.
        let conditionSlot: Int?
        /// The slot of the completion's result field, if any.
        let resultSlot: Int?
        /// Attribute columns this side can fill: index into `columns`, and the event's slot.
        let attributes: [(column: Int, slot: Int)]
        /// The lifecycle's spans: their column and both instants, each either a slot of this event
        /// or a column of the operation's row that the other half filled.
        let spans: [(column: Int, from: Instant, to: Instant)]
        /// The operation-row columns holding the other half's instants that spans need (read with
        /// the match, so pairing never reads the events table).
        let otherColumns: [String]
        /// This half's instants that the other half's spans need, other than its `timestamp`
        /// (`started_us`/`completed_us`): kept in the operation's row, in these columns.
        let ownInstants: [(column: String, slot: Int)]
        /// Finds the open other half by each key (nil for a completion's keys beyond the first it
        /// matches by, which are found at run time).
        /// Set once, when the layout is built.
        fileprivate(set) var matchSQL: [String] = []
        fileprivate(set) var insertSQL = ""
        fileprivate(set) var updateSQL = ""

        init(
            lifecycle: Int, kind: String, isCompletion: Bool, keySlots: [Int], conditionSlot: Int?, resultSlot: Int?,
            attributes: [(column: Int, slot: Int)], spans: [(column: Int, from: Instant, to: Instant)], otherColumns: [String],
            ownInstants: [(column: String, slot: Int)]
        ) {
            self.lifecycle = lifecycle
            self.kind = kind
            self.isCompletion = isCompletion
            self.keySlots = keySlots
            self.conditionSlot = conditionSlot
            self.resultSlot = resultSlot
            self.attributes = attributes
            self.spans = spans
            self.otherColumns = otherColumns
            self.ownInstants = ownInstants
        }
    }

    enum Instant: Sendable {
        case here(slot: Int)
        case other(index: Int)
    }

    let lifecycles: [LifecycleDefinition]
    let columns: [Column]
    /// Columns of the instants spans need, other than the halves' timestamps: `_start_FIELD_us`,
    /// `_complete_FIELD_us` (UTC microseconds). Not attributes: never listed in answers.
    let instantColumns: [String]
    let columnIndex: [String: Int]
    /// By compiled event index.
    let roles: [[Role]]

    init(catalog: Catalog) {
        lifecycles = catalog.lifecycles
        // The attribute's type: the completion's when it has the field, else the start's.
        func fieldType(_ name: String, _ eventType: String) -> FieldType? {
            guard let definition = catalog.latest(eventType) else { return nil }
            return catalog.allFields(of: definition).first { $0.name == name }?.type
        }
        var columns: [Column] = []
        var columnIndex: [String: Int] = [:]
        for lifecycle in lifecycles {
            for name in lifecycle.attributes where columnIndex[name] == nil {
                let type = fieldType(name, lifecycle.completeEventType) ?? fieldType(name, lifecycle.startEventType) ?? .string
                columnIndex[name] = columns.count
                columns.append(Column(name: name, type: ColumnLayout.isColumn(type) ? type : .string))
            }
            for span in lifecycle.spans where columnIndex[span.name] == nil {
                columnIndex[span.name] = columns.count
                columns.append(Column(name: span.name, type: .number))
            }
        }
        self.columns = columns
        self.columnIndex = columnIndex
        func instantColumn(_ instant: LifecycleDefinition.Instant) -> String {
            if instant.field == "timestamp" { return instant.ofCompletion ? "completed_us" : "started_us" }
            return "_\(instant.ofCompletion ? "complete" : "start")_\(instant.field)_us"
        }
        var instantColumns: [String] = []
        for lifecycle in lifecycles {
            for span in lifecycle.spans {
                for instant in [span.from, span.to] where instant.field != "timestamp" {
                    let column = instantColumn(instant)
                    if !instantColumns.contains(column) { instantColumns.append(column) }
                }
            }
        }
        self.instantColumns = instantColumns

        roles = catalog.compiled.map { compiled in
            guard let eventType = compiled.definition?.eventType else { return [] }
            func slot(_ name: String?) -> Int? {
                guard let name else { return nil }
                return compiled.fields.firstIndex { $0.name == name }
            }
            var roles: [Role] = []
            for (index, lifecycle) in catalog.lifecycles.enumerated() {
                for isCompletion in [false, true] {
                    let type = isCompletion ? lifecycle.completeEventType : lifecycle.startEventType
                    guard type == eventType else { continue }
                    let keySlots = lifecycle.keys.map { slot(isCompletion ? $0.completeField : $0.startField) ?? -1 }
                    let attributes = lifecycle.attributes.compactMap { name in slot(name).map { (column: columnIndex[name]!, slot: $0) } }
                    var otherColumns: [String] = []
                    var ownInstants: [(column: String, slot: Int)] = []
                    func instant(_ instant: LifecycleDefinition.Instant) -> Instant {
                        if instant.ofCompletion == isCompletion {
                            guard let s = slot(instant.field) else { return .other(index: -1) }
                            if instant.field != "timestamp" && !ownInstants.contains(where: { $0.slot == s }) {
                                ownInstants.append((instantColumn(instant), s))
                            }
                            return .here(slot: s)
                        }
                        let column = instantColumn(instant)
                        if let i = otherColumns.firstIndex(of: column) { return .other(index: i) }
                        otherColumns.append(column)
                        return .other(index: otherColumns.count - 1)
                    }
                    let spans = lifecycle.spans.map { (column: columnIndex[$0.name]!, from: instant($0.from), to: instant($0.to)) }
                    roles.append(
                        Role(
                            lifecycle: index, kind: lifecycle.kind, isCompletion: isCompletion, keySlots: keySlots,
                            conditionSlot: slot(isCompletion ? lifecycle.completesWhen : lifecycle.startsWhen),
                            resultSlot: isCompletion ? slot(lifecycle.resultField) : nil, attributes: attributes, spans: spans,
                            otherColumns: otherColumns, ownInstants: ownInstants))
                }
            }
            return roles.map { Self.withStatements($0, columns: columns) }
        }
    }

    /// Prepares the SQL a role runs. Both halves write the same row: whichever arrives first
    /// inserts it, the second fills in its side.
    private static func withStatements(_ role: Role, columns: [Column]) -> Role {
        let keyCount = role.keySlots.count
        let mine = role.isCompletion ? "complete" : "start"
        role.matchSQL = (0..<keyCount).map { i in
            var conditions = ["kind = ?", "tenant_id = ?", "key\(i + 1) = ?"]
            if role.isCompletion {
                conditions += ["start_seq IS NOT NULL", "complete_seq IS NULL"]
            } else {
                // A completion that named a more specific key pairs only by that one.
                conditions += ["start_seq IS NULL"] + (0..<i).map { "key\($0 + 1) IS NULL" }
            }
            return "SELECT _seq\(role.otherColumns.map { ", \"\($0)\"" }.joined()) FROM operations WHERE "
                + conditions.joined(separator: " AND ") + " ORDER BY _seq LIMIT 1"
        }
        let attributeNames = role.attributes.map { columns[$0.column].quoted }
        let spanNames = role.spans.map { columns[$0.column].quoted }
        let instantNames = role.ownInstants.map { "\"\($0.column)\"" }
        let insertColumns =
            ["kind", "tenant_id"] + (0..<keyCount).map { "key\($0 + 1)" }
            + ["status", role.isCompletion ? "completed_us" : "started_us", "_at_us", "\(mine)_event_id", "\(mine)_seq"]
            + attributeNames + spanNames + instantNames
        role.insertSQL =
            "INSERT INTO operations (\(insertColumns.joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: insertColumns.count).joined(separator: ", ")))"
        var sets: [String]
        if role.isCompletion {
            sets = ["status = ?", "completed_us = ?", "duration_ms = (? - started_us) / 1000.0", "complete_event_id = ?", "complete_seq = ?"]
            sets += attributeNames.map { "\($0) = COALESCE(?, \($0))" }
        } else {
            sets = ["started_us = ?", "_at_us = ?", "duration_ms = (completed_us - ?) / 1000.0", "start_event_id = ?", "start_seq = ?"]
            sets += (0..<keyCount).map { "key\($0 + 1) = COALESCE(key\($0 + 1), ?)" }
            sets += attributeNames.map { "\($0) = COALESCE(\($0), ?)" }
        }
        sets += spanNames.map { "\($0) = ?" }
        sets += instantNames.map { "\($0) = ?" }
        // A completion completes an open operation only (the pairer's memory of open starts may
        // name one completed since; it then sees no row changed).
        role.updateSQL = "UPDATE operations SET \(sets.joined(separator: ", ")) WHERE _seq = ?"
            + (role.isCompletion ? " AND complete_seq IS NULL" : "")
        return role
    }
}
