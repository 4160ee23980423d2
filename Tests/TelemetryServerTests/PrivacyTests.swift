import Foundation
import TelemetryCatalog
import TelemetryPipeline
import TelemetryStore
import Testing

/// The privacy policy: what happens to sensitive fields before anything is stored.
@Suite struct PrivacyTests {
    static let key = [UInt8](repeating: 7, count: 32)

    static func validate(_ event: JSONValue) throws -> NormalizedEvent {
        var validator = EventValidator()
        guard case .valid(let valid) = validator.validate(event.render()) else {
            Issue.record("invalid sample: \(event.render().prefix(200))")
            throw CancellationError()
        }
        return valid
    }

    static func sample(_ type: String, seed: UInt64, _ changes: [String: JSONValue] = [:]) -> JSONValue {
        var sampler = EventSampler(seed: seed)
        var event = sampler.sample(Catalog.builtin.latest(type)!)
        for (name, value) in changes { event[name] = value }
        return event
    }

    static func object(_ event: NormalizedEvent) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(event.json)) as? [String: Any])
    }

    @Test func theDefaultsHashPromptsAndCutAddressesToTheirNetwork() throws {
        let policy = try PrivacyPolicy(rules: PrivacyPolicy.defaultRules, key: Self.key)
        let prompt = "a portrait of Jane Doe, 12 Main Street"
        let first = policy.apply(to: try Self.validate(Self.sample("xumi.generation.start", seed: 1, ["prompt": .string(prompt)])))
        let again = policy.apply(to: try Self.validate(Self.sample("xumi.generation.start", seed: 2, ["prompt": .string(prompt)])))
        let other = policy.apply(to: try Self.validate(Self.sample("xumi.generation.start", seed: 3, ["prompt": "a cat"])))
        guard case .string(let hashed)? = first.value("prompt") else { Issue.record("no prompt"); return }
        #expect(hashed.hasPrefix("hmac:") && hashed.count == 5 + 32)
        // HMAC-SHA256 itself: Python's hmac module gives the same first 16 bytes for this key and text.
        #expect(hashed == "hmac:aa45834f60301acc60fd2bfae558d1ea")
        #expect(again.value("prompt") == .string(hashed), "equal prompts still match")
        #expect(other.value("prompt") != .string(hashed))
        // The same prompt sent with escapes hashes the same: the text is hashed, not its spelling.
        let spelled = Self.sample("xumi.generation.start", seed: 4, ["prompt": .string(prompt)]).render()
            .replacingOccurrences(of: #""prompt":"a portrait"#, with: #""prompt":"a portrait"#)
        #expect(spelled.contains(#"p"#))
        var validator = EventValidator()
        guard case .valid(let escaped) = validator.validate(spelled) else { Issue.record("invalid: \(spelled)"); return }
        #expect(policy.apply(to: escaped).value("prompt") == .string(hashed))
        #expect(!first.jsonString.contains("Jane"))
        #expect(try Self.object(first)["_masked"] as? [String: String] == ["prompt": "hash"])
        // Another key, another hash: without the key a list of guesses does not help.
        let otherKey = try PrivacyPolicy(rules: PrivacyPolicy.defaultRules, key: [UInt8](repeating: 8, count: 32))
        #expect(otherKey.apply(to: try Self.validate(Self.sample("xumi.generation.start", seed: 1, ["prompt": .string(prompt)]))).value("prompt") != .string(hashed))

        for (sent, kept) in [
            ("203.0.113.77", "203.0.113.0"), ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"), ("::1", "::"),
        ] {
            let masked = policy.apply(to: try Self.validate(Self.sample("assets.access.read", seed: 4, ["IP": .string(sent)])))
            #expect(masked.value("IP") == .string(kept), "\(sent)")
            #expect(try Self.object(masked)["_masked"] as? [String: String] == ["IP": "truncate"])
        }
        // Already a network address: nothing to mask, nothing recorded.
        let network = policy.apply(to: try Self.validate(Self.sample("assets.access.read", seed: 5, ["IP": "198.51.100.0"])))
        #expect(try Self.object(network)["_masked"] == nil)
    }

    @Test func dropAndTruncateAndRulesThatCannotWork() throws {
        let rules = try PrivacyPolicy.parseRules("detail=truncate:5,prompt=drop,IP=keep")
        #expect(rules["prompt"] == .drop && rules["IP"] == .keep && rules["detail"] == .truncate(5))
        let policy = try PrivacyPolicy(rules: rules, key: Self.key)
        let event = Self.sample("xumi.generation.complete", seed: 6, ["prompt": "secret words", "detail": "CUDA 😱 out of memory"])
        let masked = policy.apply(to: try Self.validate(event))
        let object = try Self.object(masked)
        #expect(object["prompt"] == nil && masked.value("prompt") == nil)
        #expect(object["detail"] as? String == "CUDA ")
        #expect(object["_masked"] as? [String: String] == ["prompt": "drop", "detail": "truncate:5"])

        #expect(throws: CatalogError.self) { try PrivacyPolicy(rules: ["model": .drop], key: Self.key) }  // required
        #expect(throws: CatalogError.self) { try PrivacyPolicy(rules: ["no_such_field": .hash], key: Self.key) }
        #expect(throws: CatalogError.self) { try PrivacyPolicy(rules: ["object_size": .hash], key: Self.key) }  // not a string
        #expect(throws: CatalogError.self) { try PrivacyPolicy.parseRules("prompt=encrypt") }
    }

    /// Masking moves bytes: every other field must read back exactly as before, in every event
    /// type, whatever is masked around it.
    @Test func everyOtherFieldIsUntouched() throws {
        var sampler = EventSampler(seed: 99)
        let all = Catalog.builtin.events.flatMap(\.fields)
        let stringFields = Set(all.map(\.name)).filter { name in
            all.filter { $0.name == name }.allSatisfy { $0.type == .string || $0.type == .ipAddress }
        }
        let required = Set(Catalog.builtin.events.flatMap(\.fields).filter(\.isRequired).map(\.name))
        var rules: [String: PrivacyPolicy.Action] = [:]
        for (i, name) in stringFields.sorted().enumerated() {
            let choices: [PrivacyPolicy.Action] = required.contains(name) ? [.hash, .truncate(3)] : [.hash, .truncate(3), .drop]
            rules[name] = choices[i % choices.count]
        }
        let policy = try PrivacyPolicy(rules: rules, key: Self.key)
        var maskedCount = 0
        for _ in 0..<2_000 {
            let original = try Self.validate(sampler.sample())
            let masked = policy.apply(to: original)
            let object = try Self.object(masked)
            let note = object["_masked"] as? [String: String] ?? [:]
            maskedCount += note.count
            for (slot, field) in original.fields.enumerated() {
                if note[field.name] == nil {
                    #expect(masked.value(at: slot) == original.value(at: slot), "\(original.eventType).\(field.name)")
                } else if note[field.name] == "drop" {
                    #expect(masked.value(at: slot) == nil && object[field.name] == nil)
                } else {
                    // The typed value is the one in the stored JSON.
                    #expect(masked.value(at: slot) == (object[field.name] as? String).map { .string($0) }, "\(field.name)")
                }
            }
        }
        #expect(maskedCount > 2_000)
    }

    @Test func theCollectorStoresOnlyMaskedValues() async throws {
        let policy = try PrivacyPolicy(rules: PrivacyPolicy.defaultRules, key: Self.key)
        try await TestCollector.run(privacy: policy) { collector in
            let event = Self.sample("xumi.generation.start", seed: 7, ["prompt": "my bank password is hunter2"])
            #expect(try await collector.connection().post(event.render()).json["accepted"] as? Int == 1)
            let page = try await collector.store.events(EventQuery())
            #expect(page.events.count == 1)
            #expect(!page.events[0].json.contains("hunter2"))
            #expect(page.events[0].json.contains(#""_masked":{"prompt":"hash"}"#))
            // Indexed by the masked value: a filter on the hash finds it.
            let hashed = policy.apply(to: try Self.validate(event)).value("prompt")
            guard case .string(let text)? = hashed else { Issue.record("no prompt"); return }
            let found = try await collector.connection().getJSON("/v1/events?prompt=\(text)")
            #expect((found.json["events"] as? [Any])?.count == 1)
            // A rejected event is masked too, when it is a JSON object.
            var invalid = Self.sample("xumi.generation.start", seed: 8, ["prompt": "my hunter2 again"])
            invalid["task_id"] = "not-a-uuid"
            #expect((try await collector.connection().post(invalid.render()).json["rejected"] as? [Any])?.count == 1)
            let rejected = try await collector.store.rejected(RejectedQuery())
            let raw = String(decoding: try #require(rejected.rejected.first).raw, as: UTF8.self)
            #expect(!raw.contains("hunter2") && raw.contains(#""_masked":{"prompt":"hash"}"#) && raw.contains("not-a-uuid"))
            // Nothing of the original in the database file either (WAL included).
            let directory = (collector.path as NSString).deletingLastPathComponent
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
                #expect(bytes.range(of: Data("hunter2".utf8)) == nil, "\(name)")
            }
        }
    }
}
