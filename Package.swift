// swift-tools-version:6.2
import Foundation
import PackageDescription

// Every target is built in the Swift 6 language mode with the same upcoming features, so that
// imports and existentials read the same way in every module.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "xumi-telemetry",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "telemetry", targets: ["telemetry"]),
        .library(name: "TelemetryCatalog", targets: ["TelemetryCatalog"]),
        .library(name: "TelemetryEvents", targets: ["TelemetryEvents"]),
    ],
    // Kafka support (`serve --kafka`, `consume`) links librdkafka (Debian librdkafka-dev); the default
    // build has no system dependency: `swift build --traits Kafka` turns it on.
    traits: [
        .trait(name: "Kafka", description: "Kafka producer and consumer through librdkafka (needs librdkafka-dev)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // SHA-256 and HMAC for API keys and the privacy policy; already in the graph (through
        // Hummingbird's swift-nio-extras), so it costs no extra build.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // The HTTP request parts Hummingbird's pipeline carries (for the collector's slow-client
        // deadlines); Hummingbird depends on it already.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        // The event catalog: envelope, field types, the event types as data, validation,
        // normalisation and JSON Schema. Depends on none of our modules and no package.
        .target(
            name: "TelemetryCatalog",
            swiftSettings: swiftSettings
        ),
        // The SDK's typed events: one struct per event type, generated from the catalog
        // (`telemetry catalog --format swift`), with a JSON writer for the emitter's hot path.
        .target(
            name: "TelemetryEvents",
            dependencies: ["TelemetryCatalog"],
            swiftSettings: swiftSettings
        ),
        // The SDK's emitter (a Service: bounded queue, batches, gzip, retries, on-disk spool) and a
        // small HTTP/1.1 client for the collector's API. Depends only on the catalog and the typed
        // events among our modules, so services can embed it without the collector.
        .target(
            name: "TelemetryClient",
            dependencies: [
                "TelemetryCatalog",
                "TelemetryEvents",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Process-wide SQLite settings that need C (sqlite3_config is variadic).
        .target(
            name: "CSQLiteTuning",
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        // posix_spawn's file actions that glibc declares for _GNU_SOURCE builds only.
        .target(name: "CSpawn"),
        // Child processes over posix_spawn (Foundation's Process.run crashes in processes with
        // many open files on Linux): the tests' and the benchmarks' servers and tools.
        .target(
            name: "TelemetryProcess",
            dependencies: ["CSpawn"],
            swiftSettings: swiftSettings
        ),
        // The store protocol and the embedded SQLite store (GRDB, WAL). Knows nothing of HTTP.
        .target(
            name: "TelemetryStore",
            dependencies: [
                "TelemetryCatalog",
                "CSQLiteTuning",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Body parsing, validation, group-committed writes, acknowledgements. Knows nothing of HTTP.
        .target(
            name: "TelemetryPipeline",
            dependencies: [
                "TelemetryCatalog",
                "TelemetryStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The collector's HTTP API (Hummingbird 2).
        .target(
            name: "TelemetryServer",
            dependencies: [
                "TelemetryCatalog",
                "TelemetryStore",
                "TelemetryPipeline",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The ClickHouse store, over ClickHouse's HTTP interface with the SDK's HTTP/1.1 client.
        .target(
            name: "TelemetryClickHouse",
            dependencies: [
                "TelemetryCatalog",
                "TelemetryStore",
                "TelemetryClient",
                "TelemetryProcess",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // librdkafka's C API and its mock cluster, as a module (only imported with the trait).
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // Kafka: a producer and a consumer group over librdkafka, the collector's Kafka sink and the
        // consumer into a store. Empty without the trait `Kafka`.
        .target(
            name: "TelemetryKafka",
            dependencies: [
                .target(name: "CRdKafka", condition: .when(traits: ["Kafka"])),
                "TelemetryCatalog",
                "TelemetryStore",
                "TelemetryPipeline",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "telemetry",
            dependencies: [
                "CSQLiteTuning",
                "TelemetryCatalog",
                "TelemetryClient",
                "TelemetryEvents",
                "TelemetryStore",
                "TelemetryPipeline",
                "TelemetryServer",
                "TelemetryKafka",
                "TelemetryClickHouse",
                "TelemetryProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // The SDK's getting-started example (docs/sdk.md); built with everything else, so it
        // cannot fall behind the API.
        .executableTarget(
            name: "service-example",
            dependencies: [
                "TelemetryClient",
                "TelemetryEvents",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Examples/ServiceExample",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryCatalogTests",
            dependencies: ["TelemetryCatalog", "TelemetryEvents", "TelemetryProcess"],
            // The Python script the schema agreement test runs, read from the source folder.
            exclude: ["Scripts"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryServerTests",
            dependencies: [
                "TelemetryCatalog", "TelemetryClient", "TelemetryEvents", "TelemetryStore", "TelemetryPipeline", "TelemetryServer",
                "TelemetryKafka", "TelemetryClickHouse", "TelemetryProcess",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryCLITests",
            dependencies: ["telemetry", "TelemetryCatalog", "TelemetryClient", "TelemetryKafka", "TelemetryClickHouse", "TelemetryProcess"],
            swiftSettings: swiftSettings
        ),
    ]
)

// Benchmarks (ordo-one/benchmark, with malloc counts) join the package only when asked, so that a
// plain build and the test command never build the benchmark tooling:
//   TELEMETRY_BENCHMARKS=1 swift package benchmark
if ProcessInfo.processInfo.environment["TELEMETRY_BENCHMARKS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "EmitterBenchmarks",
            dependencies: [
                "TelemetryClient",
                "TelemetryEvents",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/EmitterBenchmarks",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ))
}
