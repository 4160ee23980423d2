import Foundation
import Synchronization

/// Batches the collector could not take yet, oldest first: files in a folder (so they survive a
/// restart and are replayed at the next start), or memory when no folder is configured. Bounded in
/// bytes: appending past the bound drops the oldest batches, whose events are counted as dropped.
final class Spool: Sendable {
    struct Entry: Sendable {
        var sequence: Int
        var count: Int
        var bytes: Int
        /// In memory only; on disk the body is read back when the batch is retried.
        var body: [UInt8]?
    }

    private struct State {
        var entries: [Entry] = []
        var bytes = 0
        var nextSequence = 1
    }

    private let directory: String?
    private let maxBytes: Int
    private let state: Mutex<State>

    /// Opens the spool; a folder's existing batches (from an earlier run) come first.
    init(directory: String?, maxBytes: Int) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        var state = State()
        if let directory {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() where name.hasSuffix(".batch") {
                let parts = name.dropLast(".batch".count).split(separator: "-")
                guard parts.count == 2, let sequence = Int(parts[0]), let count = Int(parts[1]) else { continue }
                let size = (try? FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(name))[.size] as? Int) ?? 0
                state.entries.append(Entry(sequence: sequence, count: count, bytes: size, body: nil))
                state.bytes += size
                state.nextSequence = max(state.nextSequence, sequence + 1)
            }
        }
        self.state = Mutex(state)
    }

    var isEmpty: Bool { state.withLock { $0.entries.isEmpty } }

    /// Adds a batch at the end; returns how many events were dropped from the front to make room.
    func append(_ body: [UInt8], count: Int) -> Int {
        let (sequence, evicted) = state.withLock { state -> (Int, [Entry]) in
            let sequence = state.nextSequence
            state.nextSequence += 1
            state.entries.append(Entry(sequence: sequence, count: count, bytes: body.count, body: directory == nil ? body : nil))
            state.bytes += body.count
            var evicted: [Entry] = []
            while state.bytes > maxBytes, state.entries.count > 1 {
                let oldest = state.entries.removeFirst()
                state.bytes -= oldest.bytes
                evicted.append(oldest)
            }
            return (sequence, evicted)
        }
        if let directory {
            let path = (directory as NSString).appendingPathComponent(Self.name(sequence, count))
            // Written whole and renamed into place, so a crash never leaves half a batch.
            let temporary = path + ".tmp"
            if FileManager.default.createFile(atPath: temporary, contents: Data(body)) {
                _ = rename(temporary, path)
            }
            for entry in evicted { unlink((directory as NSString).appendingPathComponent(Self.name(entry.sequence, entry.count))) }
        }
        return evicted.reduce(0) { $0 + $1.count }
    }

    /// The oldest batch, if any.
    func head() -> (body: [UInt8], count: Int)? {
        guard let entry = state.withLock({ $0.entries.first }) else { return nil }
        if let body = entry.body { return (body, entry.count) }
        guard let directory,
            let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(Self.name(entry.sequence, entry.count)))
        else {
            removeHead()
            return head()
        }
        return ([UInt8](data), entry.count)
    }

    /// Forgets the oldest batch (it was delivered).
    func removeHead() {
        guard let entry = state.withLock({ state -> Entry? in
            guard !state.entries.isEmpty else { return nil }
            let entry = state.entries.removeFirst()
            state.bytes -= entry.bytes
            return entry
        }) else { return }
        if let directory { unlink((directory as NSString).appendingPathComponent(Self.name(entry.sequence, entry.count))) }
    }

    private static func name(_ sequence: Int, _ count: Int) -> String {
        String(format: "%020d-%d.batch", sequence, count)
    }
}
