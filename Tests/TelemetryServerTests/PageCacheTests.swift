import Foundation
import GRDB
import Logging
import Testing

@testable import TelemetryStore

/// Each connection of the store gets the page cache of its role: the events writer
/// `cacheMiB`, the pairer's connection to the operations file half of it, and every reader
/// `readerCacheMiB`. (Readers are many, so a reader's cache the size of the writer's multiplied
/// the collector's RSS under queries.)
@Suite struct PageCacheTests {
    /// The page cache of a connection, KiB (SQLite reports a size in KiB as a negative number).
    static func cacheKiB(_ db: Database) throws -> Int {
        -(try Int.fetchOne(db, sql: "PRAGMA cache_size") ?? 0)
    }

    @Test func eachConnectionGetsTheCacheOfItsRole() async throws {
        var logger = Logger(label: "test.cache")
        logger.logLevel = .critical
        var configuration = SQLiteStoreConfiguration(path: PairingTests.newPath())
        configuration.cacheMiB = 12
        configuration.readerCacheMiB = 3
        let store = try SQLiteStore(configuration: configuration, logger: logger)
        defer { try? store.close() }
        #expect(try await store.pool.write { try Self.cacheKiB($0) } == 12 * 1024)
        #expect(try await store.pool.read { try Self.cacheKiB($0) } == 3 * 1024)
        #expect(try await store.operationsDatabase.read { try Self.cacheKiB($0) } == 6 * 1024)
        // Several readers at once: each is a connection of its own, with the same small cache.
        let sizes = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await store.pool.read { db in
                        Thread.sleep(forTimeInterval: 0.05)
                        return try Self.cacheKiB(db)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sizes == [3072, 3072, 3072, 3072])
    }
}
