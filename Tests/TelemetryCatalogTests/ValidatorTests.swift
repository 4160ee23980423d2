import Foundation
import Testing
@testable import TelemetryCatalog

@Suite struct ValidatorTests {
    @Test(arguments: Catalog.builtin.eventTypes)
    func aSampleOfEveryTypeIsValid(eventType: String) throws {
        for seed in 1...20 as ClosedRange<UInt64> {
            let result = check(validEvent(eventType, seed: seed))
            #expect(result.isValid, "\(eventType) seed \(seed): \(result.issues)")
            #expect(result.event?.eventType == eventType)
        }
    }

    @Test func aHandWrittenGenerationCompleteIsValidAndTyped() throws {
        let json = """
            {"event_id":"0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11","event_type":"xumi.generation.complete",
             "timestamp":"2026-11-29T10:15:30.250+01:00","tenant_id":"5C1E7A52-0D6A-4C3E-8B59-1F2D3E4A5B6C",
             "user_id":"e2a1f7c4-3b5d-4e6f-8a9b-0c1d2e3f4a5b","source":"xumi-worker","version":"1.0",
             "metadata":{"trace":{"id":[1,2,3]}},"tags":{"env":"prod"},
             "model":"sdxl-1.0","created":"2026-11-29T09:15:30Z","start_generation":"2026-11-29T09:15:29.5Z",
             "result":false,"detail":"CUDA out of memory","task_id":"7d9f2c1e-4b3a-4e5d-9c8b-1a2b3c4d5e6f",
             "node_id":"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d","storage_size":9223372036854775807}
            """
        let event = try #require(check(json).event)
        #expect(event.eventType == "xumi.generation.complete")
        #expect(event.topic == .xumiTask)
        #expect(event.tenantID.description == "5c1e7a52-0d6a-4c3e-8b59-1f2d3e4a5b6c")
        // 10:15:30.250+01:00 is 09:15:30.250Z.
        #expect(event.timestampMicros == TimestampText.parseMicroseconds(raw("2026-11-29T09:15:30.250Z")))
        #expect(event.timestampMicros == 1_795_943_730_250_000)
        #expect(event.value("timestamp") == .timestamp(text: "2026-11-29T10:15:30.250+01:00", microseconds: 1_795_943_730_250_000))
        #expect(event.value("result") == .bool(false))
        #expect(event.value("storage_size") == .integer(Int64.max))
        #expect(event.value("metadata") == .json(#"{"trace":{"id":[1,2,3]}}"#))
        #expect(event.value("prompt") == nil)
        #expect(event.unknownFields.isEmpty)
    }

