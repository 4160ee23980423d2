/// Makes realistic, valid events of any catalog type, reproducibly from a seed.
///
/// Values are derived from each field's type, with realistic choices for the platform's known field
/// names (models, hardware, prompts, addresses), so a new event type gets samples with no code.
/// Used by the examples, the tests and `telemetry bench`.
public struct EventSampler: Sendable {
    /// The catalog samples are drawn from.
    public let catalog: Catalog
    private var random: SplitMix64
    private var clockMicros: Int64
    /// Give events time-ordered UUIDv7 ids from their timestamp (as the SDK does) instead of random v4 ids.
    public var timeOrderedIDs = false
    /// Microseconds the clock advances between events, at most (uniformly from 0).
    public var spacingMicros: Int64 = 5_000
    /// Give completion events the keys and tenant of an earlier sampled start of their lifecycle, so
    /// that samples pair into operations as real traffic does.
    public var linksLifecycles = false
    /// How many starts of a lifecycle stay pending before completions take the oldest, so that a
    /// completion arrives some thousands of events after its start, as in real traffic (completions
    /// sampled while fewer are pending complete nothing, like those whose start was never seen).
    public var lifecycleLag = 256
    /// Per lifecycle, the starts sampled and not yet completed: their tenant and, by completion
    /// field name, the values the completion must carry.
    private var pendingStarts: [[(tenant: JSONValue, keys: [(String, JSONValue)])]] = []
    private var pendingHead: [Int] = []
    private let tenants: [UUIDValue]
    private let users: [UUIDValue]
    private let nodes: [UUIDValue]

    /// Creates a sampler; the same seed gives the same events.
    ///
    /// - Parameters:
    ///   - catalog: the catalog whose event types are sampled.
    ///   - seed: the seed of the pseudo-random sequence.
    ///   - startMicros: the first event's timestamp, UTC microseconds since the epoch.
    public init(catalog: Catalog = .builtin, seed: UInt64 = 1, startMicros: Int64 = 1_795_000_000_000_000) {
        self.catalog = catalog
        var random = SplitMix64(seed: seed)
        self.tenants = (0..<5).map { _ in random.uuid() }
        self.users = (0..<50).map { _ in random.uuid() }
        self.nodes = (0..<8).map { _ in random.uuid() }
        self.random = random
        self.clockMicros = startMicros
    }

    /// A valid event of a randomly chosen type (all types equally likely).
    public mutating func sample() -> JSONValue {
        let events = catalog.events
        return sample(events[Int(random.next() % UInt64(events.count))])
    }

    /// A valid event of `definition`'s type.
    public mutating func sample(_ definition: EventDefinition) -> JSONValue {
        clockMicros += Int64(random.next() % UInt64(max(1, spacingMicros)))
        var members: [(String, JSONValue)] = []
        let result = random.chance(0.9)
        for field in catalog.allFields(of: definition) {
            // Optional fields are left out now and then, as real producers do.
            if !field.isRequired && field.name != "metadata" && random.chance(0.12) { continue }
            var name = field.name
            if let alias = field.aliases.first, random.chance(0.5) { name = alias }
            members.append((name, value(for: field, in: definition, result: result)))
        }
        if linksLifecycles { link(&members, definition) }
        return .object(members)
    }

