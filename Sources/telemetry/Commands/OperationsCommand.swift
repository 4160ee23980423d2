import ArgumentParser
import Foundation
import TelemetryCatalog
import TelemetryClient

/// A point in time on the command line: an ISO 8601 timestamp, or a duration meaning that long ago.
struct TimeArgument: ExpressibleByArgument {
    var iso: String

    init?(argument: String) {
        if ISO8601Timestamp.microseconds(argument) != nil {
            iso = argument
        } else if let seconds = DurationText.seconds(argument) {
            let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
            iso = ISO8601Timestamp.string(fromMicroseconds: now - seconds * 1_000_000)
        } else {
            return nil
        }
    }
}

extension CollectorURL {
    /// GETs `path` and parses the JSON object answered; exits with the collector's message otherwise.
    func getObject(_ path: String) -> [String: Any] {
        let response: HTTPResponse
        do {
            response = try connection().request("GET", path)
        } catch {
            CommandFailure.exit("\(error)")
        }
        let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        guard response.status == 200, let object else {
            let message = ((object?["error"] as? [String: Any])?["message"] as? String) ?? response.text
            CommandFailure.exit("the collector answered \(response.status): \(message.prefix(500))")
        }
        return object
    }
}

/// `key=value` options, split.
func keyValuePairs(_ list: [String], option: String) throws -> [(String, String)] {
    try list.map { item in
        let parts = item.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("\(option) takes NAME=VALUE, got \(item)") }
        return (String(parts[0]), String(parts[1]))
    }
}

/// Renders a JSON value of an answer as a table cell.
func cell(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: return ""
    case let number as NSNumber:
        if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
        let double = number.doubleValue
        if double == double.rounded(), abs(double) < 1e15 { return String(Int64(double)) }
        return String(format: "%.3f", double)
    case let text as String: return text
    default: return "\(value!)"
    }
}

