import ArgumentParser
import Foundation
import TelemetryClient

/// The filters of `GET /v1/events` and `GET /v1/stream`, as options.
struct EventFilterOptions: ParsableArguments {
    @Option(help: "Only this event type, e.g. xumi.generation.start.")
    var eventType: String?

    @Option(help: "Only this topic, e.g. xumi_task.")
    var topic: String?

    @Option(help: "Only this tenant.")
    var tenant: String?

    @Option(help: "Only events from this emitting service.")
    var source: String?

    @Option(help: "Events at or after this time (ISO 8601 with a zone, or a duration ago such as 1h).")
    var since: TimeArgument?

    @Option(help: "Events before this time (ISO 8601 with a zone, or a duration ago).")
    var until: TimeArgument?

    @Option(name: .customLong("where"), help: ArgumentHelp("A catalog field filter, FIELD=VALUE (repeatable), e.g. --where model=sdxl-1.0.", valueName: "FIELD=VALUE"))
    var filters: [String] = []

    func validate() throws {
        for filter in filters where !filter.contains("=") { throw ValidationError("--where takes FIELD=VALUE, got \(filter)") }
    }

    var queryItems: [(String, String)] {
        var items: [(String, String)] = []
        if let eventType { items.append(("event_type", eventType)) }
        if let topic { items.append(("topic", topic)) }
        if let tenant { items.append(("tenant_id", tenant)) }
        if let source { items.append(("source", source)) }
        if let since { items.append(("since", since.iso)) }
        if let until { items.append(("until", until.iso)) }
        for filter in filters {
            let parts = filter.split(separator: "=", maxSplits: 1)
            items.append((String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        return items
    }

    static func queryString(_ items: [(String, String)]) -> String {
        items.isEmpty ? "" : "?" + items.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "List stored events or operations from a collector, newest first.",
        discussion: """
            `telemetry query [events] …` lists events (the default); `telemetry query ops …` lists \
            operations. See `telemetry query events --help` and `telemetry query ops --help`.
            """,
        subcommands: [QueryEventsCommand.self, QueryOperationsCommand.self],
        defaultSubcommand: QueryEventsCommand.self
    )
}

struct QueryEventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "List stored events from a collector, newest first.",
        discussion: """
            Takes the filters of GET /v1/events. Prints a table (time, event type, tenant, source, id) \
            or, with --format json, one stored event a line (NDJSON).

            Examples:
              telemetry query --event-type xumi.generation.complete --where result=false \\
                  --limit 20
              telemetry query --tenant 5c1e7a52-0d6a-4c3e-8b59-1f2d3e4a5b6c \\
                  --since 2026-11-29T00:00:00Z --all --format json
              telemetry query --event-type xumi.generation.start --since 15m
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: "The collector.")
    var url: CollectorURL = CollectorURL(argument: "http://127.0.0.1:8080")!

    @OptionGroup var filters: EventFilterOptions

    @Option(help: "Events per page (1-1000).")
    var limit: Int = 50

    @Flag(help: "Follow the cursor through every page.")
    var all = false

    @Option(help: "Output: table or json.")
    var format: Format = .table

    func run() throws {
        let connection = url.connection()
        var cursor: String? = nil
        var printedHeader = false
        repeat {
            var items = filters.queryItems + [("limit", String(limit))]
            if let cursor { items.append(("cursor", cursor)) }
            let response: HTTPResponse
            do {
                response = try connection.request("GET", "/v1/events" + EventFilterOptions.queryString(items))
            } catch {
                CommandFailure.exit("\(error)")
            }
            guard response.status == 200,
                let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                let events = object["events"] as? [[String: Any]]
            else { CommandFailure.exit("the collector answered \(response.status): \(response.text.prefix(300))") }
            for event in events {
                if format == .json {
                    let data = try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    if !printedHeader {
                        print(Self.row(["TIMESTAMP", "EVENT TYPE", "TENANT", "SOURCE", "EVENT ID"]))
                        printedHeader = true
                    }
                    print(Self.row([
                        event["timestamp"] as? String ?? "", event["event_type"] as? String ?? "", event["tenant_id"] as? String ?? "",
                        event["source"] as? String ?? "", event["event_id"] as? String ?? "",
                    ]))
                }
            }
            cursor = object["next_cursor"] as? String
        } while all && cursor != nil
        if format == .table && !printedHeader { print("no events match") }
    }

    static func row(_ cells: [String]) -> String {
        let widths = [30, 28, 36, 16, 36]
        return zip(cells, widths).map { $0.padding(to: $1) }.joined(separator: "  ")
    }
}

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow new events as they arrive (GET /v1/stream).",
        discussion: """
            Prints each new event matching the filters as one JSON line, until interrupted. \
            Reconnects after a dropped connection, resuming after the last event it printed.

            Example:
              telemetry tail --event-type pbac.agent.politics.check --where result=false
            """
    )

    @Option(help: "The collector.")
    var url: CollectorURL = CollectorURL(argument: "http://127.0.0.1:8080")!

    @OptionGroup var filters: EventFilterOptions

    @Option(help: "Stop after this many events (default: never).")
    var count: Int?

    func run() throws {
        var lastID: String? = nil
        var printed = 0
        var failures = 0
        while count.map({ printed < $0 }) ?? true {
            let connection = url.connection()
            var pending = ""
            var headers: [(String, String)] = [("Accept", "text/event-stream")]
            if let lastID { headers.append(("Last-Event-ID", lastID)) }
            do {
                _ = try connection.stream(
                    "GET", "/v1/stream" + EventFilterOptions.queryString(filters.queryItems), headers: headers,
                    onHead: { status in
                        guard status == 200 else { throw CommandFailure("the collector answered \(status)") }
                    },
                    onChunk: { chunk in
                        failures = 0
                        pending += String(decoding: chunk, as: UTF8.self)
                        while let end = pending.range(of: "\n\n") {
                            let message = pending[..<end.lowerBound]
                            pending = String(pending[end.upperBound...])
                            var data: String? = nil
                            for line in message.split(separator: "\n") {
                                if line.hasPrefix("id: ") { lastID = String(line.dropFirst(4)) }
                                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
                            }
                            if let data {
                                print(data)
                                fflush(nil)
                                printed += 1
                                if let count, printed >= count { return false }
                            }
                        }
                        return true
                    })
            } catch let error as CommandFailure {
                CommandFailure.exit(error.message)
            } catch {
                failures += 1
                if failures > 5 { CommandFailure.exit("lost the collector: \(error)") }
                writeStandardError("telemetry: stream interrupted (\(error)); reconnecting\n")
                sleep(1)
            }
        }
    }
}
