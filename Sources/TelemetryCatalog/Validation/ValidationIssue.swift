/// One problem with an event: which field, a stable machine-readable code, and a message.
public struct ValidationIssue: Hashable, Sendable, CustomStringConvertible {
    /// A stable machine-readable reason. New codes may be added; existing ones never change meaning.
    public struct Code: Hashable, Sendable, CustomStringConvertible, Comparable {
        /// The code's text, e.g. `bad_uuid`.
        public let rawValue: String

        init(_ rawValue: String) { self.rawValue = rawValue }

        /// The code with this text (as read back from a store or a response).
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The event (or line), or one of its strings, is larger than the limit that applies to it.
        public static let tooLarge = Code("too_large")
        /// The bytes are not JSON (truncated, invalid UTF-8, bad escapes, trailing data, …).
        public static let malformedJSON = Code("malformed_json")
        /// Nested deeper than the validator's limit.
        public static let tooDeep = Code("too_deep")
        /// Valid JSON, but not an object.
        public static let notAnObject = Code("not_an_object")
        /// A member name appears twice (or a field under two of its names, e.g. `resource_id` and `resource_Id`).
        public static let duplicateField = Code("duplicate_field")
        /// A required field is absent or `null`.
        public static let missing = Code("missing")
        /// A value of the wrong JSON type (a string where a bool belongs, `1.5` for an integer, …).
        public static let wrongType = Code("wrong_type")
        /// Not RFC 9562 UUID text.
        public static let badUUID = Code("bad_uuid")
        /// Not an RFC 3339 date-time with a zone, or a day that does not exist.
        public static let badTimestamp = Code("bad_timestamp")
        /// Not an IPv4 or IPv6 address.
        public static let badIP = Code("bad_ip")
        /// A number outside its field's range (negative sizes, beyond 64 bits).
        public static let outOfRange = Code("out_of_range")
        /// A string that should hold a JSON object but does not.
        public static let badEmbeddedJSON = Code("bad_embedded_json")
        /// An `event_type` the catalog does not know.
        public static let unknownEventType = Code("unknown_event_type")
        /// A `version` the catalog does not know for this event type.
        public static let unknownVersion = Code("unknown_version")
        /// The event's `tenant_id` is not the tenant of the API key that sent it (set by the collector).
        public static let forbiddenTenant = Code("forbidden_tenant")

        /// Every code, for docs and tests.
        public static let all: [Code] = [
            .malformedJSON, .tooLarge, .tooDeep, .notAnObject, .duplicateField, .missing, .wrongType, .badUUID, .badTimestamp,
            .badIP, .outOfRange, .badEmbeddedJSON, .unknownEventType, .unknownVersion, .forbiddenTenant,
        ]

        public var description: String { rawValue }
        public static func < (lhs: Code, rhs: Code) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The field at fault, e.g. `task_id` or `tags.team`; empty for problems of the whole event.
    public let field: String
    /// Why, as a stable code.
    public let code: Code
    /// Why, in words a person can act on.
    public let message: String

    /// Creates an issue.
    public init(field: String, code: Code, message: String) {
        self.field = field
        self.code = code
        self.message = message
    }

    public var description: String {
        field.isEmpty ? "\(code): \(message)" : "\(field): \(code): \(message)"
    }
}
