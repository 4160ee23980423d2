// `emit` on the caller's thread: time and allocations per event (ordo-one/benchmark).
// Run with: TELEMETRY_BENCHMARKS=1 swift package benchmark --target EmitterBenchmarks
import Benchmark
import Foundation
import Logging
import Synchronization
import TelemetryClient
import TelemetryEvents

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000)

    func emitter() -> TelemetryEmitter {
        var configuration = TelemetryEmitterConfiguration(tenantID: UUID(), source: "benchmark")
        configuration.queueCapacity = 50_000_000
        configuration.environment = EventEnvironment(nodeID: UUID(), vmType: "g5.2xlarge", hostName: "gpu-1", storageType: "nvme")
        var logger = Logger(label: "benchmark")
        logger.logLevel = .critical
        return try! TelemetryEmitter(configuration: configuration, logger: logger)
    }
    let task = UUID()

    // The baseline: the least an enqueue can do, the same struct appended to a locked array.
    Benchmark("baseline: append to a Mutex-protected array") { benchmark in
        let queue = Mutex<[any TelemetryEvent]>([])
        queue.withLock { $0.reserveCapacity(benchmark.scaledIterations.count) }
        let event = GenerationStarted(model: "sdxl-1.0", prompt: "a lighthouse at dawn", taskID: task)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            queue.withLock { $0.append(event) }
        }
    }

    // emit: fills the envelope (UUIDv7, time, tenant, source, context) and environment, enqueues.
    Benchmark("emit GenerationStarted") { benchmark in
        let telemetry = emitter()
        let event = GenerationStarted(model: "sdxl-1.0", prompt: "a lighthouse at dawn", taskID: task)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(telemetry.emit(event))
        }
    }

    Benchmark("emit PolicyChecked") { benchmark in
        let telemetry = emitter()
        let event = PolicyChecked(user: ["id": "u-1"], action: "read", resource: ["id": "r-1"], result: true, evalMs: 0.3, cacheHit: true)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(telemetry.emit(event))
        }
    }

    // The sending loop's encoding of a batch: the emitter's writer against JSONEncoder (the
    // baseline), per event. The emitter encodes off the caller's thread, but on the same cores.
    var sample = GenerationStarted(model: "sdxl-1.0", prompt: "a lighthouse on a rocky coast at dawn", taskID: task)
    sample.envelope = EventEnvelope(eventID: UUID(), timestamp: Date(), tenantID: UUID(), source: "benchmark")
    sample.fillEnvironment(EventEnvironment(nodeID: UUID(), vmType: "g5.2xlarge", hostName: "gpu-1", storageType: "nvme"))
    let event = sample

    Benchmark("baseline: encode GenerationStarted with JSONEncoder") { benchmark in
        let encoder = JSONEncoder()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try! encoder.encode(event))
        }
    }

    Benchmark("encode GenerationStarted with EventJSONWriter") { benchmark in
        var writer = EventJSONWriter(reservingCapacity: 1 << 20)
        benchmark.startMeasurement()
        for n in benchmark.scaledIterations {
            // A batch's buffer, reused as the emitter does.
            if n % 1000 == 0 { writer.reset() }
            event.writeJSON(to: &writer)
            writer.newline()
        }
        blackHole(writer.bytes.count)
    }
}
