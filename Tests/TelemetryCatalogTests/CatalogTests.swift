import Foundation
import Testing
@testable import TelemetryCatalog

@Suite struct CatalogTests {
    /// The fields of each event type as the spec lists them (spec spelling), written out here
    /// independently of the catalog so that a field dropped from the catalog fails this test.
    static let specFields: [String: (topic: String, fields: [String])] = [
        "xumi.weights.load.start": ("xumi_load", ["model", "url", "node_id", "vm_type", "host_name", "storage_size", "storage_type"]),
        "xumi.weights.load.complete": ("xumi_load", ["model", "url", "origin_event_id", "result", "speed", "size", "node_id", "vm_type", "host_name", "storage_size", "storage_type"]),
        "xumi.generation.start": ("xumi_task", ["model", "url", "created", "prompt", "speed", "task_id", "node_id", "vm_type", "host_name", "storage_size", "storage_type"]),
        "xumi.generation.complete": ("xumi_task", ["model", "url", "created", "start_generation", "prompt", "speed", "result", "detail", "task_id", "user_id", "node_id", "vm_type", "host_name", "storage_size", "storage_type"]),
        "kuber.deploy.start": ("kubernetes", ["created", "node_id", "user", "action", "resource", "result", "service", "resource_Id", "user_tenant_id", "resource_tenant_id", "hardware", "hardware_template_id"]),
        "kuber.deploy.start.complete": ("kubernetes", ["created", "node_id", "user", "action", "resource", "result", "description", "service", "resource_Id", "user_tenant_id", "resource_tenant_id", "hardware", "hardware_template_id", "prevision_event_id"]),
        "kuber.deploy.free": ("kubernetes", ["created", "node_id", "user", "action", "resource", "result", "service", "resource_Id", "user_tenant_id", "resource_tenant_id", "eval_ms"]),
        "kuber.deploy.free.complete": ("kubernetes", ["created", "node_id", "user", "action", "resource", "result", "service", "resource_id", "user_tenant_id", "resource_tenant_id", "eval_ms"]),
        "pbac.agent.politics.check": ("pbac_access", ["created", "user", "action", "resource", "result", "system_rule_revision", "tenant_rule_revision", "service", "resource_Id", "user_tenant_id", "resource_tenant_id", "eval_ms", "cache_hit", "error", "denial_source"]),
        "pbac.agent.politics.reset": ("pbac_service", ["created", "description", "result"]),
        "pbac.agent.politics.load": ("pbac_service", ["created", "policy_revision", "description", "result", "compile_ms"]),
        "pbac.agent.start": ("pbac_service", ["created"]),
        "pbac.agent.politics.update": ("pbac_service", ["created", "rule_id", "rule_version", "politic_version", "description"]),
        "pbac.agent.politics.archive": ("pbac_service", ["created", "rule_id", "rule_version", "politic_version", "description"]),
        "assets.access.read": ("asset_access", ["created", "resource_url", "object_size", "result", "description", "IP"]),
        "assets.access.download": ("asset_transfer", ["created", "resource_url", "object_size", "result", "description", "avg_speed", "IP"]),
        "assets.access.upload": ("asset_transfer", ["created", "resource_url", "object_size", "result", "description", "avg_speed", "IP", "user_space_size", "total_space_size"]),
        "assets.access.delete": ("asset_transfer", ["created", "resource_url", "object_size", "result", "description", "IP", "used_space_size", "total_space_size"]),
        "workflow.process.create": ("kubernetes", ["created", "node_id", "user_id", "result", "service", "resource_Id", "user_tenant_id", "resource_tenant_id", "workflow_process_id"]),
    ]

    @Test func hasTheSpecsNineteenEventTypesOnSevenTopics() {
        let catalog = Catalog.builtin
        #expect(Set(catalog.eventTypes) == Set(Self.specFields.keys))
        #expect(catalog.eventTypes.count == 19)
        #expect(Set(catalog.topics.map(\.name)) == ["xumi_load", "xumi_task", "kubernetes", "pbac_access", "pbac_service", "asset_access", "asset_transfer"])
        for event in catalog.events {
            #expect(event.version == "1.0")
            #expect(event.topic.name == Self.specFields[event.eventType]?.topic, "topic of \(event.eventType)")
        }
    }

