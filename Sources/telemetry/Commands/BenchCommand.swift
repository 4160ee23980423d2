import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the system's hot paths against baselines measured in the same run.",
        subcommands: [ValidationBench.self, IngestBench.self, StoreBench.self, QueryBench.self, EmitterBench.self, KafkaBench.self, ClickHouseBench.self]
    )
}
