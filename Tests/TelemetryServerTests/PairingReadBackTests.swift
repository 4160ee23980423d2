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

/// A start asks the table for a completion that came first only by a key under which one may
/// wait (`WaitingCompletions`): a completion whose start never comes must not make every later
/// start ask, and two completions waiting under one key must both be found.
@Suite struct WaitingCompletionsTests {
    typealias Ops = OperationTests

    static func waitUntilPaired(_ store: SQLiteStore) async throws {
        while store.pairingLag > 0 { try await Task.sleep(for: .milliseconds(5)) }
    }

    @Test(arguments: [false, true]) func startsAskOnlyByKeysUnderWhichACompletionWaits(_ reopen: Bool) async throws {
        let path = PairingTests.newPath()
        var store = try PairingTests.open(path)
        // A completion whose start never comes, and two that come first under one task.
        try await Ops.write(store, [Ops.generationComplete(1, task: 900, at: 1)])
        try await Ops.write(store, [Ops.generationComplete(2, task: 5, at: 10), Ops.generationComplete(3, task: 5, at: 20)])
        try await Self.waitUntilPaired(store)
        if reopen {
            // The memory is read from the table.
            try store.close()
            store = try PairingTests.open(path)
        }
        defer { try? store.close() }
        // Fifty starts of other tasks: none has a completion waiting, none asks the table.
        try await Ops.write(store, (0..<50).map { Ops.generationStart(100 + $0, task: 1000 + $0, at: 2) })
        try await Self.waitUntilPaired(store)
        #expect(store.pairingStartQueries == 0)
        // The two starts of task 5: each asks, and each finds one of the waiting completions.
        try await Ops.write(store, [Ops.generationStart(4, task: 5, at: 0)])
        try await Ops.write(store, [Ops.generationStart(5, task: 5, at: 5)])
        try await Self.waitUntilPaired(store)
        #expect(store.pairingStartQueries == 2)
        let paired = try await Ops.operations(store, kind: "generation").filter { $0.startEventID != nil && $0.completeEventID != nil }
        #expect(paired.count == 2, "both completions of task 5 found their start")
        #expect(Set(paired.compactMap { $0.completeEventID?.description }) == [OperationTests.id(2), OperationTests.id(3)])
        // The orphan still waits; every other start stands open.
        let all = try await Ops.operations(store, kind: "generation")
        #expect(all.count == 2 + 1 + 50)
    }
}