    @Test(arguments: specFields.keys.sorted())
    func everySpecFieldIsInTheCatalog(eventType: String) throws {
        let definition = try #require(Catalog.builtin.latest(eventType))
        let fields = Catalog.builtin.allFields(of: definition)
        for specName in Self.specFields[eventType]!.fields {
            let found = fields.contains { $0.name == specName || $0.aliases.contains(specName) }
            #expect(found, "\(eventType) lacks the spec's field \(specName)")
        }
        for name in ["event_id", "event_type", "timestamp", "tenant_id", "user_id", "session_id", "source", "version", "metadata", "tags"] {
            #expect(fields.contains { $0.name == name }, "\(eventType) lacks envelope field \(name)")
        }
        for field in fields {
            #expect(!field.reason.isEmpty, "\(eventType).\(field.name) has no recorded reason")
            #expect(!field.description.isEmpty, "\(eventType).\(field.name) has no description")
        }
    }

    @Test func resourceIdIsOneFieldUnderTwoSpellings() throws {
        let field = try #require(Catalog.builtin.allFields(of: Catalog.builtin.latest("kuber.deploy.start")!).first { $0.name == "resource_id" })
        #expect(field.aliases == ["resource_Id"])
        #expect(field.type == .uuid)
        #expect(!Catalog.builtin.fieldNames.contains("resource_Id"))
    }

    @Test func catalogPageIsCurrent() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/catalog.md").standardized
        let onDisk = try String(contentsOf: path, encoding: .utf8)
        #expect(onDisk == Catalog.builtin.markdown(), "docs/catalog.md is stale: run `swift run telemetry catalog --format markdown > docs/catalog.md`")
    }

    @Test func jsonListingHasTheContractShape() throws {
        let listing = Catalog.builtin.jsonListing()
        guard case .array(let events)? = listing["events"] else { Issue.record("no events array"); return }
        #expect(events.count == 19)
        for event in events {
            for key in ["event_type", "topic", "version", "fields"] { #expect(event[key] != nil, "missing \(key)") }
            guard case .array(let fields)? = event["fields"] else { continue }
            for field in fields {
                for key in ["name", "type", "required", "description"] { #expect(field[key] != nil) }
            }
        }
        // And it parses as JSON.
        let data = Data(listing.render(pretty: true).utf8)
        #expect((try? JSONSerialization.jsonObject(with: data)) != nil)
    }

    @Test func aNewVersionIsADataChange() throws {
        var events = Catalog.builtinEvents
        var v11 = Catalog.builtin.latest("pbac.agent.start")!
        v11.version = "1.1"
        v11.fields.append(.required("agent_build", .string, "Build of the agent.", because: "test"))
        events.append(v11)
        events.append(
            EventDefinition("gpu.temperature", topic: "gpu_health", title: "GPU temperature", fields: [
                .required("celsius", .number, "Temperature.", because: "test")
            ]))
        let catalog = try Catalog(envelope: Catalog.builtinEnvelope, events: events)
        var validator = EventValidator(catalog: catalog)

        var event = validEvent("pbac.agent.start")
        #expect(validator.validate(event.render()).isValid, "1.0 still valid")
        event["version"] = "1.1"
        #expect(validator.validate(event.render()).codes == ["missing"])
        event["agent_build"] = "2026.11.1"
        #expect(validator.validate(event.render()).isValid)
        event["version"] = "2.0"
        let unknown = validator.validate(event.render())
        #expect(unknown.codes == ["unknown_version"])
        #expect(unknown.issues.first?.message.contains("1.0, 1.1") == true)

        var gpu = validEvent("pbac.agent.start")
        gpu["event_type"] = "gpu.temperature"
        gpu["celsius"] = .number(71.5)
        let result = validator.validate(gpu.render())
        #expect(result.event?.topic == "gpu_health")
        #expect(result.event?.value("celsius") == .number(71.5))
        #expect(catalog.jsonSchema(of: "pbac.agent.start")?["anyOf"] != nil)
    }

    @Test func inconsistentCatalogsAreRefused() {
        let start = Catalog.builtin.latest("pbac.agent.start")!
        #expect(throws: CatalogError.self) { try Catalog(envelope: Catalog.builtinEnvelope, events: [start, start]) }
        var twice = start
        twice.fields.append(twice.fields[0])
        #expect(throws: CatalogError.self) { try Catalog(envelope: Catalog.builtinEnvelope, events: [twice]) }
        #expect(throws: CatalogError.self) { try Catalog(envelope: Array(Catalog.builtinEnvelope.dropFirst()), events: [start]) }
    }
}
