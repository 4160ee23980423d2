/// One version of one event type: its topic and fields.
public struct EventDefinition: Hashable, Sendable {
    /// The wire `event_type`, e.g. `xumi.generation.start`.
    public var eventType: String
    /// The envelope `version` this definition applies to, e.g. `1.0`.
    public var version: String
    /// The topic the event is published on.
    public var topic: Topic
    /// A one-line title, from the spec's heading.
    public var title: String
    /// The event's own fields, as the spec lists them. A field that shares its name with an envelope
    /// field overrides it for this event (e.g. `user_id` required where the spec lists it).
    public var fields: [FieldDefinition]

    /// Creates an event definition.
    public init(
        _ eventType: String, version: String = "1.0", topic: Topic, title: String, fields: [FieldDefinition]
    ) {
        self.eventType = eventType
        self.version = version
        self.topic = topic
        self.title = title
        self.fields = fields
    }
}
