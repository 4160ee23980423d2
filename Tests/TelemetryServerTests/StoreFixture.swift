import Foundation
import Logging
import TelemetryClickHouse
import TelemetryStore
import Testing

/// The stores every conformance test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case clickhouse

    var testDescription: String { rawValue }
}

/// What the tests read from a store beyond the protocol.
protocol TestableStore: EventStore {
    /// Stored events (each once) and rejections.
    func counts() async throws -> (events: Int, rejected: Int)
}

extension SQLiteStore: TestableStore {}
extension ClickHouseStore: TestableStore {}

/// Opens a store of `kind` (on a new file or database, or on `name` to reopen one), runs `body`,
/// closes it; a new database is dropped afterwards unless named.
func withStore<T>(
    _ kind: StoreKind, name: String? = nil, stuckAfter: [String: Int] = [:], _ body: (any TestableStore) async throws -> T
) async throws -> T {
    var logger = Logger(label: "test.store")
    logger.logLevel = .critical
    switch kind {
    case .sqlite:
        // A new store lives in a folder of its own (the file, its log, the operations file), removed
        // afterwards; a named one is the caller's to remove.
        let folder = TestScratch.path("store-\(UUID().uuidString)")
        let path = name ?? folder.appendingPathComponent("telemetry.sqlite").path
        defer { if name == nil { try? FileManager.default.removeItem(at: folder) } }
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = .normal
        configuration.stuckAfterSeconds = stuckAfter
        let store = try SQLiteStore(configuration: configuration, logger: logger)
        defer { try? store.close() }
        return try await body(store)
    case .clickhouse:
        var configuration = try newClickHouseDatabase().configuration
        if let name { configuration.location.database = name }
        configuration.stuckAfterSeconds = stuckAfter
        let store = try await ClickHouseStore(configuration: configuration, logger: logger)
        do {
            let result = try await body(store)
            if name == nil { try? await store.dropDatabase() }
            store.close()
            return result
        } catch {
            if name == nil { try? await store.dropDatabase() }
            store.close()
            throw error
        }
    }
}

/// A name for a store to reopen (a file path in a folder of its own, or a database name); see
/// ``removeReopenableStore(_:_:)``.
func reopenableStoreName(_ kind: StoreKind) -> String {
    switch kind {
    case .sqlite: TestScratch.path("store-\(UUID().uuidString)/telemetry.sqlite").path
    case .clickhouse: newDatabaseName()
    }
}

/// Removes the files of a store named by ``reopenableStoreName(_:)`` (a ClickHouse database goes
/// with the test server's folder).
func removeReopenableStore(_ kind: StoreKind, _ name: String) {
    if kind == .sqlite { try? FileManager.default.removeItem(atPath: (name as NSString).deletingLastPathComponent) }
}

/// A database of its own on the shared local ClickHouse: the server and a configuration for it.
func newClickHouseDatabase() throws -> (server: ClickHouseLocalServer, database: String, configuration: ClickHouseStoreConfiguration) {
    let server = try ClickHouseLocalServer.shared()
    let database = newDatabaseName()
    return (server, database, ClickHouseStoreConfiguration(location: server.location(database: database)))
}

/// A database name no other test uses.
func newDatabaseName() -> String { "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() }
