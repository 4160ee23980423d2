extension FieldDefinition {
    /// The field as `telemetry catalog --format json` lists it.
    func listing(inEnvelope: Bool) -> JSONValue {
        var object: JSONValue = [
            "name": .string(name),
            "type": .string(type.name),
            "required": .bool(isRequired),
            "description": .string(description),
            "reason": .string(reason),
            "envelope": .bool(inEnvelope),
        ]
        if !aliases.isEmpty { object["aliases"] = .array(aliases.map { .string($0) }) }
        if let minimum { object["minimum"] = .integer(minimum) }
        return object
    }
}

extension Catalog {
    /// The catalog as `telemetry catalog --format json` prints it:
    /// `{"events":[{"event_type","topic","version","fields":[{"name","type","required","description"}]}]}`,
    /// each field with its `reason`, whether it belongs to the `envelope`, and its `aliases` and
    /// `minimum` where it has them. Every field of the event is listed, envelope fields first.
    ///
    /// - Parameter eventType: only that event type's versions; all events when `nil`.
    public func jsonListing(eventType: String? = nil) -> JSONValue {
        let envelopeNames = Set(envelope.map(\.name))
        let selected = events.filter { eventType == nil || $0.eventType == eventType }
        let listed: [JSONValue] = selected.map { event in
            let own = Set(event.fields.map(\.name))
            return [
                "event_type": .string(event.eventType),
                "topic": .string(event.topic.name),
                "version": .string(event.version),
                "title": .string(event.title),
                "fields": .array(
                    allFields(of: event).map { $0.listing(inEnvelope: envelopeNames.contains($0.name) && !own.contains($0.name)) }),
            ]
        }
        var result: JSONValue = ["events": .array(listed)]
        if eventType == nil {
            result["topics"] = .array(topics.map { .string($0.name) })
            result["envelope"] = .array(envelope.map { $0.listing(inEnvelope: true) })
            result["lifecycles"] = .array(lifecycles.map(\.listing))
        }
        return result
    }
}

extension LifecycleDefinition {
    /// The lifecycle as the catalog listing shows it.
    var listing: JSONValue {
        var object: JSONValue = [
            "kind": .string(kind),
            "title": .string(title),
            "start": .string(startEventType),
            "complete": .string(completeEventType),
            "keys": .array(keys.map { ["start": .string($0.startField), "complete": .string($0.completeField)] }),
            "attributes": .array(attributes.map { .string($0) }),
            "spans": .array(
                spans.map {
                    [
                        "name": .string($0.name), "from": .string(($0.from.ofCompletion ? "complete." : "start.") + $0.from.field),
                        "to": .string(($0.to.ofCompletion ? "complete." : "start.") + $0.to.field),
                        "description": .string($0.description),
                    ]
                }),
            "stuck_after_seconds": stuckAfterSeconds.map { .integer(Int64($0)) } ?? .null,
        ]
        if let startsWhen { object["starts_when_true"] = .string(startsWhen) }
        if let completesWhen { object["completes_when_true"] = .string(completesWhen) }
        if let resultField { object["result"] = .string(resultField) }
        return object
    }
}
