import ArgumentParser
import Foundation

/// The `--data DIR` and `--store URL` options of the commands that open a store (`serve`,
/// `consume`), and the file they name.
struct StoreLocation: ParsableArguments {
    @Option(help: "Data folder; the store is DIR/telemetry.sqlite unless --store says otherwise.")
    var data: String = "./telemetry-data"

    @Option(help: "The store: sqlite:PATH (default DIR/telemetry.sqlite).")
    var store: String?

    /// The SQLite file.
    func sqlitePath() throws -> String {
        guard let store else { return (data as NSString).appendingPathComponent("telemetry.sqlite") }
        if store.hasPrefix("sqlite:") { return String(store.dropFirst("sqlite:".count)) }
        if store.hasPrefix("clickhouse:") {
            throw ValidationError("the ClickHouse store is not in this release yet; use sqlite:PATH")
        }
        throw ValidationError("--store must be sqlite:PATH")
    }
}
