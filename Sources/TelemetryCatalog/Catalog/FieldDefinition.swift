/// One field of an event: its wire name, type, whether it is required, and why.
public struct FieldDefinition: Hashable, Sendable {
    /// The wire name, as stored (e.g. `resource_id`).
    public var name: String
    /// Other names producers may send for this field (e.g. the spec's `resource_Id`); they are
    /// stored under `name`.
    public var aliases: [String]
    /// The value's type.
    public var type: FieldType
    /// Whether an event without this field (or with `null`) is invalid.
    public var isRequired: Bool
    /// What the field means, from the spec where it says.
    public var description: String
    /// Why the field is required or optional: the catalog's recorded decision.
    public var reason: String
    /// The smallest value allowed, for numeric fields that count or measure something.
    public var minimum: Int64?

    /// Creates a field definition.
    public init(
        name: String,
        aliases: [String] = [],
        type: FieldType,
        isRequired: Bool,
        description: String,
        reason: String,
        minimum: Int64? = nil
    ) {
        self.name = name
        self.aliases = aliases
        self.type = type
        self.isRequired = isRequired
        self.description = description
        self.reason = reason
        self.minimum = minimum
    }

    /// A required field.
    public static func required(
        _ name: String, _ type: FieldType, _ description: String, because reason: String,
        aliases: [String] = [], minimum: Int64? = nil
    ) -> FieldDefinition {
        FieldDefinition(
            name: name, aliases: aliases, type: type, isRequired: true, description: description, reason: reason,
            minimum: minimum)
    }

    /// An optional field.
    public static func optional(
        _ name: String, _ type: FieldType, _ description: String, because reason: String,
        aliases: [String] = [], minimum: Int64? = nil
    ) -> FieldDefinition {
        FieldDefinition(
            name: name, aliases: aliases, type: type, isRequired: false, description: description, reason: reason,
            minimum: minimum)
    }
}
