import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TelemetryCatalog
import TelemetryClient
import TelemetryEvents

struct EmitterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emitter",
        abstract: "The SDK's emitter delivering into a local collector, against plain HTTP posts in the same run.",
        discussion: """
            Starts a `telemetry serve` child process for each measurement and measures, in one \
            run:

              baseline: the same events, pre-encoded as NDJSON batches, posted from
                --connections connections (no SDK: the collector's own ceiling)
              emitter: --producers tasks emitting as fast as they can on one
                TelemetryEmitter, yielding every 100 calls as a service's tasks do
                (batches, gzip, --in-flight requests at once, as in a service)

            The events are generations started and completed through the SDK's operation \
            handles: each producer starts one, then completes the one it started 500 starts \
            before, so every completion pairs with its start and a few thousand operations are \
            open at a time.

            It prints the collector's transactions (how many, their size, and the share of the \
            time it was committing), the rate at which `emit` returned, the rate the collector \
            acknowledged, \
            events dropped because the queue was full (the emitter never blocks its caller), how \
            busy the cores were while it delivered, the collector's CPU an event by thread, this \
            process's CPU an event (the producers' loops, emit, encoding, gzip and sending: what \
            the SDK costs a service, and so how many events a second one core's worth of it \
            carries), and the peak RSS of this process (bounded by the queue, whatever the load) \
            and of the collector.
            """
    )

    @Option(help: "Events to emit.")
    var events: Int = 300_000

    @Option(help: "Tasks calling emit concurrently.")
    var producers: Int = 4

    @Option(help: "Connections of the baseline.")
    var connections: Int = 4

    @Option(help: "The emitter's batch size.")
    var batchSize: Int = 2000

    @Option(help: "The emitter's queue capacity (default: --events, so that none is dropped and the rate is that of delivering them all; the SDK's own default is 100000).")
    var queueCapacity: Int?

    @Option(help: "The emitter's requests in flight at once.")
    var inFlight: Int = 2

    @Flag(inversion: .prefixedNo, help: "Compress the emitter's request bodies with gzip (the SDK's default; the baseline's are not).")
    var gzip = true

    @Option(help: "The collector's --fsync: full or normal.")
    var fsync: String = "full"

    func validate() throws {
        guard events > 0, producers > 0, connections > 0, batchSize > 0, (queueCapacity ?? 1) > 0, inFlight > 0 else {
            throw ValidationError("counts must be positive")
        }
        guard fsync == "full" || fsync == "normal" else { throw ValidationError("--fsync is full or normal") }
    }

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-emitter-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let tenant = UUID()
        let node = UUID()
        // Generations started and completed, as a service emits them through the SDK's
        // handles: each producer starts one, then completes the one it started `openWindow`
        // starts ago, so a few thousand operations are open at any time and every completion
        // pairs with its start. (Starts alone left every operation open: 300,000 of them,
        // which costs the collector's pairing far more than real traffic does.) Task ids come
        // from a generator of the producer's own: Foundation's `UUID()` opens, reads and closes
        // /dev/urandom on each call here (Linux), which took a third of this process's CPU.
        func generation(_ i: Int, _ taskIDs: inout RandomUUIDs) -> GenerationStarted {
            GenerationStarted(
                model: ["sdxl-1.0", "flux-1-dev", "llama-3.1-8b-instruct"][i % 3], prompt: "a lighthouse on a rocky coast at dawn",
                taskID: taskIDs.next())
        }
        let openWindow = 500
        let user = UUID()
        print(
            "events: \(events); emitter: \(producers) producers, batches of \(batchSize), \(inFlight) in flight, gzip \(gzip ? "on" : "off"), queue \(queueCapacity ?? events); fsync \(fsync)")

        // The emitter, into a fresh collector.
        let collector = try CollectorChild(data: directory.appendingPathComponent("emitter"), fsync: fsync)
        defer { collector.stop() }
        var configuration = TelemetryEmitterConfiguration(port: collector.port, tenantID: tenant, source: "bench")
        configuration.batchSize = batchSize
        configuration.queueCapacity = queueCapacity ?? events
        configuration.maxRequestsInFlight = inFlight
        configuration.gzip = gzip
        configuration.environment = EventEnvironment(nodeID: node)
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let emitter = try TelemetryEmitter(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [emitter], logger: logger))
        let total = events
        let producers = self.producers
        var cpu: [String: Double] = [:]
        var collectorPeak: Int? = nil
        let (emitSeconds, deliverSeconds, busy, clientCPU) = try await withThrowingTaskGroup(of: Void.self) {
            tasks -> (Double, Double, Double?, Double) in
            tasks.addTask { try await group.run() }
            let started = MonotonicClock.now()
            let cpuBefore = MachineCPU.now()
            let clientCPUBefore = processCPUSeconds()
            await withTaskGroup(of: Void.self) { emitting in
                for p in 0..<producers {
                    emitting.addTask {
                        var taskIDs = RandomUUIDs(seed: UInt64(p + 1))
                        var open: [OperationHandle<GenerationStarted>] = []
                        var oldest = 0
                        // Yielding now and then, as a service's tasks do between emits: four loops
                        // that never yield hold every thread of Swift's cooperative pool (one a
                        // core), and the emitter's own sending tasks wait for them to end.
                        for (n, i) in stride(from: p, to: total, by: producers).enumerated() {
                            if n % 2 == 1 && open.count - oldest >= openWindow {
                                open[oldest].complete(result: i % 50 != 0, userID: user)
                                oldest += 1
                                if oldest == openWindow {
                                    open.removeFirst(oldest)
                                    oldest = 0
                                }
                            } else {
                                open.append(emitter.start(generation(i, &taskIDs)))
                            }
                            if n % 100 == 99 { await Task.yield() }
                        }
                    }
                }
            }
            let emitted = Double(MonotonicClock.now() - started) / 1e9
            while emitter.counts.sent + emitter.counts.dropped + emitter.counts.rejected < total {
                try await Task.sleep(for: .milliseconds(5))
            }
            let delivered = Double(MonotonicClock.now() - started) / 1e9
            let clientCPU = processCPUSeconds() - clientCPUBefore
            let busy = cpuBefore.flatMap { before in MachineCPU.now().map { $0.busy(since: before) } }
            // How the collector's writer spent the run: a writer busy all the time is the limit.
            let commits = try collector.metrics([
                "telemetry_commit_duration_seconds_sum", "telemetry_commit_duration_seconds_count", "telemetry_commit_events_sum",
            ])
            if let seconds = commits["telemetry_commit_duration_seconds_sum"], let count = commits["telemetry_commit_duration_seconds_count"],
                let stored = commits["telemetry_commit_events_sum"], count > 0
            {
                print(
                    String(
                        format: "collector: %.0f transactions of %.0f events on average, committing %.0f%% of the time", count, stored / count,
                        100 * seconds / delivered))
            }
            cpu = collector.cpuSecondsByThread
            collectorPeak = collector.peakRSS
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return (emitted, delivered, busy, clientCPU)
        }
        let counts = emitter.counts
        let peak = peakResidentBytes()
        collector.stop()
        // Baseline: the same kind of events, encoded up front, posted straight.
        var batches: [[UInt8]] = []
        var writer = EventJSONWriter()
        var ids = UUIDSequence()
        var taskIDs = RandomUUIDs(seed: UInt64(producers + 1))
        // The same traffic as one producer's: starts, and completions `openWindow` starts later.
        var open: [GenerationStarted] = []
        var oldest = 0
        for start in stride(from: 0, to: events, by: batchSize) {
            writer.reset()
            for i in start..<min(events, start + batchSize) {
                let envelope = EventEnvelope(eventID: ids.next(), timestamp: Date(), tenantID: tenant, source: "bench")
                if i % 2 == 1 && open.count - oldest >= openWindow {
                    let begun = open[oldest]
                    oldest += 1
                    if oldest == openWindow {
                        open.removeFirst(oldest)
                        oldest = 0
                    }
                    GenerationCompleted(
                        model: begun.model, prompt: begun.prompt, result: i % 50 != 0, taskID: begun.taskID, userID: user, nodeID: node,
                        envelope: envelope
                    ).writeJSON(to: &writer)
                } else {
                    var e = generation(i, &taskIDs)
                    e.envelope = envelope
                    e.nodeID = node
                    open.append(e)
                    e.writeJSON(to: &writer)
                }
                writer.newline()
            }
            batches.append(writer.bytes)
        }
        let baselineCollector = try CollectorChild(data: directory.appendingPathComponent("baseline"), fsync: fsync)
        let baselineSeconds = try baselineCollector.post(batches, connections: connections).seconds
        baselineCollector.stop()

        func rate(_ n: Int, _ seconds: Double) -> String { String(format: "%9.0f events/s", Double(n) / seconds) }
        print("baseline: pre-encoded batches over \(connections) connections".padding(to: 52) + rate(events, baselineSeconds))
        print("emit() returned (\(producers) producers)".padding(to: 52) + rate(events, emitSeconds))
        print("emitter: acknowledged by the collector".padding(to: 52) + rate(counts.sent, deliverSeconds))
        print("dropped (queue full): \(counts.dropped); rejected: \(counts.rejected); retried: \(counts.retried)")
        if let busy {
            // Idle cores here are the emitter waiting for answers.
            print(String(format: "cores busy while the emitter delivered: %.0f%% of %d (collector and emitter)",
                         100 * busy, ProcessInfo.processInfo.activeProcessorCount))
        }
        print("the collector's CPU per event, by thread: " + IngestBench.cpuPerEvent(cpu, events: counts.sent))
        // The service's side: what the SDK (and the producers' own loops) cost the machine an event,
        // and so how many events a second one core's worth of it carries.
        let clientMicros = clientCPU * 1e6 / Double(max(1, counts.sent))
        print(
            String(
                format: "this process's CPU per event (the producers, emit, encoding%@, sending): %.1f µs, one core's worth for %.0fk events/s",
                gzip ? ", gzip" : "", clientMicros, 1000 / clientMicros))
        print("this process's peak RSS while emitting: \(peak.map(formatBytes) ?? "unknown"); the collector's: \(collectorPeak.map(formatBytes) ?? "unknown")")
        print(String(format: "ratio: the emitter delivers at %.0f%% of the baseline", 100 * Double(counts.sent) / deliverSeconds / (Double(events) / baselineSeconds)))
    }
}

/// Ids for pre-encoded events.
struct UUIDSequence {
    var n: UInt64 = 0
    mutating func next() -> UUID {
        n += 1
        var bytes = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: n.bigEndian) { for i in 0..<8 { bytes[8 + i] = $0[i] } }
        bytes[6] = 0x40
        bytes[8] = 0x80 | (bytes[8] & 0x3f)
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}


/// Random version-4 UUIDs from xorshift64* (fast, not for secrets): a load generator's ids.
struct RandomUUIDs {
    private var state: UInt64

    init(seed: UInt64) {
        // Spread small seeds (splitmix64's constant), and never zero, which xorshift keeps.
        state = (seed &* 0x9E37_79B9_7F4A_7C15) | 1
    }

    private mutating func next64() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    mutating func next() -> UUID {
        UUID(version4: next64(), next64())
    }
}
