import ArgumentParser
import TelemetryCatalog

struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Print the event catalog: event types, topics, fields, and why each is required or optional.",
        discussion: """
            Formats:
              text         a readable listing (the default)
              json         {"events":[{"event_type","topic","version",
                             "fields":[{"name","type","required","description"}]}]}
              json-schema  an object mapping each event type to its JSON Schema
                           (draft 2020-12), or the one schema when EVENT_TYPE is given
              markdown     the catalog page, as published in docs/catalog.md
              swift        the SDK's typed events, as in
                           Sources/TelemetryEvents/Events.swift

            Examples:
              telemetry catalog
              telemetry catalog xumi.generation.start --format json-schema
              telemetry catalog --format markdown > docs/catalog.md
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, jsonSchema = "json-schema", markdown, swift
    }

    @Argument(help: "Only this event type (e.g. xumi.generation.start).")
    var eventType: String?

    @Option(help: "Output format: text, json, json-schema, markdown or swift.")
    var format: Format = .text

    func run() throws {
        let catalog = Catalog.builtin
        if let eventType, catalog.definitions(of: eventType).isEmpty {
            CommandFailure.exit("unknown event type \"\(eventType)\"; run `telemetry catalog` to list them")
        }
        switch format {
        case .json:
            print(catalog.jsonListing(eventType: eventType).render(pretty: true))
        case .jsonSchema:
            if let eventType {
                print(catalog.jsonSchema(of: eventType)!.render(pretty: true))
            } else {
                print(catalog.jsonSchemas().render(pretty: true))
            }
        case .swift:
            if eventType != nil { CommandFailure.exit("--format swift prints the whole catalog; omit EVENT_TYPE") }
            print(catalog.swiftSource(), terminator: "")
        case .markdown:
            if eventType != nil { CommandFailure.exit("--format markdown prints the whole catalog; omit EVENT_TYPE") }
            print(catalog.markdown(), terminator: "")
        case .text:
            printText(catalog)
        }
    }

    private func printText(_ catalog: Catalog) {
        let selected = catalog.events.filter { eventType == nil || $0.eventType == eventType }
        if eventType == nil {
            print("\(catalog.eventTypes.count) event types on \(catalog.topics.count) topics. Envelope (every event):")
            printFields(catalog.envelope)
            print("")
        }
        for event in selected {
            print("\(event.eventType)  (version \(event.version), topic \(event.topic))  \(event.title)")
            printFields(eventType == nil ? event.fields : catalog.allFields(of: event))
            print("")
        }
    }

    private func printFields(_ fields: [FieldDefinition]) {
        let width = fields.map(\.name.count).max() ?? 0
        for field in fields {
            let name = field.name.padding(to: width)
            let type = field.type.name.padding(to: 11)
            print("  \(name)  \(type)  \(field.isRequired ? "required" : "optional")  \(field.description)")
        }
    }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
