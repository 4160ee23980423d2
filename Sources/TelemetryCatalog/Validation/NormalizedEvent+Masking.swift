/// A change to one field of a normalised event, made by a privacy policy before it is stored.
public struct FieldMask: Sendable {
    /// The field's slot in ``NormalizedEvent/fields``; it must hold a string (a `string` or
    /// `ip_address` field that is present).
    public let slot: Int
    /// The new text, or `nil` to remove the member.
    public let replacement: String?
    /// What was done, recorded in the event's `_masked` member (e.g. `hash`, `truncate`, `drop`).
    public let action: String

    public init(slot: Int, replacement: String?, action: String) {
        self.slot = slot
        self.replacement = replacement
        self.action = action
    }
}

extension NormalizedEvent {
    /// The name of the member that records which fields were masked and how:
    /// `"_masked":{"prompt":"hash","IP":"truncate"}`.
    public static let maskedMember = "_masked"

    /// Whether the field at `slot` holds a string that ``masking(_:)`` can change.
    public func isMaskable(_ slot: Int) -> Bool {
        if case .text = values[slot] { return true }
        return false
    }

    /// The event with `masks` applied: each field's value replaced (or its member removed), the
    /// typed values moved to match, and the `_masked` member added at the end.
    ///
    /// - Precondition: every mask's slot ``isMaskable(_:)``; at most one mask per slot.
    public func masking(_ masks: [FieldMask]) -> NormalizedEvent {
        guard !masks.isEmpty else { return self }
        // The byte range each mask replaces, in order; replacements are written straight into
        // the new JSON (a masked event is ~30% of traffic: its allocations count).
        var edits: [(range: Range<Int>, mask: FieldMask)] = []
        edits.reserveCapacity(masks.count)
        for mask in masks {
            guard case .text(let start, let end, _) = values[mask.slot] else { preconditionFailure("slot \(mask.slot) holds no string") }
            var range = (Int(start) - 1)..<(Int(end) + 1)  // the string with its quotes
            if mask.replacement == nil {
                // The whole member, `"name":"value"`, and one comma next to it.
                var lower = range.lowerBound - (compiled.memberPrefixStarts[mask.slot + 1] - compiled.memberPrefixStarts[mask.slot])
                var upper = range.upperBound
                if json[lower - 1] == UInt8(ascii: ",") {
                    lower -= 1
                } else if json[upper] == UInt8(ascii: ",") {
                    upper += 1
                }
                range = lower..<upper
            }
            edits.append((range, mask))
        }
        edits.sort { $0.range.lowerBound < $1.range.lowerBound }

        var out: [UInt8] = []
        out.reserveCapacity(json.count + 64)
        var cursor = 0
        var newValues = values
        var newStarts = memberStarts
        // Where each edit ends in the old JSON, and the shift it leaves behind it.
        var shifts: [(end: Int, delta: Int)] = []
        shifts.reserveCapacity(edits.count)
        var delta = 0
        json.withUnsafeBufferPointer { json in
            for edit in edits {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: json[cursor..<edit.range.lowerBound]))
                let newStart = out.count
                if let replacement = edit.mask.replacement {
                    JSONValue.quote(replacement, into: &out)
                    let escaped = out[(newStart + 1)..<(out.count - 1)].contains(UInt8(ascii: "\\"))
                    newValues[edit.mask.slot] = .text(start: Int32(newStart + 1), end: Int32(out.count - 1), escaped: escaped)
                } else {
                    newValues[edit.mask.slot] = .absent
                    newStarts[edit.mask.slot] = -1
                }
                cursor = edit.range.upperBound
                delta += (out.count - newStart) - edit.range.count
                shifts.append((edit.range.upperBound, delta))
            }
            // Everything after the last edit, but the closing brace: the record of what was masked goes there.
            out.append(contentsOf: UnsafeBufferPointer(rebasing: json[cursor..<(json.count - 1)]))
        }
        if out.last != UInt8(ascii: "{") { out.append(UInt8(ascii: ",")) }
        // "_masked":{"field":"action",...}
        JSONValue.quote(Self.maskedMember, into: &out)
        out.append(UInt8(ascii: ":"))
        out.append(UInt8(ascii: "{"))
        for (i, mask) in masks.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.quote(fields[mask.slot].name, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONValue.quote(mask.action, into: &out)
        }
        out.append(UInt8(ascii: "}"))
        out.append(UInt8(ascii: "}"))

        func shifted(_ offset: Int32) -> Int32 {
            var d = 0
            for shift in shifts where shift.end <= Int(offset) { d = shift.delta }
            return offset + Int32(d)
        }
        // A replaced value's member starts where it did (its edit begins after the name).
        for slot in newStarts.indices where newStarts[slot] >= 0 { newStarts[slot] = shifted(newStarts[slot]) }
        for slot in newValues.indices where !masks.contains(where: { $0.slot == slot }) {
            switch newValues[slot] {
            case .text(let start, let end, let escaped):
                newValues[slot] = .text(start: shifted(start), end: shifted(end), escaped: escaped)
            case .object(let start, let end):
                newValues[slot] = .object(start: shifted(start), end: shifted(end))
            case .timestamp(let micros, let start, let end, let escaped):
                newValues[slot] = .timestamp(micros: micros, start: shifted(start), end: shifted(end), escaped: escaped)
            default:
                break
            }
        }
        return NormalizedEvent(
            compiled: compiled, eventID: eventID, tenantID: tenantID, timestampMicros: timestampMicros, json: out,
            unknownFields: unknownFields, values: newValues, memberStarts: newStarts)
    }
}
