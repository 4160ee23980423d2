import Foundation
import GRDB
import TelemetryCatalog
import Testing

@testable import TelemetryStore

/// Events that pairing reads back from the table (it lagged, or the store reopened) are put back
/// together from their typed columns (`StoredLifecycleEvents`); what they pair into must be what
/// the same events paired into when handed over in memory, column for column.
@Suite struct PairingReadBackTests {
    /// Sampled events of every type, completions linked to earlier starts, in batches of 500.
    static func batches(_ count: Int, seed: UInt64) -> [WriteBatch] {
        var sampler = EventSampler(seed: seed)
        sampler.linksLifecycles = true
        var validator = EventValidator()
        return (0..<count).map { number in
            let requestID = String(format: "c0000000-0000-4000-8000-%012d", number)
            let events = (0..<500).compactMap { _ -> IncomingEvent? in
                guard case .valid(let event) = validator.validate(sampler.sample().render()) else { return nil }
                return IncomingEvent(event: event, receivedMicros: 1_795_000_000_000_000, requestID: requestID)
            }
            return WriteBatch(events: events)
        }
    }

    /// Every row of the operations table, in order, every column rendered.
    static func operationRows(_ store: SQLiteStore) async throws -> [String] {
        while store.pairingLag > 0 { try await Task.sleep(for: .milliseconds(10)) }
        return try await store.operationsDatabase.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM operations ORDER BY _seq").map { row in
                row.columnNames.map { name in "\(name)=\(row[name] as DatabaseValue)" }.joined(separator: " ")
            }
        }
    }

    @Test func operationsReadBackFromColumnsEqualThosePairedInMemory() async throws {
        let batches = Self.batches(12, seed: 41)
        let inMemory = PairingTests.newPath()
        let readBack = PairingTests.newPath()
        let expected: [String]
        do {
            let store = try PairingTests.open(inMemory)
            for batch in batches { _ = try await store.write(batch) }
            expected = try await Self.operationRows(store)
            try store.close()
        }
        do {
            let store = try PairingTests.open(readBack, pairs: false)
            for batch in batches { _ = try await store.write(batch) }
            try store.close()
        }
        let store = try PairingTests.open(readBack)
        defer { try? store.close() }
        let rows = try await Self.operationRows(store)
        // Thousands of operations, completed and still open, of every lifecycle.
        #expect(expected.count > 1000)
        #expect(expected.contains { $0.contains("status=\"running\"") } && expected.contains { $0.contains("status=\"succeeded\"") })
        #expect(rows.count == expected.count)
        for (row, wanted) in zip(rows, expected) where row != wanted {
            Issue.record("read back: \(row)\nin memory: \(wanted)")
            break
        }
    }

    /// The catalog's lifecycle types all read from their columns: a type that falls back to the
    /// JSON is still paired right, but pays for validating it again.
    @Test func everyLifecycleTypeIsReadFromItsColumns() throws {
        let store = try PairingTests.open(PairingTests.newPath())
        defer { try? store.close() }
        let catalog = Catalog.builtin
        let reader = StoredLifecycleEvents(catalog: catalog, layout: store.operationLayout, storedForm: store.storedForm)
        let lifecycleTypes = Set(
            catalog.compiled.compactMap { compiled -> String? in
                guard let definition = compiled.definition, !store.operationLayout.roles[compiled.index].isEmpty else { return nil }
                return definition.eventType + " " + definition.version
            })
        #expect(!lifecycleTypes.isEmpty)
        #expect(reader.readableTypes == lifecycleTypes, "read the full way: \(lifecycleTypes.subtracting(reader.readableTypes).sorted())")
    }
}
