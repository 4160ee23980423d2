// swift-tools-version:6.2
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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // The event catalog: envelope, field types, the event types as data, validation,
        // normalisation and JSON Schema. Depends on none of our modules and no package.
        .target(
            name: "TelemetryCatalog",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "telemetry",
            dependencies: [
                "TelemetryCatalog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryCatalogTests",
            dependencies: ["TelemetryCatalog"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryCLITests",
            dependencies: ["telemetry", "TelemetryCatalog"],
            swiftSettings: swiftSettings
        ),
    ]
)
