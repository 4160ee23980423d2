// A service that emits telemetry with the SDK: run `telemetry serve` in another terminal, then
// `swift run service-example`. It emits a model load and a few generations, then shuts down
// gracefully, which flushes what is queued.
import Foundation
import Logging
import ServiceLifecycle
import TelemetryClient
import TelemetryEvents
import UnixSignals

@main
struct ServiceExample {
    static func main() async throws {
        let logger = Logger(label: "service-example")

        // One emitter per process: the collector, who we are, and where to keep batches while the
        // collector is away. Node, VM type, host and storage come from TELEMETRY_* variables.
        var configuration = TelemetryEmitterConfiguration(
            host: "127.0.0.1", port: 8080,
            tenantID: UUID(uuidString: "5c1e7a52-0d6a-4c3e-8b59-1f2d3e4a5b6c")!,
            source: "xumi-worker")
        configuration.spoolDirectory = NSTemporaryDirectory() + "service-example-spool"
        // An ingest key of this tenant, when the collector requires keys (docs/security.md).
        configuration.apiKey = ProcessInfo.processInfo.environment["TELEMETRY_API_KEY"]
        if configuration.environment.nodeID == nil {
            configuration.environment.nodeID = UUID(uuidString: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
        }
        let telemetry = try TelemetryEmitter(configuration: configuration, logger: logger)

        let work = Worker(telemetry: telemetry)
        // When the work is done the group shuts down gracefully, which flushes the emitter.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: telemetry), .init(service: work, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let counts = telemetry.counts
        print("sent \(counts.sent), rejected \(counts.rejected), spooled \(counts.spooled), dropped \(counts.dropped)")
    }
}

/// The service's own work, emitting as it goes.
struct Worker: Service {
    let telemetry: TelemetryEmitter

    func run() async throws {
        // A load: `start` emits the start and returns a handle; `complete` emits the completion
        // with origin_event_id, the model and node, and the measured speed.
        let load = telemetry.start(WeightsLoadStarted(model: "sdxl-1.0", url: "s3://weights/sdxl-1.0"))
        try await Task.sleep(for: .milliseconds(120))
        load.complete(result: true, size: 6_900_000_000)

        let user = UUID()
        for i in 0..<5 {
            // Events inside this scope carry the user and session.
            try await EventContext.$userID.withValue(user) {
                var generation = telemetry.start(GenerationStarted(model: "sdxl-1.0", prompt: "a lighthouse at dawn", taskID: UUID()))
                try await Task.sleep(for: .milliseconds(20))  // queued
                generation.markWorkBegan()
                try await Task.sleep(for: .milliseconds(80))  // generating
                generation.complete(result: i != 3, userID: user, detail: i == 3 ? "CUDA out of memory" : nil)
            }
        }
    }
}
