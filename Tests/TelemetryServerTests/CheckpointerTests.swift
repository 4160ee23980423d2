import Foundation
import TelemetryCatalog
import TelemetryStore
import Testing

/// The events file's log is copied back into the database on a thread of its own (`Checkpointer`):
/// it must do the copying, the log must stay bounded while the writer writes back to back, and
/// nothing written may be missing afterwards.
@Suite struct CheckpointerTests {
    static func open(_ path: String, background: Bool, checkpointPages: Int) throws -> SQLiteStore {
        try PairingTests.open(path, pairs: false, backgroundCheckpoints: background, checkpointPages: checkpointPages)
    }

    /// Batches of 500 distinct sampled events, validated.
    static func batches(_ count: Int, seed: UInt64) -> [WriteBatch] {
        var sampler = EventSampler(seed: seed)
        var validator = EventValidator()
        return (0..<count).map { _ in
            let requestID = UUID().uuidString.lowercased()
            let events = (0..<500).compactMap { _ -> IncomingEvent? in
                guard case .valid(let event) = validator.validate(sampler.sample().render()) else { return nil }
                return IncomingEvent(event: event, receivedMicros: 1, requestID: requestID)
            }
            return WriteBatch(events: events)
        }
    }

    /// The store's threads name themselves (what `bench ingest` and `top -H` go by), right as
    /// they start: many threads at once, each reading its name back from the kernel.
    @Test func aNewThreadNamesItselfAtOnce() async throws {
        let names = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for index in 0..<32 {
                group.addTask {
                    try await withCheckedThrowingContinuation { continuation in
                        let thread = Thread {
                            let name = "xumi-name-\(index)"
                            StoreSupport.nameCurrentThread(name)
                            let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
                            continuation.resume(returning: (name, comm.trimmingCharacters(in: .newlines)))
                        }
                        thread.start()
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(names.count == 32)
        for (wanted, read) in names { #expect(read == wanted) }
    }

    static func walBytes(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0
    }

    @Test func theThreadCopiesTheLogWhichStaysBoundedAndLosesNothing() async throws {
        let path = PairingTests.newPath()
        // A log of 128 pages (1 MiB) before the writer's own checkpoint; ~12 MiB are written.
        let store = try Self.open(path, background: true, checkpointPages: 128)
        let batches = Self.batches(16, seed: 5)
        var largestLog = 0
        var stored = 0
        for batch in batches {
            stored += try await store.write(batch).stored
            largestLog = max(largestLog, Self.walBytes(path))
        }
        // The thread runs after commits; give it the last one.
        var statistics = store.backgroundCheckpoints
        for _ in 0..<200 where statistics.checkpoints < 2 {
            try await Task.sleep(for: .milliseconds(10))
            statistics = store.backgroundCheckpoints
        }
        #expect(stored == 8_000)
        #expect(statistics.checkpoints >= 2)
        #expect(statistics.framesCopied > 128, "the checkpoint thread copied \(statistics.framesCopied) frames")
        // Restarted from its beginning again and again: far below the ~12 MiB written (one
        // transaction of 500 events beyond the threshold is ~1.5 MiB).
        #expect(largestLog < 4 << 20, "the log grew to \(largestLog) bytes")
        try store.close()

        let reopened = try Self.open(path, background: true, checkpointPages: 128)
        defer { try? reopened.close() }
        #expect(try await reopened.integrityCheck() == "ok")
        var read = Set<Int64>()
        var before: Int64? = nil
        repeat {
            let page = try await reopened.events(EventQuery(limit: 1000, before: before))
            read.formUnion(page.events.map(\.sequence))
            before = page.nextBefore
        } while before != nil
        #expect(read.count == 8_000)
        for incoming in batches.first!.events.prefix(50) + batches.last!.events.suffix(50) {
            #expect(try await reopened.event(id: incoming.event.eventID, tenant: nil) != nil)
        }
    }

    @Test func withoutTheThreadTheWriterCheckpointsAlone() async throws {
        let path = PairingTests.newPath()
        let store = try Self.open(path, background: false, checkpointPages: 128)
        defer { try? store.close() }
        for batch in Self.batches(4, seed: 6) { _ = try await store.write(batch) }
        #expect(store.backgroundCheckpoints.checkpoints == 0)
        #expect(Self.walBytes(path) < 4 << 20)
    }
}
