import ArgumentParser
import Foundation
import Logging
import TelemetryClickHouse
import TelemetryStore

/// The `--data DIR` and `--store URL` options of the commands that open a store (`serve`,
/// `consume`), and the store they name.
struct StoreLocation: ParsableArguments {
    @Option(help: "Data folder (keys, privacy key; and the store, DIR/telemetry.sqlite, unless --store says otherwise).")
    var data: String = "./telemetry-data"

    @Option(
        help: ArgumentHelp(
            "The store: sqlite:PATH (default DIR/telemetry.sqlite) or clickhouse:http://HOST:PORT/DATABASE.",
            discussion: "The ClickHouse database is created when missing, with its tables."))
    var store: String?

    /// Which store, read from the options.
    enum Choice {
        case sqlite(path: String)
        case clickhouse(ClickHouseLocation)
    }

    func choice() throws -> Choice {
        guard let store else { return .sqlite(path: (data as NSString).appendingPathComponent("telemetry.sqlite")) }
        if store.hasPrefix("sqlite:") { return .sqlite(path: String(store.dropFirst("sqlite:".count))) }
        if store.hasPrefix("clickhouse:") {
            do {
                return .clickhouse(try ClickHouseLocation(store))
            } catch {
                throw ValidationError("--store: \(error)")
            }
        }
        throw ValidationError("--store must be sqlite:PATH or clickhouse:http://HOST:PORT/DATABASE; got \(store)")
    }

    /// A store, opened.
    struct Opened {
        let store: any EventStore
        /// `sqlite:PATH` or `clickhouse:http://…`, for messages.
        let description: String
        /// ClickHouse wants few large INSERTs (each makes new parts); SQLite commits are cheap.
        let isClickHouse: Bool
        let close: @Sendable () -> Void
    }

    /// Opens the store: SQLite with `sqlite` (its path filled in), or ClickHouse with the stuck timeouts
    /// of `sqlite` (the only setting the two share). Exits with a message when it cannot.
    func open(sqlite: SQLiteStoreConfiguration, logger: Logger) async -> Opened {
        do {
            switch try choice() {
            case .sqlite(let path):
                var configuration = sqlite
                configuration.path = path
                let store = try SQLiteStore(configuration: configuration, logger: logger)
                return Opened(store: store, description: "sqlite:\(path)", isClickHouse: false) { try? store.close() }
            case .clickhouse(let location):
                var configuration = ClickHouseStoreConfiguration(location: location)
                configuration.stuckAfterSeconds = sqlite.stuckAfterSeconds
                let store = try await ClickHouseStore(configuration: configuration, logger: logger)
                return Opened(store: store, description: location.description, isClickHouse: true) { store.close() }
            }
        } catch {
            CommandFailure.exit("\(error)")
        }
    }
}
