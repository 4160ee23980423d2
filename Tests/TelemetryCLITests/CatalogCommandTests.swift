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
        // Every command, found from the SUBCOMMANDS sections, so that a new one is checked too.
        var pending: [[String]] = [[]]
        var seen: [[String]] = []
        while let command = pending.popLast() {
            seen.append(command)
            // Wide enough that nothing is wrapped: each line of the text is seen as written.
            let result = try await CLI.runOffPool(command + ["--help"], environment: ["COLUMNS": "1000"])
            #expect(result.status == 0, "\(command)")
            #expect(result.stdout.contains("USAGE:"), "\(command)")
            #expect(!result.stdout.contains("CollectorURL("), "\(command): defaults are shown as people write them")
            for problem in Self.layoutProblems(result.stdout) {
                Issue.record("telemetry \(command.joined(separator: " ")) --help: \(problem)")
            }
            pending += Self.subcommands(result.stdout).map { command + [$0] }
        }
        #expect(seen.count >= 25, "\(seen)")
        #expect(seen.contains(["bench", "kafka"]) && seen.contains(["query", "ops"]) && seen.contains(["keys", "revoke"]))
    }

    @Test func helpLayoutRulesCatchBrokenText() {
        #expect(Self.layoutProblems("OVERVIEW: x\n\nExamples:\n  telemetry serve\n\nUSAGE: telemetry\n").isEmpty)
        #expect(Self.layoutProblems("OVERVIEW: x\n\nExamples:\n  \(String(repeating: "y", count: 80))\n\nUSAGE: t\n").count == 1)
        #expect(Self.layoutProblems("OVERVIEW: x\n\nThe first half\nof a sentence.\n\nUSAGE: t\n").count == 1)
    }

    /// Lines of the help's description (between OVERVIEW and USAGE, as written) that a terminal of 80
    /// columns would show broken: a preformatted (indented) line longer than 80 columns is wrapped
    /// to column 0; a paragraph broken in the source (a line, then one going on in lower case) is
    /// shown ragged, since the help wraps each line on its own.
    static func layoutProblems(_ help: String) -> [String] {
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let usage = lines.firstIndex(where: { $0.hasPrefix("USAGE:") }) else { return ["no USAGE line"] }
        var problems: [String] = []
        let description = Array(lines[..<usage])
        for (index, line) in description.enumerated() {
            let indented = line.first == " "
            if indented && line.count > 80 {
                problems.append("preformatted line of \(line.count) columns: \(line)")
            }
            if !indented, !line.isEmpty, index + 1 < description.count,
                let next = description[index + 1].first, next.isLowercase
            {
                problems.append("paragraph broken in the source after: \(line)")
            }
        }
        return problems
    }

    /// The names listed under SUBCOMMANDS (the default one marked "(default)" too).
    static func subcommands(_ help: String) -> [String] {
        guard let start = help.range(of: "SUBCOMMANDS:\n") else { return [] }
        return help[start.upperBound...].split(separator: "\n").compactMap { line in
            // "  name   abstract": names sit at column 2; wrapped abstracts are indented further.
            guard line.hasPrefix("  "), line.dropFirst(2).first?.isLetter == true, !line.hasPrefix("  See ") else { return nil }
            return line.dropFirst(2).split(separator: " ").first.map(String.init)
        }
    }
}
