import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TelemetryClient
import TelemetryEvents
import TelemetryStore
import UnixSignals

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The whole system alive in one command: a collector and a simulated platform emitting into it.",
        discussion: """
            Starts the collector (as `serve` does) and a simulated platform built on the Swift SDK: \
            nodes loading model weights (faster on nvme than on ceph), generations with realistic \
            latencies per model and occasional failures (out of memory, timeouts), GPU pods deployed \
            and freed, PBAC checks with cache hits and denials, policy reloads and rule changes, asset \
            reads, downloads, uploads and deletes that move each user's space, and workflows. Every \
            one of the 19 event types appears within the first 30 seconds. Runs until interrupted.

            Examples:
              telemetry demo
              telemetry demo --port 9000 --data /tmp/demo --speed 5
            """
    )

    @Option(help: "Address to listen on (loopback only).")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free one.")
    var port: Int = 8080

    @Option(help: "Data folder of the demo's store.")
    var data: String = "./telemetry-demo-data"

    @Option(help: "Time runs this many times faster (shorter operations, more events a second).")
    var speed: Double = 1

    @Option(help: "Simulated tenants.")
    var tenants: Int = 4

    @Option(help: "Simulated GPU nodes.")
    var nodes: Int = 6

    @Option(help: "Stop after this many seconds (default: run until interrupted).")
    var duration: Double?

    func validate() throws {
        guard speed > 0, speed <= 100 else { throw ValidationError("--speed is between 0 and 100") }
        guard (1...100).contains(tenants), (1...100).contains(nodes) else { throw ValidationError("--tenants and --nodes are 1-100") }
    }

    func run() async throws {
        var logger = Logger(label: "telemetry.demo")
        logger.logLevel = .warning
        let serve = try ServeCommand.parse(["--host", host, "--port", String(port), "--data", data])
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let host = self.host
        let (services, store) = try await serve.makeServices(logger: logger) { port, storeDescription in
            print("telemetry: collector listening on http://\(host):\(port) (\(storeDescription))")
            print("""
                telemetry demo: a simulated platform is emitting into it; press Ctrl-C to stop.
                The dashboard: http://\(host):\(port)/
                Try:
                  telemetry query ops --url http://\(host):\(port) --kind generation --status failed
                  telemetry stats --url http://\(host):\(port) --operation generation --agg count,p50,p99 --group-by model
                  telemetry stats --url http://\(host):\(port) --operation weights_load --field speed --agg avg --group-by storage_type
                  telemetry tail --url http://\(host):\(port) --topic pbac_access
                """)
            fflush(nil)
            portContinuation.yield(port)
            portContinuation.finish()
        }
        let platform = SimulatedPlatform(
            host: host, ports: ports, speed: speed, tenantCount: tenants, nodeCount: nodes, duration: duration, logger: logger)
        var configured: [ServiceGroupConfiguration.ServiceConfiguration] = services.map { .init(service: $0) }
        configured.append(.init(service: platform, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(services: configured, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await ServeCommand.run(group, listeningOn: host, port: port)
        store.close()
    }
}

/// A platform of nodes, tenants and services, each service emitting through its own SDK emitter.
final class SimulatedPlatform: Service, Sendable {
    let host: String
    let ports: AsyncStream<Int>
    let speed: Double
    let tenants: [UUID]
    let nodes: [Node]
    let duration: Double?
    let logger: Logger

    struct Node: Sendable {
        let id: UUID
        let hostName: String
        let vmType: String
        let storageType: String
        let storageSize: Int64
    }

    static let models: [(name: String, seconds: ClosedRange<Double>, failure: Double, bytes: Int64)] = [
        ("sdxl-1.0", 2...5, 0.04, 6_900_000_000),
        ("flux-1-dev", 4...9, 0.08, 23_800_000_000),
        ("llama-3.1-8b-instruct", 1...4, 0.03, 16_000_000_000),
        ("qwen2.5-14b-instruct", 2...6, 0.05, 29_500_000_000),
        ("whisper-large-v3", 1...3, 0.02, 3_100_000_000),
    ]
    /// Bytes per second each storage type reads weights at.
    static let storageSpeed: [String: ClosedRange<Double>] = [
        "nvme": 2.5e9...3.5e9, "ceph": 0.3e9...0.6e9, "nfs": 0.8e9...1.2e9,
    ]
    static let hardware = ["nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-l4"]

    init(host: String, ports: AsyncStream<Int>, speed: Double, tenantCount: Int, nodeCount: Int, duration: Double?, logger: Logger) {
        self.host = host
        self.ports = ports
        self.speed = speed
        self.duration = duration
        self.logger = logger
        self.tenants = (0..<tenantCount).map { _ in UUID() }
        let storage = ["nvme", "ceph", "nfs"]
        let vms = ["a2-highgpu-1g", "g5.2xlarge", "p4d.24xlarge"]
        self.nodes = (0..<nodeCount).map { i in
            Node(
                id: UUID(), hostName: "gpu-node-\(i + 1)", vmType: vms[i % vms.count], storageType: storage[i % storage.count],
                storageSize: [2_000_000_000_000, 4_000_000_000_000][i % 2])
        }
    }

    func run() async throws {
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { return }
        // One emitter a service, as in production: workers (one per node), the Kubernetes
        // operator, the PBAC agent, the asset store and the workflow engine.
        func emitter(_ source: String, node: Node? = nil) throws -> TelemetryEmitter {
            var configuration = TelemetryEmitterConfiguration(host: host, port: port, tenantID: tenants[0], source: source)
            configuration.flushInterval = .milliseconds(200)
            if let node {
                configuration.environment = EventEnvironment(
                    nodeID: node.id, vmType: node.vmType, hostName: node.hostName, storageSize: node.storageSize, storageType: node.storageType)
            } else {
                configuration.environment = EventEnvironment()
            }
            return try TelemetryEmitter(configuration: configuration, logger: logger)
        }
        // The workers of all nodes share one emitter (one service, many nodes); each event names
        // its node.
        let worker = try emitter("xumi-worker")
        let kube = try emitter("kube-operator")
        let pbac = try emitter("pbac-agent")
        let assets = try emitter("asset-store")
        let workflows = try emitter("workflow-engine")
        let emitters = [worker, kube, pbac, assets, workflows]
        let group = ServiceGroup(configuration: .init(services: emitters, logger: logger))
        await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                try await withThrowingTaskGroup(of: Void.self) { activities in
                    for node in self.nodes {
                        activities.addTask { try await self.weightsLoads(worker, node) }
                        activities.addTask { try await self.generations(worker, node) }
                    }
                    activities.addTask { try await self.pods(kube) }
                    activities.addTask { try await self.policy(pbac) }
                    activities.addTask { try await self.policyService(pbac) }
                    activities.addTask { try await self.assetTraffic(assets) }
                    activities.addTask { try await self.workflowTraffic(workflows) }
                    if let duration = self.duration {
                        try await Task.sleep(for: .seconds(duration))
                        activities.cancelAll()
                    }
                    try await activities.waitForAll()
                }
            }
            // Until the demo is interrupted (or its --duration passes): then the emitters flush.
            await withGracefulShutdownHandler {
                _ = try? await tasks.next()
            } onGracefulShutdown: {}
            await group.triggerGracefulShutdown()
            tasks.cancelAll()
            while (try? await tasks.next()) != nil {}
        }
    }

    // MARK: activities

    private func pause(_ seconds: Double) async throws {
        try await Task.sleep(for: .milliseconds(Int64(max(1, seconds / speed * 1000))))
    }

    private func tenant() -> UUID { tenants.randomElement()! }

    private func weightsLoads(_ telemetry: TelemetryEmitter, _ node: Node) async throws {
        try await pause(Double.random(in: 0...3))
        while !Task.isCancelled {
            let model = Self.models.randomElement()!
            let load = telemetry.start(
                WeightsLoadStarted(
                    model: model.name, url: "s3://xumi-weights/\(model.name)/model.safetensors", nodeID: node.id, vmType: node.vmType,
                    hostName: node.hostName, storageSize: node.storageSize, storageType: node.storageType,
                    envelope: EventEnvelope(tenantID: tenant())))
            let bytesPerSecond = Double.random(in: Self.storageSpeed[node.storageType]!)
            try await pause(Double(model.bytes) / bytesPerSecond)
            let failed = Double.random(in: 0..<1) < 0.03
            load.complete(result: !failed, size: failed ? nil : model.bytes, speed: failed ? nil : bytesPerSecond)
            try await pause(Double.random(in: 15...40))
        }
    }

    private func generations(_ telemetry: TelemetryEmitter, _ node: Node) async throws {
        try await withThrowingTaskGroup(of: Void.self) { running in
            // Two generations at a time a node.
            for _ in 0..<2 {
                running.addTask {
                    try await self.pause(Double.random(in: 0...2))
                    while !Task.isCancelled {
                        let model = Self.models.randomElement()!
                        let user = UUID()
                        let tenant = self.tenant()
                        var generation = telemetry.start(
                            GenerationStarted(
                                model: model.name, created: Date(), prompt: "a lighthouse on a rocky coast at dawn, watercolor",
                                speed: ["fast", "standard", "quality"].randomElement()!, taskID: UUID(), nodeID: node.id,
                                vmType: node.vmType, hostName: node.hostName, storageSize: node.storageSize,
                                storageType: node.storageType, envelope: EventEnvelope(tenantID: tenant, userID: user)))
                        try await self.pause(Double.random(in: 0...1.5))  // queued
                        generation.markWorkBegan()
                        let roll = Double.random(in: 0..<1)
                        if roll < model.failure {
                            try await self.pause(Double.random(in: model.seconds) / 2)
                            generation.complete(result: false, userID: user, detail: "CUDA out of memory")
                        } else if roll < model.failure + 0.02 {
                            try await self.pause(model.seconds.upperBound * 1.5)
                            generation.complete(result: false, userID: user, detail: "timeout after \(Int(model.seconds.upperBound * 1.5))s")
                        } else {
                            try await self.pause(Double.random(in: model.seconds))
                            generation.complete(result: true, userID: user, detail: "completed")
                        }
                        try await self.pause(Double.random(in: 0.2...2))
                    }
                }
            }
            try await running.waitForAll()
        }
    }

    private func pods(_ telemetry: TelemetryEmitter) async throws {
        try await withThrowingTaskGroup(of: Void.self) { lifecycles in
            for slot in 0..<4 {
                lifecycles.addTask {
                    try await self.pause(Double(slot) * 1.5)
                    var first = true
                    while !Task.isCancelled {
                        let tenant = self.tenant()
                        let node = self.nodes.randomElement()!
                        let hardware = Self.hardware.randomElement()!
                        let resource = UUID()
                        let deploy = telemetry.start(
                            PodDeployStarted(
                                nodeID: node.id, user: ["id": .string(UUID().uuidString.lowercased())], action: "deploy",
                                resource: ["type": "gpu_pod", "id": .string(resource.uuidString.lowercased())], result: true,
                                service: "kube-operator", resourceID: resource, userTenantID: tenant, resourceTenantID: tenant,
                                hardware: hardware, envelope: EventEnvelope(tenantID: tenant)))
                        try await self.pause(hardware == "nvidia-l4" ? Double.random(in: 2...4) : Double.random(in: 4...9))
                        let deployed = (first && slot == 0) || Double.random(in: 0..<1) >= 0.05
                        deploy.complete(result: deployed, description: deployed ? "pod running" : "insufficient GPU capacity")
                        if deployed {
                            // The pod's life; the first pod of the first slot is short, so that frees show early.
                            try await self.pause(first && slot == 0 ? 5 : Double.random(in: 20...90))
                            let free = telemetry.start(
                                PodFreeStarted(
                                    nodeID: node.id, action: "free", result: true, service: "kube-operator", resourceID: resource,
                                    userTenantID: tenant, resourceTenantID: tenant, evalMs: Double.random(in: 0.2...2),
                                    envelope: EventEnvelope(tenantID: tenant)))
                            try await self.pause(Double.random(in: 0.5...2))
                            free.complete(result: true, evalMs: Double.random(in: 0.2...2))
                        }
                        first = false
                        try await self.pause(Double.random(in: 1...5))
                    }
                }
            }
            try await lifecycles.waitForAll()
        }
    }

    private func policy(_ telemetry: TelemetryEmitter) async throws {
        var systemRevision: Int64 = 41
        let tenantRevision: Int64 = 7
        while !Task.isCancelled {
            let tenant = tenant()
            let cached = Double.random(in: 0..<1) < 0.8
            let roll = Double.random(in: 0..<1)
            let denial = roll < 0.05 ? "system" : roll < 0.09 ? "tenant" : nil
            telemetry.emit(
                PolicyChecked(
                    user: ["id": .string(UUID().uuidString.lowercased()), "roles": ["member"]],
                    action: ["read", "write", "deploy", "delete"].randomElement()!,
                    resource: ["type": .string(["asset", "gpu_pod", "workflow"].randomElement()!), "tenant_id": .string(tenant.uuidString.lowercased())],
                    result: denial == nil, systemRuleRevision: systemRevision, tenantRuleRevision: tenantRevision, service: "xumi-gateway",
                    userTenantID: tenant, resourceTenantID: tenant,
                    evalMs: cached ? Double.random(in: 0.05...0.4) : Double.random(in: 1...12), cacheHit: cached,
                    denialSource: denial ?? "none", envelope: EventEnvelope(tenantID: tenant)))
            if Double.random(in: 0..<1) < 0.001 { systemRevision += 1 }
            try await pause(0.02)
        }
    }

    private func policyService(_ telemetry: TelemetryEmitter) async throws {
        telemetry.emit(PolicyAgentStarted(created: Date()))
        try await pause(2)
        var revision: Int64 = 100
        var round = 0
        while !Task.isCancelled {
            revision += 1
            telemetry.emit(
                PolicyLoaded(
                    created: Date(), policyRevision: revision, description: "scheduled refresh", result: true,
                    compileMs: Double.random(in: 40...180)))
            try await pause(3)
            telemetry.emit(
                PolicyRuleUpdated(
                    created: Date(), ruleID: UUID(), ruleVersion: Int64.random(in: 1...20), politicVersion: revision,
                    description: "rollout of tenant rules", envelope: EventEnvelope(tenantID: tenant())))
            try await pause(3)
            telemetry.emit(PolicyCacheReset(created: Date(), description: "policy revision \(revision)", result: true))
            if round % 2 == 0 {
                try await pause(3)
                telemetry.emit(
                    PolicyRuleArchived(
                        created: Date(), ruleID: UUID(), ruleVersion: Int64.random(in: 1...20), politicVersion: revision - 5,
                        description: "superseded rule", envelope: EventEnvelope(tenantID: tenant())))
            }
            round += 1
            try await pause(Double.random(in: 10...20))
        }
    }

    private func assetTraffic(_ telemetry: TelemetryEmitter) async throws {
        struct User {
            let id: UUID
            let tenant: UUID
            var used: Int64
            let total: Int64
            var objects: [(url: String, size: Int64)]
        }
        var users = (0..<12).map { _ in
            User(id: UUID(), tenant: tenant(), used: Int64.random(in: 1...20) * 1_000_000_000, total: 100_000_000_000, objects: [])
        }
        var round = 0
        while !Task.isCancelled {
            // The first rounds show every kind of access once: one user uploads, reads, downloads
            // and deletes; then the traffic is random.
            let u = round < 5 ? 0 : Int.random(in: 0..<users.count)
            let user = users[u]
            let envelope = EventEnvelope(tenantID: user.tenant, userID: user.id)
            let ip = "10.\(Int.random(in: 0...255)).\(Int.random(in: 0...255)).\(Int.random(in: 1...254))"
            let roll = round < 5 ? [0.0, 0.0, 0.4, 0.6, 0.95][round] : Double.random(in: 0..<1)
            if roll < 0.35 || user.objects.isEmpty {
                let size = Int64.random(in: 200_000...40_000_000)
                let url = "s3://xumi-assets/\(user.tenant.uuidString.lowercased())/\(UUID().uuidString.lowercased()).png"
                users[u].used += size
                users[u].objects.append((url, size))
                telemetry.emit(
                    AssetUploaded(
                        resourceURL: url, objectSize: size, result: true, avgSpeed: Double.random(in: 20e6...120e6), ip: ip,
                        userSpaceSize: users[u].used, totalSpaceSize: user.total, envelope: envelope))
            } else if roll < 0.55 {
                let object = user.objects.randomElement()!
                telemetry.emit(AssetRead(resourceURL: object.url, objectSize: object.size, result: true, ip: ip, envelope: envelope))
            } else if roll < 0.9 {
                let object = user.objects.randomElement()!
                telemetry.emit(
                    AssetDownloaded(
                        resourceURL: object.url, objectSize: object.size, result: Double.random(in: 0..<1) > 0.01,
                        avgSpeed: Double.random(in: 30e6...200e6), ip: ip, envelope: envelope))
            } else {
                let object = users[u].objects.removeLast()
                users[u].used -= object.size
                telemetry.emit(
                    AssetDeleted(
                        resourceURL: object.url, objectSize: object.size, result: true, ip: ip, usedSpaceSize: users[u].used,
                        totalSpaceSize: user.total, envelope: envelope))
            }
            round += 1
            try await pause(0.15)
        }
    }

    private func workflowTraffic(_ telemetry: TelemetryEmitter) async throws {
        try await pause(1)
        while !Task.isCancelled {
            let tenant = tenant()
            telemetry.emit(
                WorkflowProcessCreated(
                    created: Date(), userID: "user-\(Int.random(in: 1...500))", result: true, service: "workflow-engine",
                    userTenantID: tenant, resourceTenantID: tenant, workflowProcessID: UUID(), envelope: EventEnvelope(tenantID: tenant)))
            try await pause(Double.random(in: 2...8))
        }
    }
}
