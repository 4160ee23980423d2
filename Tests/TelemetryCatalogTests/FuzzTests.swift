import Foundation
import TelemetryCatalog
import Testing

/// A seeded mutation fuzzer for the validator, run for a fixed number of iterations in every test
/// run: valid events from the sampler are mutated (bytes flipped, inserted, deleted, duplicated,
/// spliced from other events, nested, truncated) and validated.
///
/// Whatever the input, the validator must return: valid, with a normalised JSON that is itself
/// valid JSON and validates again to the same event; or invalid, with at least one issue, each with
/// a known code and a message. A crash stops the test process: its seed and iteration are printed
/// first (`FUZZ_SEED`, `FUZZ_ITERATIONS` replay it), and the input goes into `regressions` below.
@Suite struct FuzzTests {
    /// Inputs that once broke something, checked on every run.
    static let regressions: [[UInt8]] = [
        Array(#"{"event_type":"xumi.generation.start","prompt":"\ud800"}"#.utf8),  // a lone surrogate escape
        Array(#"{"a":1e999999999999999999}"#.utf8),  // an exponent past Int
        Array(#"{"timestamp":"2026-02-29T00:00:00Z"}"#.utf8),  // a day that does not exist
        Array("{\"\u{0}\":1}".utf8),  // a raw NUL in a name
        [0x7B, 0x22, 0xC3],  // truncated inside a UTF-8 sequence
    ]

    static let interesting: [[UInt8]] = [
        Array("\"".utf8), Array("\\".utf8), Array("\\u".utf8), Array("\\ud83d".utf8), Array("{".utf8), Array("}".utf8), Array("[".utf8),
        Array("]".utf8), Array(",".utf8), Array(":".utf8), Array("null".utf8), Array("-0".utf8), Array("1e309".utf8),
        Array("99999999999999999999".utf8), [0], [0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
        Array("\"event_type\":".utf8), Array("\"resource_Id\":".utf8), Array("\"user\":\"{}\"".utf8), Array(" \t\r\n".utf8),
        Array("2026-13-01T00:00:00Z".utf8), Array("::ffff:1.2.3.4".utf8),
    ]

    @Test func theValidatorSurvivesMutatedEvents() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED_F022
        let iterations = environment["FUZZ_ITERATIONS"].flatMap(Int.init) ?? 150_000
        var random = SplitMix64(seed: seed)
        var sampler = EventSampler(seed: seed)
        let corpus = (0..<200).map { _ in Array(sampler.sample().render().utf8) }
        var validator = EventValidator()
        var outcomes = (valid: 0, invalid: 0)
        for input in Self.regressions { check(input, &validator, &outcomes, label: "regression") }
        for iteration in 0..<iterations {
            var input = corpus[random.below(corpus.count)]
            for _ in 0...random.below(4) { mutate(&input, &random, corpus) }
            check(input, &validator, &outcomes, label: "seed \(seed) iteration \(iteration)")
        }
        // Both sides are reached: the mutations are neither all harmless nor all fatal.
        #expect(outcomes.valid > iterations / 50 && outcomes.invalid > iterations / 2, "\(outcomes)")
    }

    func check(_ input: [UInt8], _ validator: inout EventValidator, _ outcomes: inout (valid: Int, invalid: Int), label: String) {
        let result = input.withUnsafeBytes { validator.validate($0) }
        switch result {
        case .valid(let event):
            outcomes.valid += 1
            guard (try? JSONSerialization.jsonObject(with: Data(event.json))) is [String: Any] else {
                Issue.record("\(label): the normalised JSON does not parse: \(event.jsonString.prefix(200))")
                return
            }
            guard case .valid(let again) = event.json.withUnsafeBytes({ validator.validate($0) }) else {
                Issue.record("\(label): the normalised event does not validate again: \(event.jsonString.prefix(200))")
                return
            }
            #expect(again.eventID == event.eventID && again.json == event.json, "\(label): normalising twice changed the event")
        case .invalid(let invalid):
            outcomes.invalid += 1
            #expect(!invalid.issues.isEmpty, "\(label)")
            for issue in invalid.issues where !ValidationIssue.Code.all.contains(issue.code) || issue.message.isEmpty {
                Issue.record("\(label): issue \(issue) has an unknown code or no message")
            }
        }
    }

    func mutate(_ input: inout [UInt8], _ random: inout SplitMix64, _ corpus: [[UInt8]]) {
        let position = input.isEmpty ? 0 : random.below(input.count + 1)
        switch random.below(8) {
        case 0:  // flip a bit
            if !input.isEmpty { input[min(position, input.count - 1)] ^= UInt8(1 << random.below(8)) }
        case 1:  // insert something interesting
            input.insert(contentsOf: Self.interesting[random.below(Self.interesting.count)], at: position)
        case 2:  // delete a run
            let end = min(input.count, position + 1 + random.below(16))
            input.removeSubrange(position..<end)
        case 3:  // duplicate a run
            let end = min(input.count, position + 1 + random.below(32))
            input.insert(contentsOf: Array(input[position..<end]), at: position)
        case 4:  // splice in part of another event
            let other = corpus[random.below(corpus.count)]
            let start = random.below(other.count)
            input.insert(contentsOf: other[start..<min(other.count, start + 1 + random.below(64))], at: position)
        case 5:  // truncate
            input.removeSubrange(position...)
        case 6:  // nest deeply
            let depth = 1 + random.below(100)
            input.insert(contentsOf: Array(String(repeating: #"{"a":["#, count: depth).utf8), at: position)
        default:  // replace a byte with a random one
            if !input.isEmpty { input[min(position, input.count - 1)] = UInt8(truncatingIfNeeded: random.next()) }
        }
    }
}
