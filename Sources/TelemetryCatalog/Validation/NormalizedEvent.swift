/// A valid event in its normalised form: the JSON to store and the typed values of its fields.
///
/// Normalisation keeps everything that was sent, with four documented changes: member names that
/// are aliases are written under the field's name (`resource_Id` → `resource_id`); `user` and
/// `resource` sent as strings become the objects they hold; whitespace between top-level members is
/// dropped; and the values of catalog fields are available typed (timestamps also as UTC
/// microseconds). Unknown members are kept verbatim and listed in ``unknownFields``.
public struct NormalizedEvent: Sendable {
    package let compiled: CompiledEvent

    /// The definition the event was checked against.
    public var definition: EventDefinition { compiled.definition! }
    /// All fields of the definition (envelope first), in the order of ``value(at:)``.
    public var fields: [FieldDefinition] { compiled.fields }
    /// `event_id`.
    public let eventID: UUIDValue
    /// `tenant_id`.
    public let tenantID: UUIDValue
    /// `timestamp`, as UTC microseconds since the Unix epoch.
    public let timestampMicros: Int64
    /// The normalised event as compact JSON (UTF-8).
    public let json: [UInt8]
    /// Names of members the catalog does not define for this event, as sent, in order.
    public let unknownFields: [String]

    package let values: [StoredValue]
    /// For each field slot, where its member (`"name":value`) starts in ``json``, or -1 when the
    /// event has no such member. A store that keeps fields in typed columns uses it to leave them
    /// out of the JSON it keeps (the SQLite store's `StoredForm`).
    package let memberStarts: [Int32]

    /// The event type, e.g. `xumi.generation.start`.
    public var eventType: String { compiled.definition!.eventType }
    /// The catalog version the event was checked against.
    public var version: String { compiled.definition!.version }
    /// The topic of the event's type.
    public var topic: Topic { compiled.definition!.topic }

    /// The value of the field at `slot` of ``fields``, or `nil` when absent or `null`.
    public func value(at slot: Int) -> FieldValue? {
        switch values[slot] {
        case .absent, .null: return nil
        case .integer(let v): return .integer(v)
        case .number(let v): return .number(v)
        case .bool(let v): return .bool(v)
        case .uuid(let v): return .uuid(v)
        case .text(let start, let end, let escaped):
            return .string(text(Int(start), Int(end), escaped: escaped))
        case .object(let start, let end):
            return .json(String(decoding: json[Int(start)..<Int(end)], as: UTF8.self))
        case .timestamp(let micros, let start, let end, let escaped):
            return .timestamp(text: text(Int(start), Int(end), escaped: escaped), microseconds: micros)
        }
    }

    /// The value of the field named `name`, or `nil` when the event has no such field, or it is
    /// absent or `null`.
    public func value(_ name: String) -> FieldValue? {
        guard let slot = fields.firstIndex(where: { $0.name == name }) else { return nil }
        return value(at: slot)
    }

    /// The normalised JSON as a string.
    public var jsonString: String { String(decoding: json, as: UTF8.self) }

    private func text(_ start: Int, _ end: Int, escaped: Bool) -> String {
        guard escaped else { return String(decoding: json[start..<end], as: UTF8.self) }
        return json.withUnsafeBytes { raw in
            let scanner = JSONScanner(raw, maxDepth: 0)
            var out: [UInt8] = []
            scanner.decodeString(from: start, to: end, into: &out)
            return String(decoding: out, as: UTF8.self)
        }
    }
}

/// An event that failed validation: everything wrong with it, and what could be read of it.
public struct InvalidEvent: Hashable, Sendable {
    /// The `event_type` sent, when it was a string.
    public let eventType: String?
    /// The `event_id` sent, when it was a string (valid or not).
    public let eventID: String?
    /// Every problem found; never empty.
    public let issues: [ValidationIssue]

    /// Creates the verdict on an invalid event.
    public init(eventType: String?, eventID: String?, issues: [ValidationIssue]) {
        self.eventType = eventType
        self.eventID = eventID
        self.issues = issues
    }
}

/// The verdict on one event.
public enum ValidationResult: Sendable {
    case valid(NormalizedEvent)
    case invalid(InvalidEvent)

    /// The issues found; empty for a valid event.
    public var issues: [ValidationIssue] {
        switch self {
        case .valid: []
        case .invalid(let invalid): invalid.issues
        }
    }

    /// Whether the event is valid.
    public var isValid: Bool {
        if case .valid = self { return true }
        return false
    }
}

extension NormalizedEvent {
    /// An event put back together from stored values, for code that reads only ``values`` by
    /// slot: `bytes` holds just what the text values point into, not the event's JSON, and no
    /// member has a place in it (``memberStarts`` all -1, no ``unknownFields``). The SQLite
    /// store's pairing reads lifecycle events back from their typed columns this way, rather than
    /// rebuilding each event's JSON and validating it again.
    package init(
        compiled: CompiledEvent, storedValues values: [StoredValue], bytes: [UInt8], eventID: UUIDValue, tenantID: UUIDValue,
        timestampMicros: Int64
    ) {
        self.compiled = compiled
        self.eventID = eventID
        self.tenantID = tenantID
        self.timestampMicros = timestampMicros
        self.json = bytes
        self.unknownFields = []
        self.values = values
        self.memberStarts = Array(repeating: -1, count: values.count)
    }
}
