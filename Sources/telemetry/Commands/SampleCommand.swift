import ArgumentParser
import TelemetryCatalog

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Print realistic, valid sample events as NDJSON.",
        discussion: """
            Cycles through every event type of the catalog (or only EVENT_TYPE), with realistic \
            values; the same --seed gives the same events. Useful to try `validate`, `send` or a \
            collector without a platform.

            Examples:
              telemetry sample --count 19 > examples/events.ndjson
              telemetry sample xumi.generation.complete --count 3
            """
    )

    @Argument(help: "Only this event type.")
    var eventType: String?

    @Option(help: "Number of events to print.")
    var count: Int = 19

    @Option(help: "Seed of the pseudo-random values.")
    var seed: UInt64 = 1

    func run() throws {
        var sampler = EventSampler(seed: seed)
        let catalog = sampler.catalog
        let definitions: [EventDefinition]
        if let eventType {
            guard let latest = catalog.latest(eventType) else {
                CommandFailure.exit("unknown event type \"\(eventType)\"; run `telemetry catalog` to list them")
            }
            definitions = [latest]
        } else {
            definitions = catalog.events
        }
        var output = OutputBuffer()
        for i in 0..<max(0, count) {
            output.write(sampler.sample(definitions[i % definitions.count]).render() + "\n")
        }
        output.flush()
    }
}
