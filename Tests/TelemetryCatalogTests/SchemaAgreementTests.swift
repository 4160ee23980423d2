import Foundation
import TelemetryProcess
import Testing
@testable import TelemetryCatalog

/// Runs the exported JSON Schemas through an independent validator (Python's `jsonschema`) and
/// requires the same verdict as `EventValidator` on a corpus of valid and invalid events.
@Suite struct SchemaAgreementTests {
    /// Values each field is set to in turn. Strings given to `json_object` fields are left out:
    /// that such a string holds an object is beyond JSON Schema (documented in the catalog).
    static let candidates: [String] = [
        #""""#, #""x""#, "0", "-1", "1.5", "1.0", "1e3", "true", "false", "null", "{}", #"{"k":"v"}"#, #"{"k":1}"#, "[]",
        #""2026-11-29T10:00:00Z""#, #""2026-11-29t10:00:00.5z""#, #""2026-11-29T10:00:00+05:30""#, #""2026-02-29T00:00:00Z""#,
        #""2024-02-29T23:59:59.999999999-12:00""#, #""2026-11-29T10:00:60Z""#, #""2026-11-29 10:00:00Z""#, #""2026-11-29T10:00:00""#,
        #""0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11""#, #""0B6B2A3E-8A55-4C9E-9F8E-3D1F0F2B9C11""#, #""00000000-0000-0000-0000-000000000000""#,
        #""0b6b2a3e8a554c9e9f8e3d1f0f2b9c11""#, #""{0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11}""#, #""urn:uuid:0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11""#,
        #""1.2.3.4""#, #""01.2.3.4""#, #""256.0.0.1""#, #""::1""#, #""2001:db8::1""#, #""::ffff:1.2.3.4""#, #""fe80::1%eth0""#, #""1:2:3:4:5:6:7:8:9""#,
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e400", "123456789012345678901234567890",
    ]

    static func corpus() -> [String] {
        var lines: [String] = []
        let catalog = Catalog.builtin
        for (n, eventType) in catalog.eventTypes.enumerated() {
            let definition = catalog.latest(eventType)!
            for seed in 1...3 as ClosedRange<UInt64> { lines.append(validEvent(eventType, seed: seed + UInt64(n) * 10).render()) }
            let base = validEvent(eventType, seed: UInt64(n) + 100)
            for field in catalog.allFields(of: definition) {
                var without = base
                without[field.name] = nil
                lines.append(without.render())
                for candidate in candidates {
                    if field.type == .jsonObject && candidate.hasPrefix("\"") { continue }
                    lines.append(String(without.render().dropLast()) + ",\"\(field.name)\":\(candidate)}")
                }
                for alias in field.aliases {
                    lines.append(String(without.render().dropLast()) + ",\"\(alias)\":\"0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11\"}")
                    lines.append(String(base.render().dropLast()) + ",\"\(alias)\":\"0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11\"}")
                }
            }
            var tags = base
            tags["tags"] = ["a": "b", "n": 1]
            lines.append(tags.render())
            var otherType = base
            otherType["event_type"] = .string(catalog.eventTypes[(n + 1) % catalog.eventTypes.count])
            lines.append(otherType.render())
            var unknownField = base
            unknownField["brand_new_field"] = ["nested": [1, 2]]
            lines.append(unknownField.render())
        }
        return lines
    }

    @Test func pythonJSONSchemaAgreesWithTheValidator() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schema-agreement-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let schemas = directory.appendingPathComponent("schemas.json")
        let corpusFile = directory.appendingPathComponent("corpus.ndjson")
        try Catalog.builtin.jsonSchemas().render().write(to: schemas, atomically: true, encoding: .utf8)
        let corpus = Self.corpus()
        try (corpus.joined(separator: "\n") + "\n").write(to: corpusFile, atomically: true, encoding: .utf8)

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/schema_verdicts.py")
        let python = try await ChildProcess.run("/usr/bin/env", ["python3", script.path, schemas.path, corpusFile.path])
        try #require(python.status == 0, "python jsonschema failed (the test command installs it): \(python.errors)")

        let verdicts = python.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        try #require(verdicts.count == corpus.count)
        var validator = EventValidator()
        var valid = 0
        var invalid = 0
        var disagreements: [String] = []
        for (line, verdict) in zip(corpus, verdicts) {
            let ours = validator.validate(line)
            let theirs = verdict.hasPrefix("1")
            if ours.isValid { valid += 1 } else { invalid += 1 }
            if ours.isValid != theirs {
                disagreements.append("ours \(ours.isValid ? "valid" : "\(ours.issues)"), jsonschema \(verdict): \(line)")
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, first: \(disagreements.prefix(5).joined(separator: "\n"))")
        // The corpus must exercise both verdicts in quantity, or agreement would prove little.
        #expect(valid > 1000)
        #expect(invalid > 3000)
    }
}