    /// The table member names are looked up in: hashed eight bytes at a time, so every length
    /// around a word's, and near misses (a prefix, one byte changed), are checked.
    @Test func byteTableFindsEveryKeyAndNothingElse() {
        var generator = SystemRandomNumberGenerator()
        var keys: [[UInt8]] = []
        for length in 0...40 {
            for _ in 0..<3 { keys.append((0..<length).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) }) }
        }
        keys = Array(Set(keys))
        let table = ByteTable(keys.enumerated().map { ($0.element, $0.offset) })
        for (value, key) in keys.enumerated() {
            #expect(key.withUnsafeBufferPointer { table.lookup($0.baseAddress, $0.count) } == value)
            guard !key.isEmpty else { continue }
            let prefix = Array(key.dropLast())
            if !keys.contains(prefix) { #expect(table.lookup(prefix) == nil) }
            var changed = key
            changed[changed.count / 2] ^= 0x01
            if !keys.contains(changed) { #expect(table.lookup(changed) == nil) }
        }
    }

    /// Strings are scanned eight bytes at a time until a quote, a backslash, a control character
    /// or a non-ASCII byte: each of those, at every offset within and across the words, and at the
    /// end of the input, is found where it is.
    @Test func stringsAreScannedRightAtEveryOffset() throws {
        var template = validEvent("xumi.generation.start")
        template["model"] = .string("MARKER")
        let text = template.render()
        let marker = try #require(text.range(of: #""MARKER""#))
        func validate(_ content: [UInt8]) -> ValidationResult {
            let bytes = Array(text[..<marker.lowerBound].utf8) + [0x22] + content + [0x22] + Array(text[marker.upperBound...].utf8)
            var validator = EventValidator()
            return validator.validate(bytes)
        }
        for n in 0..<20 {
            let plain = [UInt8](repeating: UInt8(ascii: "a"), count: n)
            #expect(validate(plain).event?.value("model") == .string(String(repeating: "a", count: n)))
            let quoted = validate(plain + Array(#"\"b"#.utf8))
            #expect(quoted.event?.value("model") == .string(String(repeating: "a", count: n) + "\"b"), "escape at \(n)")
            let accented = validate(plain + [0xC3, 0xA9] + plain)
            #expect(accented.event?.value("model") == .string(String(repeating: "a", count: n) + "é" + String(repeating: "a", count: n)))
            #expect(validate(plain + [0x01] + plain).codes == ["malformed_json"], "control character at \(n)")
            #expect(validate(plain + [0xFF] + plain).codes == ["malformed_json"], "invalid UTF-8 at \(n)")
            // Unterminated at the very end of the input.
            var validator = EventValidator()
            #expect(validator.validate(Array(#"{"a":""#.utf8) + plain).codes == ["malformed_json"], "unterminated after \(n)")
        }
    }

    // MARK: every error code

    @Test func malformedJSON() {
        for text in [#"{"event_id": "#, #"{"a":1,}"#, "{'a':1}", #"{"a":01}"#, #"{"a":"\x"}"#, #"{"a":tru}"#, "", "   ", #"{"a":1} x"#, #"{"a" 1}"#] {
            let result = check(text)
            #expect(result.codes == ["malformed_json"], "\(text)")
            #expect(result.issues.first?.message.contains("at byte") == true)
        }
    }

    @Test func notAnObject() {
        for text in ["[]", "42", #""event""#, "null", "true", "[{}]"] {
            #expect(check(text).codes == ["not_an_object"], "\(text)")
        }
    }

    @Test func tooDeep() {
        let deep = #"{"metadata":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        #expect(check(deep).codes == ["too_deep"])
    }

    @Test func missingRequiredFieldsAreAllReported() {
        var event = validEvent("xumi.generation.start")
        event["task_id"] = nil
        event["model"] = nil
        event["tenant_id"] = .null
        let result = check(event)
        #expect(Set(result.codes) == ["missing"])
        #expect(Set(result.fields) == ["task_id", "model", "tenant_id"])
        #expect(result.issues.first { $0.field == "task_id" }?.message == "task_id is required for xumi.generation.start")
    }

    @Test func wrongTypes() {
        var event = validEvent("xumi.weights.load.complete")
        event["result"] = "true"
        event["size"] = .number(1.5)
        event["speed"] = "fast"
        event["model"] = 42
        event["metadata"] = []
        let result = check(event)
        #expect(result.codes == ["wrong_type", "wrong_type", "wrong_type", "wrong_type", "wrong_type"])
        #expect(Set(result.fields) == ["result", "size", "speed", "model", "metadata"])
        #expect(result.issues.first { $0.field == "result" }?.message == "result must be true or false, got a string")
    }

    @Test func tagsMustBeStrings() {
        var event = validEvent("pbac.agent.start")
        event["tags"] = ["env": "prod", "replicas": 3]
        let result = check(event)
        #expect(result.codes == ["wrong_type"])
        #expect(result.fields == ["tags.replicas"])
    }

    @Test func badUUID() {
        for bad in ["not-a-uuid", "0b6b2a3e8a554c9e9f8e3d1f0f2b9c11", "{0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c11}", "0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c1g", "0b6b2a3e-8a55-4c9e-9f8e-3d1f0f2b9c111"] {
            var event = validEvent("xumi.generation.start")
            event["task_id"] = .string(bad)
            let result = check(event)
            #expect(result.codes == ["bad_uuid"], "\(bad)")
            #expect(result.fields == ["task_id"])
        }
    }

    /// UUIDs read from text write the same text back, as a string and as bytes (Kafka's key and
    /// `tenant_id` header are the bytes), in lower case whatever the case sent.
    @Test func uuidTextRoundTrips() throws {
        for _ in 0..<200 {
            let text = UUID().uuidString
            let value = try #require(UUIDValue(text))
            #expect(value.description == text.lowercased())
            #expect(value.textBytes == Array(text.lowercased().utf8))
        }
    }

    @Test func badTimestamp() {
        for bad in ["2026-11-29", "2026-11-29T10:15:30", "2026-11-29 10:15:30Z", "2026-02-30T10:15:30Z", "2026-11-29T24:00:00Z", "2026-11-29T10:15:60Z", "2026-11-29T10:15:30+0100", "0000-01-01T00:00:00Z", "2026-11-29T10:15:30.Z", "yesterday"] {
            var event = validEvent("xumi.generation.start")
            event["timestamp"] = .string(bad)
            #expect(check(event).codes == ["bad_timestamp"], "\(bad)")
        }
        for good in ["2026-11-29T10:15:30Z", "2026-11-29t10:15:30z", "2024-02-29T00:00:00.123456789-05:30", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00"] {
            var event = validEvent("xumi.generation.start")
            event["timestamp"] = .string(good)
            #expect(check(event).isValid, "\(good)")
        }
    }

    @Test func badIP() {
        for bad in ["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "::1::", "2001:db8::g", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "localhost", ""] {
            var event = validEvent("assets.access.read")
            event["IP"] = .string(bad)
            #expect(check(event).codes == ["bad_ip"], "\(bad)")
        }
        for good in ["0.0.0.0", "192.168.1.254", "::", "::1", "2001:db8::ff00:42:8329", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8", "1::", "1:2:3:4:5:6:1.2.3.4"] {
            var event = validEvent("assets.access.read")
            event["IP"] = .string(good)
            #expect(check(event).isValid, "\(good)")
        }
    }

    @Test func outOfRange() {
        var event = validEvent("assets.access.upload")
        event["object_size"] = -1
        let result = check(event)
        #expect(result.codes == ["out_of_range"])
        #expect(check(inject("assets.access.upload", "object_size", "9223372036854775808")).codes.contains("out_of_range"))
        var speed = validEvent("assets.access.download")
        speed["avg_speed"] = .number(-0.5)
        #expect(check(speed).codes == ["out_of_range"])
        let huge = inject("assets.access.download", "avg_speed", "1e400")
        #expect(check(huge).codes.contains("out_of_range"))
    }

    @Test func badEmbeddedJSON() {
        for bad in ["not json", "[1,2]", #"{"id":"#, #""quoted""#, #"{"a":1} trailing"#] {
            var event = validEvent("pbac.agent.politics.check")
            event["user"] = .string(bad)
            #expect(check(event).codes == ["bad_embedded_json"], "\(bad)")
        }
    }

    @Test func unknownEventTypeStillChecksTheEnvelope() {
        var event = validEvent("xumi.generation.start")
        event["event_type"] = "xumi.generation.stat"
        event["event_id"] = "nope"
        let result = check(event)
        #expect(Set(result.codes) == ["unknown_event_type", "bad_uuid"])
        #expect(result.issues.first { $0.code == .unknownEventType }?.message.contains("did you mean \"xumi.generation.start\"") == true)
        if case .invalid(let invalid) = result {
            #expect(invalid.eventType == "xumi.generation.stat")
            #expect(invalid.eventID == "nope")
        }
    }

    @Test func unknownVersion() {
        var event = validEvent("xumi.generation.start")
        event["version"] = "9.9"
        #expect(check(event).codes == ["unknown_version"])
    }

    @Test func everyProblemIsReportedAtOnce() {
        var event = validEvent("kuber.deploy.start")
        event["event_id"] = "x"
        event["timestamp"] = "y"
        event["result"] = "z"
        event["hardware"] = nil
        event["tags"] = ["n": 1]
        #expect(check(event).codes.sorted() == ["bad_timestamp", "bad_uuid", "missing", "wrong_type", "wrong_type"])
    }

    // MARK: the spec's quirks

    @Test func resourceIdSpelledAsTheSpecDoesIsStoredAsResourceId() throws {
        let id = "3f0e8a4b-2c1d-4e5f-8a7b-6c5d4e3f2a1b"
        let text = validEvent("kuber.deploy.start").render().replacingFirst(#""resource_id""#, with: #""resource_Id""#)
        #expect(text.contains(#""resource_Id""#))
        var event = validEvent("kuber.deploy.start")
        event["resource_id"] = nil
        event["resource_Id"] = .string(id)
        let normalized = try #require(check(event).event)
        #expect(normalized.value("resource_id") == .uuid(UUIDValue(id)!))
        #expect(normalized.jsonString.contains(#""resource_id":"\#(id)""#))
        #expect(!normalized.jsonString.contains("resource_Id"))
        #expect(normalized.unknownFields.isEmpty)
    }

    @Test func resourceIdUnderBothSpellingsIsADuplicate() {
        var event = validEvent("kuber.deploy.start")
        event["resource_Id"] = event["resource_id"]
        let result = check(event)
        #expect(result.codes == ["duplicate_field"])
        #expect(result.issues.first?.message == "resource_Id and resource_id are the same field; send it once, as resource_id")
    }

    @Test func userAndResourceStringsBecomeObjects() throws {
        var event = validEvent("pbac.agent.politics.check")
        event["user"] = .string(#"{"id": "u-1", "roles": ["admin"], "note": "\"quoted\" \u00e9"}"#)
        event["resource"] = ["type": "gpu_pod"]
        let normalized = try #require(check(event).event)
        #expect(normalized.value("user") == .json(#"{"id": "u-1", "roles": ["admin"], "note": "\"quoted\" \u00e9"}"#))
        #expect(normalized.value("resource") == .json(#"{"type":"gpu_pod"}"#))
        #expect(normalized.jsonString.contains(#""user":{"id": "u-1""#))
        // The normalised event is itself valid, and normalising it again changes nothing.
        let again = try #require(check(normalized.jsonString).event)
        #expect(again.json == normalized.json)
    }

    @Test func unknownFieldsAreKeptVerbatimAndListed() throws {
        let base = validEvent("assets.access.read").render()
        let text = String(base.dropLast()) + #", "gpu_temp" : { "c" : 71.5 }, "region":"eu","x\u0041":1}"#
        let normalized = try #require(check(text).event)
        #expect(normalized.unknownFields == ["gpu_temp", "region", "xA"])
        #expect(normalized.jsonString.hasSuffix(#""gpu_temp":{ "c" : 71.5 },"region":"eu","x\u0041":1}"#))
    }

    @Test func duplicateKeysAreRefused() {
        let base = validEvent("assets.access.read").render()
        let twice = String(base.dropLast()) + #","result":false}"#
        #expect(check(twice).codes == ["duplicate_field"])
        let unknownTwice = String(base.dropLast()) + #","zz":1,"zz":2}"#
        #expect(check(unknownTwice).codes == ["duplicate_field"])
        let escapedTwice = String(base.dropLast()) + #","\u0072esult":false}"#
        #expect(check(escapedTwice).codes == ["duplicate_field"])
    }

    @Test func nullForOptionalIsAbsentAndKept() throws {
        var event = validEvent("xumi.generation.start")
        event["prompt"] = .null
        let normalized = try #require(check(event).event)
        #expect(normalized.value("prompt") == nil)
        #expect(normalized.jsonString.contains(#""prompt":null"#))
    }

    @Test func integersAreExactAndAcceptJSONNumberForms() throws {
        let cases: [(String, Int64)] = [
            ("9223372036854775807", Int64.max), ("0", 0), ("1.0", 1), ("1e3", 1000), ("1.5e1", 15), ("12300e-2", 123),
            ("9007199254740993", 9_007_199_254_740_993), ("0.0e5", 0),
        ]
        for (text, expected) in cases {
            let json = inject("xumi.weights.load.start", "storage_size", text)
            let normalized = try #require(check(json).event, "\(text)")
            #expect(normalized.value("storage_size") == .integer(expected), "\(text)")
            #expect(normalized.jsonString.contains(#""storage_size":\#(text)"#), "kept as sent")
        }
        for (text, code) in [("1.5", "wrong_type"), ("1e-1", "wrong_type"), ("92233720368547758070", "out_of_range"), ("1e19", "out_of_range"), ("1e999999999999", "out_of_range"), ("-1", "out_of_range")] {
            let json = inject("xumi.weights.load.start", "storage_size", text)
            #expect(check(json).codes == [code], "\(text)")
        }
    }

    @Test func escapedStringsAreDecodedForChecksAndKeptAsSent() throws {
        var event = validEvent("xumi.generation.start")
        event["task_id"] = nil
        event["prompt"] = nil
        let json = String(event.render().dropLast()) + #","task_id":"\u0037d9f2c1e-4b3a-4e5d-9c8b-1a2b3c4d5e6f","prompt":"line\nbreak \ud83d\ude80"}"#
        let normalized = try #require(check(json).event)
        #expect(normalized.value("task_id") == .uuid(UUIDValue("7d9f2c1e-4b3a-4e5d-9c8b-1a2b3c4d5e6f")!))
        #expect(normalized.value("prompt") == .string("line\nbreak 🚀"))
    }

    // MARK: bad input never crashes or hangs

    @Test func invalidUTF8() {
        let bytes: [[UInt8]] = [
            Array(#"{"source":""#.utf8) + [0xFF] + Array(#""}"#.utf8),
            Array(#"{"source":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8),  // overlong
            Array(#"{"source":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8),  // surrogate
            Array(#"{"source":""#.utf8) + [0xE2, 0x82] + Array(#""}"#.utf8),  // truncated
            Array(#"{"source":""#.utf8) + [0xF4, 0x90, 0x80, 0x80] + Array(#""}"#.utf8),  // > U+10FFFF
        ]
        for b in bytes {
            var validator = EventValidator()
            #expect(validator.validate(b).codes == ["malformed_json"])
        }
        #expect(check(#"{"source":"\ud800"}"#).codes == ["malformed_json"], "lone surrogate escape")
    }

    @Test func nulBytes() {
        var validator = EventValidator()
        let raw = Array(#"{"source":"a"#.utf8) + [0] + Array(#"b"}"#.utf8)
        #expect(validator.validate(raw).codes == ["malformed_json"], "a raw NUL is a control character")
        var event = validEvent("pbac.agent.start")
        event["source"] = .string("a\u{0}b")
        let escaped = validator.validate(event.render())
        #expect(escaped.isValid, "an escaped NUL is a valid string")
        #expect(escaped.event?.value("source") == .string("a\u{0}b"))
    }

    @Test func hundredThousandDeepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(check(deep).codes == ["too_deep"])
        let deepObject = #"{"metadata":"# + String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_001)
        #expect(check(deepObject).codes == ["too_deep"])
        let unclosed = String(repeating: "{\"a\":[", count: 100_000)
        #expect(check(unclosed).codes == ["too_deep"])
    }

    @Test func tenMegabyteStrings() throws {
        var event = validEvent("xumi.generation.start")
        let prompt = String(repeating: "a photo of a cat ", count: 10 * 1024 * 1024 / 17)
        event["prompt"] = .string(prompt)
        // Over the default limit for a string: refused, naming the field and the limit.
        let refused = check(event)
        #expect(refused.codes == ["too_large"] && refused.fields == ["prompt"])
        #expect(refused.issues.first?.message.contains("262144") == true)
        // Under a raised limit the whole string is kept, byte for byte.
        var roomy = EventValidator(limits: ValidationLimits(maxStringBytes: 16 << 20))
        let normalized = try #require(roomy.validate(event.render()).event)
        #expect(normalized.value("prompt") == .string(prompt))
        let unterminated = #"{"prompt":""# + String(repeating: "x", count: 10 * 1024 * 1024)
        #expect(check(unterminated).codes == ["malformed_json"])
    }

    @Test func hugeNumbers() {
        let digits = String(repeating: "9", count: 100_000)
        for text in [#"{"a":\#(digits)}"#, #"{"a":1e\#(digits)}"#, #"{"a":-\#(digits).\#(digits)e-\#(digits)}"#] {
            #expect(!check(text).isValid)
            #expect(!check(text).codes.contains("malformed_json"), "valid JSON numbers")
        }
        let event = inject("xumi.weights.load.start", "storage_size", digits)
        #expect(check(event).codes == ["out_of_range"])
    }

    @Test func truncatedAtEveryByteIsMalformedNeverValid() {
        let text = Array(validEvent("kuber.deploy.start.complete").render().utf8)
        var validator = EventValidator()
        for end in 0..<(text.count - 1) {
            let result = validator.validate(text[0..<end])
            #expect(!result.isValid)
            #expect(result.codes == ["malformed_json"], "truncated at \(end)")
        }
    }
}

/// A valid event of `eventType` with `field` set to the raw JSON text `value`, as sent.
private func inject(_ eventType: String, _ field: String, _ value: String) -> String {
    var event = validEvent(eventType)
    event[field] = nil
    return String(event.render().dropLast()) + ",\"\(field)\":\(value)}"
}

private func raw(_ s: String) -> UnsafeRawBufferPointer {
    let bytes = Array(s.utf8)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    buffer.copyBytes(from: bytes)
    return UnsafeRawBufferPointer(buffer)  // leaked deliberately: test-only, tiny
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}

@Suite struct ErrorCodeCoverageTests {
    /// One input per code; a code added without an input here fails the test.
    @Test func everyCodeIsProducedAndNamed() {
        // forbidden_tenant is produced by the collector for API keys: see the security tests.
        let producedElsewhere: Set<ValidationIssue.Code> = [.forbiddenTenant]
        let event = validEvent("assets.access.read")
        func with(_ field: String, _ value: JSONValue) -> String {
            var copy = event
            copy[field] = value
            return copy.render()
        }
        let inputs: [ValidationIssue.Code: String] = [
            .malformedJSON: "{", .tooDeep: String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
            .notAnObject: "[]", .duplicateField: String(event.render().dropLast()) + #","result":true}"#,
            .missing: with("resource_url", .null), .wrongType: with("result", "yes"), .badUUID: with("event_id", "1"),
            .badTimestamp: with("timestamp", "now"), .badIP: with("IP", "1.2.3"), .outOfRange: with("object_size", -5),
            .badEmbeddedJSON: {
                var check = validEvent("pbac.agent.politics.check")
                check["user"] = "alice"
                return check.render()
            }(),
            .tooLarge: with("resource_url", .string(String(repeating: "x", count: 300_000))),
            .unknownEventType: with("event_type", "assets.access.reed"), .unknownVersion: with("version", "0.9"),
        ]
        for code in ValidationIssue.Code.all where !producedElsewhere.contains(code) {
            guard let input = inputs[code] else {
                Issue.record("no input produces \(code)")
                continue
            }
            #expect(check(input).issues.map(\.code) == [code], "\(code)")
            #expect(!Catalog.codeMeaning(code).isEmpty)
        }
    }
}