    /// Records a start, or makes a completion complete the oldest pending start of its lifecycle.
    private mutating func link(_ members: inout [(String, JSONValue)], _ definition: EventDefinition) {
        if pendingStarts.isEmpty {
            pendingStarts = Array(repeating: [], count: catalog.lifecycles.count)
            pendingHead = Array(repeating: 0, count: catalog.lifecycles.count)
        }
        let catalog = self.catalog
        func index(of field: String) -> Int? {
            members.firstIndex { catalog.canonicalFieldName($0.0) == field }
        }
        var linked = false
        for (l, lifecycle) in catalog.lifecycles.enumerated() {
            if lifecycle.completeEventType == definition.eventType, !linked, pendingStarts[l].count - pendingHead[l] > lifecycleLag {
                let start = pendingStarts[l][pendingHead[l]]
                pendingHead[l] += 1
                if let t = index(of: "tenant_id") { members[t].1 = start.tenant }
                for (field, value) in start.keys {
                    if let i = index(of: field) { members[i].1 = value } else { members.append((field, value)) }
                }
                linked = true
            }
        }
        for lifecycle in catalog.lifecycles where lifecycle.startEventType == definition.eventType {
            // A start of an operation that ends with another lifecycle's completion (freeing a pod
            // ends its life) acts on what that lifecycle has pending: the oldest live pod.
            for (b, other) in catalog.lifecycles.enumerated()
            where other.kind != lifecycle.kind && other.completeEventType == lifecycle.completeEventType
                && pendingStarts[b].count - pendingHead[b] > lifecycleLag
            {
                let live = pendingStarts[b][pendingHead[b]]
                pendingHead[b] += 1
                if let t = index(of: "tenant_id") { members[t].1 = live.tenant }
                for (field, value) in live.keys { if let i = index(of: field) { members[i].1 = value } }
            }
        }
        for (l, lifecycle) in catalog.lifecycles.enumerated() where lifecycle.startEventType == definition.eventType {
            if let condition = lifecycle.startsWhen, let i = index(of: condition), members[i].1 != .bool(true) { continue }
            let keys = lifecycle.keys.compactMap { key in index(of: key.startField).map { (key.completeField, members[$0].1) } }
            guard let t = index(of: "tenant_id"), !keys.isEmpty else { continue }
            if pendingHead[l] > 4096 {
                pendingStarts[l].removeFirst(pendingHead[l])
                pendingHead[l] = 0
            }
            pendingStarts[l].append((tenant: members[t].1, keys: keys))
        }
    }

