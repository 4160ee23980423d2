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
              telemetry sample --count 20000 --linked > /tmp/linked.ndjson
              telemetry send /tmp/linked.ndjson   (the events pair into operations)
            """
    )

    @Argument(help: "Only this event type.")
    var eventType: String?

    @Option(help: "Number of events to print.")
    var count: Int = 19

    @Flag(help: "Give completions the keys and tenant of earlier starts (a few thousand events before), so that the events pair into operations.")
    var linked = false

    @Option(help: "Seed of the pseudo-random values.")
    var seed: UInt64 = 1

    func run() throws {
        var sampler = EventSampler(seed: seed)
        sampler.linksLifecycles = linked
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
