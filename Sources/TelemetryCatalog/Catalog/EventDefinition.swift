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
    /// The name of the event's Swift type in the SDK, in the platform's words (`GenerationStarted`);
    /// derived from the event type when not given (`xumi.generation.start` → `XumiGenerationStart`).
    public var typeName: String

    /// Creates an event definition.
    public init(
        _ eventType: String, version: String = "1.0", topic: Topic, title: String, fields: [FieldDefinition],
        typeName: String? = nil
    ) {
        self.typeName = typeName ?? Self.derivedTypeName(eventType)
        self.eventType = eventType
        self.version = version
        self.topic = topic
        self.title = title
        self.fields = fields
    }

    /// `xumi.generation.start` → `XumiGenerationStart`.
    static func derivedTypeName(_ eventType: String) -> String {
        eventType.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }
}
