import Foundation
import TelemetryCatalog
import Testing

@Suite struct ValidateCommandTests {
    @Test func theExampleFileIsValid() async throws {
        let result = try await CLI.runOffPool(["validate", "examples/events.ndjson"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("19 events: 19 valid, 0 invalid"))
        #expect(result.stdout.contains("xumi.generation.complete"))
    }

    @Test func invalidLinesExitOneAndAreReportedAsJSONLines() async throws {
        var sampler = EventSampler(seed: 3)
        let valid = sampler.sample(Catalog.builtin.latest("pbac.agent.start")!).render()
        var bad = sampler.sample(Catalog.builtin.latest("xumi.generation.start")!)
        bad["task_id"] = "not-a-uuid"
        bad["model"] = nil
        let input = [valid, "", bad.render(), "{\"event_type\":", "[1]", valid].joined(separator: "\n") + "\n"
        let result = try await CLI.runOffPool(["validate", "-", "--format", "json"], stdin: Data(input.utf8))
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "one object per non-blank line: \(lines)")
        let objects = try lines.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects.map { $0["line"] as? Int } == [1, 3, 4, 5, 6])
        #expect(objects.map { $0["valid"] as? Bool } == [true, false, false, false, true])
        #expect(objects[0]["event_type"] as? String == "pbac.agent.start")
        #expect((objects[0]["errors"] as? [Any])?.isEmpty == true)
        #expect(objects[1]["event_type"] as? String == "xumi.generation.start")
        let errors = try #require(objects[1]["errors"] as? [[String: String]])
        #expect(Set(errors.map { $0["field"]! + ":" + $0["code"]! }) == ["task_id:bad_uuid", "model:missing"])
        #expect(errors.allSatisfy { !($0["message"] ?? "").isEmpty })
        #expect(objects[2]["event_type"] is NSNull)
        #expect((objects[2]["errors"] as? [[String: String]])?.first?["code"] == "malformed_json")
        #expect((objects[3]["errors"] as? [[String: String]])?.first?["code"] == "not_an_object")
        // The summary goes to standard error, so standard output stays pure NDJSON.
        #expect(result.stderr.contains("5 events: 2 valid, 3 invalid"))
        #expect(result.stderr.contains("bad_uuid"))
    }

    @Test func textOutputNamesLineFieldAndCode() async throws {
        let input = #"{"event_type":"pbac.agent.start","version":"1.0"}"# + "\n"
        let result = try await CLI.runOffPool(["validate", "-"], stdin: Data(input.utf8))
        #expect(result.status == 1)
        #expect(result.stdout.contains("line 1 (pbac.agent.start): event_id: missing: event_id is required for pbac.agent.start"))
        #expect(result.stdout.contains("invalid events by error code:"))
    }

    @Test func usageAndIOErrorsExitTwo() async throws {
        #expect(try await CLI.runOffPool(["validate"]).status == 2)
        #expect(try await CLI.runOffPool(["validate", "examples/events.ndjson", "--format", "yaml"]).status == 2)
        let missing = try await CLI.runOffPool(["validate", "/nonexistent/events.ndjson"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("cannot open /nonexistent/events.ndjson"))
        #expect(try await CLI.runOffPool(["validate", "examples"]).status == 2)
    }

    @Test func aLineOverTheLimitIsTooLargeAndTheRestStillChecked() async throws {
        var sampler = EventSampler(seed: 4)
        let valid = sampler.sample().render()
        let long = #"{"prompt":""# + String(repeating: "x", count: 5000) + #""}"#
        let input = [valid, long, valid].joined(separator: "\n")  // no final newline
        let result = try await CLI.runOffPool(["validate", "-", "--format", "json", "--max-line-bytes", "1000"], stdin: Data(input.utf8))
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].contains(#""valid":true"#))
        #expect(lines[1].contains(#""code":"too_large""#))
        #expect(lines[2].contains(#""valid":true"#))
    }

    /// Streams 96 MiB through standard input: the reader holds one chunk, never the file.
    @Test func memoryStaysBoundedWhateverTheInputSize() async throws {
        var sampler = EventSampler(seed: 5)
        let block = Data(sampler.ndjson(count: 2_000))
        var input = Data()
        while input.count < 96 << 20 { input.append(block) }
        let result = try await CLI.runOffPool(["validate", "-", "--format", "json"], stdin: input)
        #expect(result.status == 0, "\(result.stderr.prefix(500))")
        #expect(result.stderr.contains("valid, 0 invalid"))
        // The summary reports the process's own peak resident memory (VmHWM).
        let summary = try #require(result.stderr.split(separator: "\n").first)
        let peak = try #require(summary.firstMatch(of: /peak memory ([0-9.]+) MiB/), "\(summary)")
        #expect(Double(peak.1)! < 64, "\(summary)")
    }

    @Test func aProgressBarShowsOnATerminalForLargeFiles() async throws {
        let directory = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("big.ndjson")
        var sampler = EventSampler(seed: 6)
        let block = Data(sampler.ndjson(count: 2_000))
        var data = Data()
        while data.count < 24 << 20 { data.append(block) }
        try data.write(to: file)
        // script(1) gives the command a real terminal.
        let command = "\(CLI.executable.path) validate \(file.path) --format json > /dev/null"
        let result = try await CLI.runOffPool(["-qfec", command, "/dev/null"], executable: URL(fileURLWithPath: "/usr/bin/script"))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("%"), "a percentage was drawn: \(result.stdout.suffix(300))")
        #expect(result.stdout.contains("MiB /"))
    }
}
