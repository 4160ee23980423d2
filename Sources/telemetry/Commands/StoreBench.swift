import ArgumentParser
import Foundation
import Logging
import TelemetryCatalog
import TelemetryStore

struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "The SQLite store's write path alone, against plain SQLite appends in the same run.",
        discussion: """
            Generates and validates realistic events (random v4 ids, completions linked to earlier \
            starts), then measures, in alternating rounds on fresh files: \
            (a) the baseline, the same NDJSON lines appended into a plain SQLite table (rowid, blob) \
            in WAL mode, --batch-size a transaction, through SQLite's C API (and again through \
            GRDB's execute(sql:arguments:) a row: how the collector issue measured its baseline; \
            both ratios are printed); (b) the store with its checkpoints on the \
            writer's thread (SQLite's automatic checkpoint alone); (c) the store as `serve` runs it \
            (checkpoints on a thread of their own). (b) and (c) are write() of the validated events, \
            --batch-size a transaction (the group commit of `serve` gathers ~2,000 under `bench ingest`): \
            typed columns, the dedupe index, the other indexes, durable commit; pairing off. \
            No HTTP and no validation in the timed part: this is the writer's share of `bench ingest`.

            Medians of the rounds are reported: events/s; the CPU an event of (a) and (c), every \
            thread of the process counted (steadier than rates on a shared machine, since waiting \
            for a core does not count); and the bytes an event of (a)'s and (c)'s files once \
            closed (the store keeps each field once: its typed column, with the rest of the JSON \
            beside it).

            With --preload N the store already holds N other events (random v4 ids too) when (c) \
            starts, and (b) is left out: the write rate of a store that has grown (its dedupe index \
            merges ids into a table that grows with it). The rate of the preload itself is printed \
            for each tenth of it. The baseline's table starts empty (an \
            append does not depend on the table's size). A preload takes minutes and ~0.7 KiB of \
            disk an event.
            """
    )

    @Option(help: "Distinct events to write.")
    var events: Int = 200_000

    @Option(help: "Events per transaction.")
    var batchSize: Int = 2_000

    @Option(help: "fsync setting of both: full or normal.")
    var fsync: String = "full"

    @Option(help: "Rounds of each measurement.")
    var rounds: Int = 3

    @Option(help: "Seed of the generated events.")
    var seed: UInt64 = 1

    @Option(help: "Events already stored when the measured writes start (see above); 0 for none.")
    var preload: Int = 0

    @Option(help: "The writer's page cache, MiB (serve --cache-mib).")
    var cacheMib: Int = SQLiteStoreConfiguration(path: "").cacheMiB

    func validate() throws {
        guard events > 0, batchSize > 0, rounds > 0 else { throw ValidationError("counts must be positive") }
        guard cacheMib > 0 else { throw ValidationError("--cache-mib must be positive") }
        guard preload >= 0 else { throw ValidationError("--preload must be 0 or more") }
        guard fsync == "full" || fsync == "normal" else { throw ValidationError("--fsync is full or normal") }
    }

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-store-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var sampler = EventSampler(seed: seed)
        sampler.linksLifecycles = true
        var ndjsonBatches: [[UInt8]] = []
        var writeBatches: [WriteBatch] = []
        var validator = EventValidator()
        var produced = 0
        var payloadBytes = 0
        let received = Int64(Date().timeIntervalSince1970 * 1e6)
        while produced < events {
            let count = min(batchSize, events - produced)
            let body = sampler.ndjson(count: count)
            payloadBytes += body.count
            ndjsonBatches.append(body)
            writeBatches.append(try Self.writeBatch(body, &validator, received: received))
            produced += count
        }
        print("events: \(events) in \(writeBatches.count) transactions of \(batchSize), \(formatBytes(payloadBytes)); fsync \(fsync)"
            + (preload > 0 ? "; \(preload) events stored before" : ""))

        var baselines: [Double] = []
        var grdbBaselines: [Double] = []
        var inline: [Double] = []
        var stores: [Double] = []
        // CPU seconds of the process (every thread) while each was timed: steadier than rates on a
        // shared machine, since time spent waiting for a core does not count.
        var baselineCPU: [Double] = []
        var storeCPU: [Double] = []
        // Bytes of each file once closed (the log checkpointed into it), from the last round.
        var baselineBytes: Int64 = 0
        var storeBytes: Int64 = 0
        func fileBytes(_ url: URL) -> Int64 {
            ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
        }
        for round in 1...rounds {
            let folder = directory.appendingPathComponent("round-\(round)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let append = try sqliteAppendBaseline(ndjsonBatches, path: folder.appendingPathComponent("baseline.sqlite").path, fsync: fsync)
            baselines.append(append.seconds)
            baselineCPU.append(append.cpuSeconds)
            baselineBytes = fileBytes(folder.appendingPathComponent("baseline.sqlite"))
            grdbBaselines.append(
                try sqliteAppendBaseline(ndjsonBatches, path: folder.appendingPathComponent("grdb.sqlite").path, fsync: fsync, through: .grdb).seconds)
            if preload == 0 {
                inline.append(
                    try await measureStore(writeBatches, path: folder.appendingPathComponent("inline/telemetry.sqlite").path, background: false).seconds)
            }
            let (storeSeconds, cpu) = try await measureStore(
                writeBatches, path: folder.appendingPathComponent("store/telemetry.sqlite").path, background: true)
            stores.append(storeSeconds)
            storeCPU.append(cpu)
            storeBytes = fileBytes(folder.appendingPathComponent("store/telemetry.sqlite"))
            try? FileManager.default.removeItem(at: folder)
            print(String(format: "round %d: baseline %.0f (GRDB %.0f), ", round, Double(events) / baselines.last!, Double(events) / grdbBaselines.last!)
                + (inline.last.map { String(format: "checkpoints inline %.0f, ", Double(events) / $0) } ?? "")
                + String(format: "store %.0f events/s", Double(events) / stores.last!))
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let baseline = median(baselines)
        let store = median(stores)
        print(String(format: "baseline: SQLite append (rowid, blob)       %8.0f events/s", Double(events) / baseline))
        print(String(format: "baseline: GRDB append, a row a call         %8.0f events/s", Double(events) / median(grdbBaselines)))
        if !inline.isEmpty {
            print(String(format: "store, checkpoints on the writer's thread   %8.0f events/s", Double(events) / median(inline)))
        }
        print(String(format: "store: write() of validated events          %8.0f events/s", Double(events) / store)
            + (preload > 0 ? " (after \(preload) events)" : ""))
        print(String(format: "CPU an event (all threads): store %.1f µs, baseline %.1f µs",
            1e6 * median(storeCPU) / Double(events), 1e6 * median(baselineCPU) / Double(events)))
        if preload == 0 {
            // The events file only: operations (pairing is off here) have a file of their own.
            print(String(format: "disk: store %.0f bytes an event, baseline %.0f", Double(storeBytes) / Double(events), Double(baselineBytes) / Double(events)))
        }
        print(String(format: "ratio: store at %.0f%% of the baseline", 100 * baseline / store)
            + String(format: ", %.0f%% of the GRDB append", 100 * median(grdbBaselines) / store)
            + (inline.isEmpty ? "" : String(format: "; checkpoints on their own thread: %+.0f%% events/s", 100 * (median(inline) / store - 1))))
    }

    /// Seconds the store takes to write `batches` into a new store at `path`, and the CPU seconds
    /// the process used meanwhile (the checkpoint thread's included).
    private func measureStore(_ batches: [WriteBatch], path: String, background: Bool) async throws -> (seconds: Double, cpu: Double) {
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = Durability(name: fsync)!
        configuration.pairsOperations = false
        configuration.checkpointsInBackground = background
        configuration.cacheMiB = cacheMib
        let store = try SQLiteStore(configuration: configuration, logger: Logger(label: "bench"))
        if preload > 0 && background { try await fill(store) }
        let started = MonotonicClock.now()
        let cpuBefore = processCPUSeconds()
        var stored = 0
        for batch in batches {
            stored += try await store.write(batch).sequences.count { $0 != nil }
        }
        let seconds = Double(MonotonicClock.now() - started) / 1e9
        let cpu = processCPUSeconds() - cpuBefore
        try store.close()
        guard stored == events else { throw CommandFailure("the store stored \(stored) of \(events) events") }
        return (seconds, cpu)
    }

    /// The events of the NDJSON `body`, validated, as one write batch, with a new request id every
    /// 1,000 events (what the requests of `bench ingest` carry).
    static func writeBatch(_ body: [UInt8], _ validator: inout EventValidator, received: Int64) throws -> WriteBatch {
        var batch = WriteBatch()
        var requestID = ""
        var start = 0
        for (i, byte) in body.enumerated() where byte == UInt8(ascii: "\n") {
            if batch.events.count % 1000 == 0 { requestID = UUID().uuidString.lowercased() }
            let result = body[start..<i].withUnsafeBytes { validator.validate($0) }
            start = i + 1
            guard case .valid(let event) = result else { throw CommandFailure("a generated event did not validate") }
            batch.events.append(IncomingEvent(event: event, receivedMicros: received, requestID: requestID))
        }
        return batch
    }

    /// Writes --preload events other than the measured ones into `store`, --batch-size a
    /// transaction, and prints the write rate of each tenth (generation and validation untimed).
    private func fill(_ store: SQLiteStore) async throws {
        var sampler = EventSampler(seed: seed &+ 0x9E37_79B9)
        sampler.linksLifecycles = true
        var validator = EventValidator()
        var progress = ProgressBar(total: preload, minimumTotal: 1, items: "events")
        let received = Int64(Date().timeIntervalSince1970 * 1e6)
        let tenth = max(1, preload / 10)
        var written = 0
        var sliceStart = 0
        var sliceSeconds = 0.0
        while written < preload {
            let batch = try Self.writeBatch(sampler.ndjson(count: min(batchSize, preload - written)), &validator, received: received)
            let started = MonotonicClock.now()
            let stored = try await store.write(batch).sequences.count { $0 != nil }
            sliceSeconds += Double(MonotonicClock.now() - started) / 1e9
            guard stored == batch.events.count else { throw CommandFailure("the preload stored \(stored) of \(batch.events.count) events") }
            written += stored
            progress.update(bytes: written, items: written)
            if written - sliceStart >= tenth || written == preload {
                progress.finish()
                print(String(format: "preload: %d to %d stored, %.0f events/s", sliceStart, written, Double(written - sliceStart) / sliceSeconds))
                sliceStart = written
                sliceSeconds = 0
            }
        }
    }
}
