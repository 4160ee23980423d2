/// A validated value of a catalog field.
public enum FieldValue: Hashable, Sendable {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case uuid(UUIDValue)
    /// A timestamp as sent, and the same instant as UTC microseconds since the Unix epoch.
    case timestamp(text: String, microseconds: Int64)
    /// A JSON object (or, for `metadata` and `tags`, any object), as compact or as-sent JSON text.
    case json(String)
}

/// A field value inside a normalised event, located in its JSON rather than copied out.
package enum StoredValue: Sendable {
    case absent
    case null
    /// String content at `start..<end` of the normalised JSON (escapes still in place when `escaped`).
    case text(start: Int32, end: Int32, escaped: Bool)
    /// An object's JSON text at `start..<end` of the normalised JSON.
    case object(start: Int32, end: Int32)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case uuid(UUIDValue)
    case timestamp(micros: Int64, start: Int32, end: Int32, escaped: Bool)
}
