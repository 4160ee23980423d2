import Foundation
import TelemetryCatalog
import Testing

@Suite struct CatalogCommandTests {
    @Test func jsonListsNineteenEventsOnSevenTopics() async throws {
        let result = try await CLI.runOffPool(["catalog", "--format", "json"])
        #expect(result.status == 0)
        let object = try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let events = try #require(object["events"] as? [[String: Any]])
        #expect(events.count == 19)
        #expect(Set(events.compactMap { $0["topic"] as? String }).count == 7)
        let check = try #require(events.first { $0["event_type"] as? String == "pbac.agent.politics.check" })
        let fields = try #require(check["fields"] as? [[String: Any]])
        let cacheHit = try #require(fields.first { $0["name"] as? String == "cache_hit" })
        #expect(cacheHit["type"] as? String == "bool")
        #expect(cacheHit["required"] as? Bool == false)
        #expect(cacheHit["description"] as? String != nil)
    }

    @Test func jsonSchemaOfOneTypeAndOfAll() async throws {
        let one = try await CLI.runOffPool(["catalog", "xumi.generation.start", "--format", "json-schema"])
        #expect(one.status == 0)
        let schema = try #require(JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as? [String: Any])
        #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
        #expect((schema["required"] as? [String])?.contains("task_id") == true)
        let all = try await CLI.runOffPool(["catalog", "--format", "json-schema"])
        let map = try #require(JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [String: Any])
        #expect(Set(map.keys) == Set(Catalog.builtin.eventTypes))
    }

    @Test func markdownIsThePublishedPage() async throws {
        let result = try await CLI.runOffPool(["catalog", "--format", "markdown"])
        let page = try String(contentsOf: CLI.packageRoot.appendingPathComponent("docs/catalog.md"), encoding: .utf8)
        #expect(result.stdout == page)
    }

    @Test func textAndUnknownTypes() async throws {
        let text = try await CLI.runOffPool(["catalog", "kuber.deploy.free"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("resource_id"))
        #expect(text.stdout.contains("eval_ms"))
        let unknown = try await CLI.runOffPool(["catalog", "kuber.deploy.fre"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown event type"))
    }

    @Test func sampleEventsValidate() async throws {
        let sample = try await CLI.runOffPool(["sample", "--count", "40", "--seed", "9"])
        #expect(sample.status == 0)
        #expect(sample.stdout.split(separator: "\n").count == 40)
        let check = try await CLI.runOffPool(["validate", "-"], stdin: Data(sample.stdout.utf8))
        #expect(check.status == 0)
        #expect(check.stdout.contains("40 events: 40 valid"))
    }

    @Test func helpIsPlainAndExitsZero() async throws {
        let commands: [[String]] = [
            [], ["serve"], ["demo"], ["validate"], ["catalog"], ["sample"], ["send"], ["query"], ["query", "events"], ["query", "ops"],
            ["stats"], ["tail"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["consume"], ["bench"], ["bench", "validation"], ["bench", "ingest"], ["bench", "query"], ["bench", "emitter"],
        ]
        for command in commands {
            let result = try await CLI.runOffPool(command + ["--help"])
            #expect(result.status == 0, "\(command)")
            #expect(result.stdout.contains("USAGE:"), "\(command)")
            #expect(!result.stdout.contains("CollectorURL("), "\(command): defaults are shown as people write them")
        }
    }
}
