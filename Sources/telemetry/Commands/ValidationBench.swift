import ArgumentParser
import Foundation
import TelemetryCatalog
import TelemetryPipeline

struct ValidationBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validation",
        abstract: "Validation throughput on one core, against Foundation's JSONSerialization in the same run.",
        discussion: """
            Generates realistic NDJSON events of every type (EventSampler), then times, in alternating \
            rounds on one thread: (a) the baseline, each line through JSONSerialization.jsonObject \
            alone (parse only, no checks); (b) full validation: parse, every catalog check and the \
            normalised event; (c) validation and then `serve`'s default privacy policy (prompts \
            hashed, addresses cut to their network), as the collector does to every event. Reports \
            the best round of each, events/s and MB/s, and the ratios b/a and c/a.
            """
    )

    @Option(help: "Number of distinct events to generate.")
    var events: Int = 100_000

    @Option(help: "Rounds of each measurement; the best round is reported.")
    var rounds: Int = 5

    @Option(help: "Seed of the generated events.")
    var seed: UInt64 = 1

    func validate() throws {
        guard events > 0, rounds > 0 else { throw ValidationError("--events and --rounds must be positive") }
    }

    func run() throws {
        var sampler = EventSampler(seed: seed)
        let ndjson = sampler.ndjson(count: events)
        var lines: [Range<Int>] = []
        var start = 0
        for (i, b) in ndjson.enumerated() where b == UInt8(ascii: "\n") {
            lines.append(start..<i)
            start = i + 1
        }
        let payloadBytes = ndjson.count - lines.count
        let datas = lines.map { Data(ndjson[$0]) }
        print("events: \(lines.count), average \(payloadBytes / lines.count) bytes, \(formatBytes(payloadBytes)) in all; \(rounds) rounds, best reported")

        var validator = EventValidator()
        var invalid = 0
        ndjson.withUnsafeBytes { raw in
            for range in lines where !validator.validate(UnsafeRawBufferPointer(rebasing: raw[range])).isValid {
                invalid += 1
            }
        }
        guard invalid == 0 else { CommandFailure.exit("the generated events should all be valid; \(invalid) were not") }

        let policy = try PrivacyPolicy(rules: PrivacyPolicy.defaultRules, key: (0..<32).map { _ in UInt8.random(in: 0...255) })
        var baselineBest = Double.infinity
        var oursBest = Double.infinity
        var maskedBest = Double.infinity
        for _ in 0..<rounds {
            var started = MonotonicClock.now()
            var objects = 0
            for data in datas {
                if (try? JSONSerialization.jsonObject(with: data)) != nil { objects += 1 }
            }
            baselineBest = min(baselineBest, Double(MonotonicClock.now() - started) / 1e9)
            precondition(objects == lines.count)

            started = MonotonicClock.now()
            var valid = 0
            ndjson.withUnsafeBytes { raw in
                for range in lines {
                    if case .valid = validator.validate(UnsafeRawBufferPointer(rebasing: raw[range])) { valid += 1 }
                }
            }
            oursBest = min(oursBest, Double(MonotonicClock.now() - started) / 1e9)
            precondition(valid == lines.count)

            started = MonotonicClock.now()
            var masked = 0
            ndjson.withUnsafeBytes { raw in
                for range in lines {
                    if case .valid(let event) = validator.validate(UnsafeRawBufferPointer(rebasing: raw[range])) {
                        masked += policy.apply(to: event).json.count > 0 ? 1 : 0
                    }
                }
            }
            maskedBest = min(maskedBest, Double(MonotonicClock.now() - started) / 1e9)
            precondition(masked == lines.count)
        }

        func row(_ name: String, _ seconds: Double) -> String {
            let eps = Double(lines.count) / seconds
            let mbps = Double(payloadBytes) / seconds / 1e6
            return name.padding(to: 44) + String(format: "%10.0f events/s  %7.1f MB/s", eps, mbps)
        }
        print(row("baseline: JSONSerialization (parse only)", baselineBest))
        print(row("telemetry: full validation + normalisation", oursBest))
        print(row("telemetry: validation + privacy policy", maskedBest))
        print(String(format: "ratio: %.2fx the baseline; %.2fx with the privacy policy", baselineBest / oursBest, baselineBest / maskedBest))
    }
}