    /// `count` valid events as NDJSON, one per line, cycling through every event type.
    public mutating func ndjson(count: Int) -> [UInt8] {
        var out: [UInt8] = []
        let events = catalog.events
        for i in 0..<count {
            out.append(contentsOf: sample(events[i % events.count]).render().utf8)
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    private mutating func pick<T>(_ choices: [T]) -> T { choices[Int(random.next() % UInt64(choices.count))] }

    private mutating func timestamp(offsetMicros: Int64 = 0) -> JSONValue {
        .string(TimestampText.format(microseconds: clockMicros + offsetMicros))
    }

    private static let models = ["sdxl-1.0", "flux-1-dev", "llama-3.1-8b-instruct", "whisper-large-v3", "qwen2.5-14b-instruct"]
    private static let prompts = [
        "A watercolor painting of a lighthouse on a rocky coast at dawn, soft pastel light, gulls in the distance, highly detailed",
        "Summarise the attached quarterly report in five bullet points for an executive audience, keeping every figure exact",
        "Portrait of an astronaut reading a paper book in a greenhouse on Mars, cinematic lighting, 35mm film grain",
        "Translate the following customer support conversation into German, keeping the polite register and product names",
        "Isometric pixel-art city block at night with neon signs, rain reflections and a tram crossing the main street",
    ]

    private mutating func value(for field: FieldDefinition, in definition: EventDefinition, result: Bool) -> JSONValue {
        switch field.name {
        case "event_id" where timeOrderedIDs: return .string(random.uuidV7(millis: clockMicros / 1000).description)
        case "event_type": return .string(definition.eventType)
        case "version": return .string(definition.version)
        case "timestamp": return timestamp()
        case "created": return timestamp(offsetMicros: -Int64(random.next() % 2_000))
        case "start_generation": return timestamp(offsetMicros: -Int64(random.next() % 30_000_000))
        case "tenant_id", "user_tenant_id", "resource_tenant_id": return .string(pick(tenants).description)
        case "user_id" where field.type == .uuid: return .string(pick(users).description)
        case "user_id": return .string("user-\(random.next() % 10_000)")
        case "node_id": return .string(pick(nodes).description)
        case "source":
            switch definition.topic {
            case .xumiLoad, .xumiTask: return "xumi-worker"
            case .kubernetes: return definition.eventType.hasPrefix("workflow") ? "workflow-engine" : "kube-operator"
            case .pbacAccess, .pbacService: return "pbac-agent"
            default: return "asset-store"
            }
        case "metadata":
            return [
                "trace_id": .string(random.hex(32)), "span_id": .string(random.hex(16)),
                "region": .string(pick(["eu-west-1", "us-east-2", "ap-southeast-1"])),
                "sdk": "xumi-telemetry-swift/0.1",
            ]
        case "tags": return ["env": "prod", "cluster": .string(pick(["gpu-eu-1", "gpu-us-2"]))]
        case "model": return .string(pick(Self.models))
        case "url": return .string("https://weights.xumi.internal/models/\(pick(Self.models))/model.safetensors")
        case "prompt": return .string(pick(Self.prompts))
        case "vm_type": return .string(pick(["a2-highgpu-1g", "g5.2xlarge", "n1-standard-8-t4"]))
        case "host_name": return .string("gpu-node-\(random.next() % 24)")
        case "storage_type": return .string(pick(["nvme", "ceph", "nfs"]))
        case "speed" where field.type == .string: return .string(pick(["fast", "standard", "quality"]))
        case "result": return .bool(result)
        case "detail": return .string(result ? "completed" : pick(["CUDA out of memory", "timeout after 120s", "prompt rejected by safety filter"]))
        case "action": return .string(pick(["deploy", "free", "read", "write", "create"]))
        case "service": return .string(pick(["kube-operator", "asset-store", "xumi-gateway", "workflow-engine"]))
        case "hardware": return .string(pick(["nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-l4"]))
        case "denial_source": return .string(result ? "none" : pick(["system", "tenant"]))
        case "error": return .string(result ? "" : "policy evaluation failed: no matching rule")
        case "description": return .string(pick(["scheduled refresh", "manual change by operator", "rollout of tenant rules", "object stored"]))
        case "resource_url": return .string("s3://xumi-assets/\(pick(tenants))/\(random.uuid()).png")
        case "IP":
            return random.chance(0.7)
                ? .string("10.\(random.next() % 256).\(random.next() % 256).\(random.next() % 256)")
                : .string("2001:db8:\(String(random.next() % 65536, radix: 16))::\(String(random.next() % 65536, radix: 16))")
        case "user":
            let user: JSONValue = [
                "id": .string(pick(users).description), "email": .string("user\(random.next() % 1000)@example.com"),
                "roles": [.string(pick(["member", "admin", "viewer"]))],
            ]
            return random.chance(0.2) ? .string(user.render()) : user
        case "resource":
            let resource: JSONValue = [
                "type": .string(pick(["gpu_pod", "asset", "workflow"])), "id": .string(random.uuid().description),
                "tenant_id": .string(pick(tenants).description),
            ]
            return random.chance(0.2) ? .string(resource.render()) : resource
        default:
            break
        }
        switch field.type.kind {
        case .string: return .string("sample-\(random.hex(8))")
        case .integer:
            let upper: UInt64 = field.name.hasSuffix("size") ? 1 << 40 : 1000
            return .integer(Int64(random.next() % upper) + (field.minimum ?? 0))
        case .number:
            return .number(Double(random.next() % 1_000_000) / 1000 + Double(field.minimum ?? 0))
        case .bool: return .bool(random.chance(0.5))
        case .uuid: return .string(random.uuid().description)
        case .timestamp: return timestamp()
        case .ipAddress: return "192.0.2.1"
        case .jsonObject, .object: return ["id": .string(random.uuid().description)]
        case .stringMap: return ["key": "value"]
        }
    }
}

/// A small, fast, seedable pseudo-random generator (SplitMix64).
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    package mutating func chance(_ p: Double) -> Bool {
        Double(next() >> 11) / Double(1 << 53) < p
    }

    /// A number in `0..<n`.
    package mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// A random version-4 UUID.
    mutating func uuid() -> UUIDValue {
        let high = next() & 0xFFFF_FFFF_FFFF_0FFF | 0x4000
        let low = next() & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return UUIDValue(high: high, low: low)
    }

    /// A version-7 UUID: 48 bits of Unix milliseconds, then random bits.
    mutating func uuidV7(millis: Int64) -> UUIDValue {
        let high = UInt64(truncatingIfNeeded: millis) << 16 | 0x7000 | (next() & 0x0FFF)
        let low = next() & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return UUIDValue(high: high, low: low)
    }

    mutating func hex(_ digits: Int) -> String {
        let alphabet = Array("0123456789abcdef")
        return String((0..<digits).map { _ in alphabet[Int(next() & 15)] })
    }
}
