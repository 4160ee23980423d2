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
        }
        return result
    }
}
