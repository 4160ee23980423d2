/// The type of a catalog field, as the validator checks it and a store types its column.
///
/// An opaque struct with static members rather than a public enum, so that a type can be added
/// without breaking code that switches over the known ones.
public struct FieldType: Hashable, Sendable, CustomStringConvertible {
    enum Kind: UInt8, Sendable {
        case string, integer, number, bool, uuid, timestamp, ipAddress, jsonObject, object, stringMap
    }

    let kind: Kind

    private init(kind: Kind) { self.kind = kind }

    /// Any JSON string.
    public static let string = FieldType(kind: .string)
    /// A whole number that fits a signed 64-bit integer, kept exactly (never through a `Double`).
    /// `1e3` and `1.0` are accepted since they are integers in JSON's number model.
    public static let integer = FieldType(kind: .integer)
    /// Any finite JSON number, kept as a 64-bit float.
    public static let number = FieldType(kind: .number)
    /// JSON `true` or `false`.
    public static let bool = FieldType(kind: .bool)
    /// A UUID as RFC 9562 text: 8-4-4-4-12 hex digits, either case, any version.
    public static let uuid = FieldType(kind: .uuid)
    /// An RFC 3339 date-time (the ISO 8601 profile) with a zone: `Z` or `±HH:MM`.
    public static let timestamp = FieldType(kind: .timestamp)
    /// An IPv4 (dotted quad, no leading zeros) or IPv6 (RFC 4291 text) address.
    public static let ipAddress = FieldType(kind: .ipAddress)
    /// A JSON object, or a string that holds the text of one (normalised to the object).
    public static let jsonObject = FieldType(kind: .jsonObject)
    /// Any JSON object, kept verbatim.
    public static let object = FieldType(kind: .object)
    /// A JSON object whose values are all strings.
    public static let stringMap = FieldType(kind: .stringMap)

    /// Every field type, in a stable order.
    public static let all: [FieldType] = [
        .string, .integer, .number, .bool, .uuid, .timestamp, .ipAddress, .jsonObject, .object, .stringMap,
    ]

    /// The name used in `telemetry catalog` output and the docs.
    public var name: String {
        switch kind {
        case .string: "string"
        case .integer: "integer"
        case .number: "number"
        case .bool: "bool"
        case .uuid: "uuid"
        case .timestamp: "timestamp"
        case .ipAddress: "ip"
        case .jsonObject: "json_object"
        case .object: "object"
        case .stringMap: "string_map"
        }
    }

    /// Looks a field type up by its catalog name.
    public init?(name: String) {
        guard let type = FieldType.all.first(where: { $0.name == name }) else { return nil }
        self = type
    }

    public var description: String { name }
}