/// Prints rows as left-aligned columns, each as wide as its widest cell.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, value) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], value.count) } }
    for row in [header] + rows {
        print(zip(row, widths).map { $0.padding(to: $1) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

struct QueryOperationsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "List operations (paired start and completion events), newest first.",
        discussion: """
            Takes the filters of GET /v1/operations. Kinds: weights_load, generation, pod_deploy, \
            pod_free, pod_lifetime. Statuses: running, succeeded, failed, stuck (running past the \
            kind's timeout). Times are ISO 8601 timestamps or durations ago (24h, 7d).

            Examples:
              telemetry query ops --kind generation --status failed --since 24h
              telemetry query ops --status stuck
              telemetry query ops --kind weights_load --where storage_type=ceph \\
                  --format json
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: "The collector.")
    var url: CollectorURL = CollectorURL(argument: "http://127.0.0.1:8080")!

    @Option(help: "Only this kind (weights_load, generation, pod_deploy, pod_free, pod_lifetime).")
    var kind: String?

    @Option(help: "Only this status (running, succeeded, failed, stuck).")
    var status: String?

    @Option(help: "Only this tenant.")
    var tenant: String?

    @Option(help: "Only operations with this key (task_id, resource_id, …).")
    var key: String?

    @Option(help: "Operations started at or after this time (ISO 8601, or a duration ago such as 24h).")
    var since: TimeArgument?

    @Option(help: "Operations started before this time (ISO 8601, or a duration ago).")
    var until: TimeArgument?

    @Option(name: .customLong("where"), help: ArgumentHelp("An attribute filter, NAME=VALUE (repeatable), e.g. --where model=sdxl-1.0.", valueName: "NAME=VALUE"))
    var filters: [String] = []

    @Option(help: "Operations per page (1-1000).")
    var limit: Int = 50

    @Flag(help: "Follow the cursor through every page.")
    var all = false

    @Option(help: "Output: table or json (one operation a line).")
    var format: Format = .table

    func validate() throws { _ = try keyValuePairs(filters, option: "--where") }

    func run() throws {
        var items: [(String, String)] = []
        if let kind { items.append(("kind", kind)) }
        if let status { items.append(("status", status)) }
        if let tenant { items.append(("tenant_id", tenant)) }
        if let key { items.append(("key", key)) }
        if let since { items.append(("since", since.iso)) }
        if let until { items.append(("until", until.iso)) }
        items += try keyValuePairs(filters, option: "--where")
        items.append(("limit", String(limit)))
        var cursor: String? = nil
        var rows: [[String]] = []
        repeat {
            let page = url.getObject("/v1/operations" + EventFilterOptions.queryString(items + (cursor.map { [("cursor", $0)] } ?? [])))
            for operation in page["operations"] as? [[String: Any]] ?? [] {
                if format == .json {
                    let data = try JSONSerialization.data(withJSONObject: operation, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                    continue
                }
                let attributes = operation["attributes"] as? [String: Any] ?? [:]
                let detail = ["model", "hardware", "storage_type", "detail"].compactMap { name in
                    attributes[name].map { "\(name)=\(cell($0))" }
                }
                rows.append([
                    cell(operation["started_at"] ?? operation["completed_at"]), cell(operation["kind"]), cell(operation["status"]),
                    operation["duration_ms"].map { cell($0) + (($0 is NSNull) ? "" : " ms") } ?? "", cell(operation["key"]),
                    detail.joined(separator: " "),
                ])
            }
            cursor = page["next_cursor"] as? String
        } while all && cursor != nil
        if format == .table {
            if rows.isEmpty { print("no operations match") } else { printTable(["STARTED", "KIND", "STATUS", "DURATION", "KEY", "ATTRIBUTES"], rows) }
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Aggregate events or operations: counts, rates, sums, averages, percentiles (GET /v1/stats).",
        discussion: """
            Give --event-type or --operation, or neither for events of every type (grouped by \
            envelope fields or topic). count counts rows; sum, avg, min, max, last (the \
            newest value) and pN (p50, p95, p99, …; exact) read a numeric --field; rate is the \
            share of true of a bool field. For operations --field defaults to duration_ms \
            (duration_s and duration_h are the same in seconds and hours), and success is a bool \
            field. Times are \
            ISO 8601 timestamps or durations ago (24h, 7d). docs/operations.md has the questions \
            this answers.

            Examples:
              telemetry stats --operation generation --agg count,p50,p99 \\
                  --group-by model --since 24h
              telemetry stats --operation generation --field success --agg rate \\
                  --group-by model
              telemetry stats --operation weights_load --field speed --agg avg,p95 \\
                  --group-by storage_type
              telemetry stats --event-type pbac.agent.politics.check --field eval_ms \\
                  --agg p99 --interval 1h --since 24h
              telemetry stats --group-by topic --interval 1m --since 1h
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: "The collector.")
    var url: CollectorURL = CollectorURL(argument: "http://127.0.0.1:8080")!

    @Option(help: "Aggregate events of this type.")
    var eventType: String?

    @Option(help: "Aggregate operations of this kind.")
    var operation: String?

    @Option(help: "The field aggregated (operations: default duration_ms).")
    var field: String?

    @Option(help: "Comma-separated aggregates: count, sum, avg, min, max, last, rate, p50, p95, p99, any pN.")
    var agg: String = "count"

    @Option(help: "Comma-separated fields to group by.")
    var groupBy: String?

    @Option(help: "Rows at or after this time (ISO 8601, or a duration ago such as 24h).")
    var since: TimeArgument?

    @Option(help: "Rows before this time.")
    var until: TimeArgument?

    @Option(help: "Time buckets of this width: a number and s, m, h or d, e.g. 1h.")
    var interval: String?

    @Option(help: "Only this tenant.")
    var tenant: String?

    @Option(name: .customLong("where"), help: ArgumentHelp("A filter, NAME=VALUE (repeatable).", valueName: "NAME=VALUE"))
    var filters: [String] = []

    @Option(help: "Output: table or json (the API's answer).")
    var format: Format = .table

    func validate() throws {
        guard eventType == nil || operation == nil else { throw ValidationError("give at most one of --event-type and --operation") }
        if let interval, DurationText.seconds(interval) == nil { throw ValidationError("--interval takes a number and s, m, h or d, e.g. 1h") }
        _ = try keyValuePairs(filters, option: "--where")
    }

    func run() throws {
        var items: [(String, String)] = []
        if let eventType { items.append(("event_type", eventType)) }
        if let operation { items.append(("operation", operation)) }
        if let field { items.append(("field", field)) }
        items.append(("agg", agg))
        if let groupBy { items.append(("group_by", groupBy)) }
        if let since { items.append(("since", since.iso)) }
        if let until { items.append(("until", until.iso)) }
        if let interval { items.append(("interval", interval)) }
        if let tenant { items.append(("tenant_id", tenant)) }
        items += try keyValuePairs(filters, option: "--where")
        let answer = url.getObject("/v1/stats" + EventFilterOptions.queryString(items))
        if format == .json {
            let data = try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let groups = answer["groups"] as? [[String: Any]] ?? []
        guard !groups.isEmpty else {
            print("no rows match")
            return
        }
        let groupNames = groupBy?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []
        let aggregates = agg.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0 != "count" }
        var header = groupNames.map { $0.uppercased() }
        if interval != nil { header.append("BUCKET") }
        header += ["COUNT"] + aggregates.map { $0.uppercased() }
        let rows = groups.map { group -> [String] in
            let key = group["key"] as? [String: Any] ?? [:]
            var row = groupNames.map { name in key[name] == nil || key[name] is NSNull ? "(none)" : cell(key[name]) }
            if interval != nil { row.append(cell(group["bucket"])) }
            row.append(cell(group["count"]))
            row += aggregates.map { cell(group[$0]) }
            return row
        }
        printTable(header, rows)
    }
}
