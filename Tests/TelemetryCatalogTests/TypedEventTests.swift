import Foundation
import TelemetryCatalog
import TelemetryEvents
import Testing

/// The SDK's typed events agree with the catalog: generated from it, checked current, and every
/// struct round-trips sampled events of its type into events the catalog validates unchanged.
@Suite struct TypedEventTests {
    @Test func theGeneratedStructsAreCurrent() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/TelemetryEvents/Events.swift").standardized
        let onDisk = try String(contentsOf: path, encoding: .utf8)
        #expect(
            onDisk == Catalog.builtin.swiftSource(),
            "Sources/TelemetryEvents/Events.swift disagrees with the catalog: run `swift run telemetry catalog --format swift > Sources/TelemetryEvents/Events.swift`"
        )
    }

    @Test func everyEventTypeHasAStructWithThePlatformsName() {
        #expect(Set(allEventTypes.keys) == Set(Catalog.builtin.eventTypes))
        for (eventType, type) in allEventTypes {
            #expect(type.eventType == eventType)
            #expect(type.version == Catalog.builtin.latest(eventType)?.version)
            #expect(type.topic == Catalog.builtin.latest(eventType)?.topic.name)
            #expect(String(describing: type) == Catalog.builtin.latest(eventType)?.typeName)
        }
        #expect(allEventTypes["xumi.generation.start"] == GenerationStarted.self)
        #expect(allEventTypes["kuber.deploy.start.complete"] == PodDeployCompleted.self)
        #expect(allEventTypes["pbac.agent.politics.check"] == PolicyChecked.self)
    }

    /// Sampled events (each optional field left out now and then) decode into their struct, and the
    /// struct's JSON (both the fast writer and `JSONEncoder`) validates with every field equal.
    @Test(arguments: Catalog.builtin.eventTypes)
    func structsRoundTripEventsTheCatalogValidates(_ eventType: String) throws {
        let type = try #require(allEventTypes[eventType])
        for seed in 1...20 as ClosedRange<UInt64> {
            var sampler = EventSampler(seed: seed)
            let sampled = sampler.sample(Catalog.builtin.latest(eventType)!).render()
            guard case .valid(let original) = check(sampled) else {
                Issue.record("the sample is invalid")
                return
            }
            let decoded = try JSONDecoder().decode(type, from: Data(original.json))
            var writer = EventJSONWriter()
            decoded.writeJSON(to: &writer)
            let encoded = try JSONEncoder().encode(decoded)
            for (how, bytes) in [("writer", writer.bytes), ("JSONEncoder", [UInt8](encoded))] {
                guard case .valid(let again) = check(String(decoding: bytes, as: UTF8.self)) else {
                    Issue.record("\(how): \(String(decoding: bytes, as: UTF8.self)) is invalid: \(check(String(decoding: bytes, as: UTF8.self)).issues)")
                    continue
                }
                #expect(again.unknownFields.isEmpty)
                for (slot, field) in original.fields.enumerated() {
                    let before = original.value(at: slot)
                    let after = again.value(at: slot)
                    switch (before, after) {
                    case (.timestamp(_, let a)?, .timestamp(_, let b)?):
                        #expect(a == b, "\(how): \(eventType).\(field.name)")
                    case (.json(let a)?, .json(let b)?):
                        let x = try JSONSerialization.jsonObject(with: Data(a.utf8)) as? NSDictionary
                        let y = try JSONSerialization.jsonObject(with: Data(b.utf8)) as? NSDictionary
                        #expect(x == y, "\(how): \(eventType).\(field.name)")
                    default:
                        #expect(before == after, "\(how): \(eventType).\(field.name): \(String(describing: before)) vs \(String(describing: after))")
                    }
                }
            }
        }
    }

    @Test func requiredFieldsAreNonOptionalExceptWhatTheEmitterFills() throws {
        // A struct made with only its non-optional values, plus the envelope and environment the
        // emitter fills, is a valid event.
        var event = GenerationStarted(model: "sdxl-1.0", taskID: UUID())
        event.envelope = EventEnvelope(
            eventID: UUID(), timestamp: Date(), tenantID: UUID(), source: "worker")
        #expect(!check(event.jsonString).isValid, "node_id is required and not yet filled")
        event.fillEnvironment(EventEnvironment(nodeID: UUID(), vmType: "g5.2xlarge", hostName: "gpu-1"))
        let result = check(event.jsonString)
        #expect(result.isValid, "\(result.issues)")
        #expect(result.event?.value("vm_type") == .string("g5.2xlarge"))
        // Set fields win over the environment.
        var explicit = GenerationStarted(model: "m", taskID: UUID(), nodeID: UUID(), vmType: "mine")
        explicit.fillEnvironment(EventEnvironment(vmType: "theirs"))
        #expect(explicit.vmType == "mine")
    }
}

extension TypedEventTests {
    /// The fast writer escapes what JSON requires wherever it falls in a string (first, last,
    /// runs of it, between plain text and non-ASCII), and writes UUIDs as lowercase 8-4-4-4-12.
    @Test func theWriterEscapesStringsAndWritesUUIDs() throws {
        let specials = ["\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1F}"]
        var texts = ["", "plain", "é ☃ 🦆", "a lighthouse on a rocky coast at dawn"]
        for special in specials {
            texts += [special, "x\(special)", "\(special)x", "x\(special)y\(special)\(special)z", "é\(special)🦆"]
        }
        for text in texts {
            let id = UUID()
            var event = GenerationStarted(model: text, prompt: "\(text)|\(text)", taskID: id)
            event.envelope = EventEnvelope(eventID: id, timestamp: Date(), tenantID: id, source: "s")
            var writer = EventJSONWriter()
            event.writeJSON(to: &writer)
            let object = try #require(JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String: Any], "\(text.debugDescription)")
            #expect(object["model"] as? String == text, "\(text.debugDescription)")
            #expect(object["prompt"] as? String == "\(text)|\(text)")
            #expect(object["task_id"] as? String == id.uuidString.lowercased())
            #expect(object["event_id"] as? String == id.uuidString.lowercased())
        }
    }
}
