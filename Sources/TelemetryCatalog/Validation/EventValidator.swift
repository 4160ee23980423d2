/// Limits that bound the work one event can cause.
public struct ValidationLimits: Hashable, Sendable {
    /// The deepest nesting of objects and arrays accepted; the event object itself is depth 1.
    public var maxDepth: Int
    /// The longest string value of a field, bytes as sent (escapes included). Strings nested in
    /// objects are bounded by the size limit of the whole event instead.
    public var maxStringBytes: Int

    /// Creates limits.
    public init(maxDepth: Int = 64, maxStringBytes: Int = 256 << 10) {
        self.maxDepth = maxDepth
        self.maxStringBytes = maxStringBytes
    }
}

/// Validates and normalises events, one at a time, from raw bytes.
///
/// The validator reads the bytes once, without building an object tree, and reports every problem
/// of an event at once. It keeps scratch buffers between calls, so one validator should be reused
/// for many events (it is a value type: give each thread or task its own copy).
public struct EventValidator: Sendable {
    /// The catalog events are checked against.
    public let catalog: Catalog
    /// The limits applied to each event.
    public let limits: ValidationLimits

    private let eventTypeNameID: Int
    private let versionNameID: Int
    private let eventIDNameID: Int

    // Scratch, reused across events.
    private var members: [Member] = []
    private var seenStamp: [UInt32]
    private var stamp: UInt32 = 0

    private struct Member {
        var key: JSONScanner.Token
        var value: JSONScanner.Token
        var nameID: Int
    }

    /// Creates a validator for `catalog`.
    public init(catalog: Catalog = .builtin, limits: ValidationLimits = ValidationLimits()) {
        self.catalog = catalog
        self.limits = limits
        self.eventTypeNameID = catalog.nameTable.lookup(Array("event_type".utf8))!
        self.versionNameID = catalog.nameTable.lookup(Array("version".utf8))!
        self.eventIDNameID = catalog.nameTable.lookup(Array("event_id".utf8))!
        self.seenStamp = Array(repeating: 0, count: catalog.names.count)
    }

    /// Validates one event given as UTF-8 JSON bytes.
    public mutating func validate(_ bytes: some Collection<UInt8>) -> ValidationResult {
        if let result = bytes.withContiguousStorageIfAvailable({ validate(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { validate($0) }
    }

    /// Validates one event given as a string of JSON.
    public mutating func validate(_ text: String) -> ValidationResult {
        var text = text
        return text.withUTF8 { validate(UnsafeRawBufferPointer($0)) }
    }

    /// Validates one event given as raw UTF-8 JSON bytes.
    public mutating func validate(_ bytes: UnsafeRawBufferPointer) -> ValidationResult {
        var scanner = JSONScanner(bytes, maxDepth: limits.maxDepth)
        do {
            if let kind = try scanTopLevel(&scanner) {
                let issue = ValidationIssue(
                    field: "", code: .notAnObject, message: "an event must be a JSON object, got \(kind.name)")
                return .invalid(InvalidEvent(eventType: nil, eventID: nil, issues: [issue]))
            }
        } catch {
            return .invalid(InvalidEvent(eventType: nil, eventID: nil, issues: [Self.issue(for: error, scanner)]))
        }
        return check(scanner)
    }

    private static func issue(for failure: JSONScanner.Failure, _ scanner: JSONScanner) -> ValidationIssue {
        switch failure.reason {
        case .tooDeep:
            return ValidationIssue(
                field: "", code: .tooDeep,
                message: "nested deeper than \(scanner.maxDepth) levels (at byte \(failure.offset))")
        case .malformed(let message):
            return ValidationIssue(field: "", code: .malformedJSON, message: "\(message) (at byte \(failure.offset))")
        }
    }

    /// Scans the top-level object into `members`, or throws the first syntax problem.
    ///
    /// - Returns: `nil` for an object; the kind of the value when the bytes are JSON but no object.
    private mutating func scanTopLevel(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> JSONScanner.Kind? {
        members.removeAll(keepingCapacity: true)
        scanner.skipWhitespace()
        guard let first = scanner.current else { throw scanner.fail("empty input: expected a JSON object") }
        guard first == UInt8(ascii: "{") else {
            let value = try scanner.scanValue(depth: 0)
            scanner.skipWhitespace()
            guard scanner.atEnd else { throw scanner.fail("unexpected data after the JSON value") }
            return value.kind
        }
        scanner.position += 1
        scanner.skipWhitespace()
        if scanner.current == UInt8(ascii: "}") {
            scanner.position += 1
        } else {
            while true {
                scanner.skipWhitespace()
                guard scanner.current == UInt8(ascii: "\"") else {
                    throw scanner.atEnd
                        ? scanner.fail("unexpected end of input inside the event object")
                        : scanner.fail("expected a member name in quotes")
                }
                let key = try scanner.scanString()
                try scanner.expect(UInt8(ascii: ":"), "':' after a member name")
                let value = try scanner.scanValue(depth: 1)
                members.append(Member(key: key, value: value, nameID: -1))
                scanner.skipWhitespace()
                guard let b = scanner.current else {
                    throw scanner.fail("unexpected end of input inside the event object")
                }
                scanner.position += 1
                if b == UInt8(ascii: ",") { continue }
                if b == UInt8(ascii: "}") { break }
                throw scanner.fail("expected ',' or '}' after a member, found \(scanner.describeByte(b))", at: scanner.position - 1)
            }
        }
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw scanner.fail("unexpected data after the event object") }
        return nil
    }

    /// Checks the scanned members against the catalog and builds the normalised event.
    private mutating func check(_ scanner: JSONScanner) -> ValidationResult {
        var issues: [ValidationIssue] = []
        let names = catalog.nameTable

        // Resolve member names and find the event type and version.
        var eventTypeMember = -1
        var versionMember = -1
        var eventIDMember = -1
        for i in members.indices {
            let key = members[i].key
            let id: Int?
            if key.escaped {
                let decoded = scanner.decodeString(key)
                id = decoded.withUnsafeBufferPointer { names.lookup($0.baseAddress, $0.count) }
            } else {
                id = names.lookup(scanner.base + key.start, key.end - key.start)
            }
            guard let id else { continue }
            members[i].nameID = id
            if id == eventTypeNameID && eventTypeMember < 0 { eventTypeMember = i }
            if id == versionNameID && versionMember < 0 { versionMember = i }
            if id == eventIDNameID && eventIDMember < 0 { eventIDMember = i }
        }

        var compiled = catalog.envelopeOnly
        var eventTypeText: String? = nil
        if eventTypeMember >= 0, members[eventTypeMember].value.kind == .string {
            let token = members[eventTypeMember].value
            let t = withContent(of: token, scanner) { catalog.eventTypeTable.lookup($0) }
            if let t {
                compiled = resolveVersion(t, versionMember: versionMember, scanner, &issues)
            } else {
                let text = string(token, scanner)
                eventTypeText = text
                issues.append(
                    ValidationIssue(
                        field: "event_type", code: .unknownEventType,
                        message: "unknown event type \"\(Self.excerpt(text))\"\(suggestion(for: text)); `telemetry catalog` lists the \(catalog.eventTypes.count) known types"))
            }
        }

        // Check every member, writing the normalised JSON as we go.
        var values = [StoredValue](repeating: .absent, count: compiled.fields.count)
        var memberStarts = [Int32](repeating: -1, count: compiled.fields.count)
        var unknownFields: [String] = []
        var unknownKeys: [ArraySlice<UInt8>] = []
        var out: [UInt8] = []
        out.reserveCapacity(scanner.count + 16)
        out.append(UInt8(ascii: "{"))
        stamp &+= 1
        if stamp == 0 {
            for i in seenStamp.indices { seenStamp[i] = 0 }
            stamp = 1
        }
        var embedded: [UInt8] = []
        // Held here once an event: read through the class for every member, each was retained.
        let memberPrefixes = compiled.memberPrefixes
        let prefixStarts = compiled.memberPrefixStarts
        for (index, member) in members.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let slot = member.nameID >= 0 ? Int(compiled.slotByName[member.nameID]) : -1
            if member.nameID >= 0 {
                if seenStamp[member.nameID] == stamp {
                    let name = catalog.names[member.nameID]
                    let sent = string(member.key, scanner)
                    issues.append(
                        ValidationIssue(
                            field: name, code: .duplicateField,
                            message: sent == name
                                ? "\(name) appears more than once; send each field once"
                                : "\(sent) and \(name) are the same field; send it once, as \(name)"))
                    continue
                }
                seenStamp[member.nameID] = stamp
            }
            if member.value.kind == .string, member.value.end - member.value.start > limits.maxStringBytes {
                let name = member.nameID >= 0 ? catalog.names[member.nameID] : String(decoding: contentBytes(member.key, scanner), as: UTF8.self)
                issues.append(
                    ValidationIssue(
                        field: name, code: .tooLarge,
                        message: "\(name) is \(member.value.end - member.value.start) bytes long, over the limit of \(limits.maxStringBytes) bytes for a string"))
                continue
            }
            guard slot >= 0 else {
                // Unknown to this event: kept verbatim, listed, and checked for duplicates by bytes.
                let keyBytes = contentBytes(member.key, scanner)
                if member.nameID < 0 {
                    if unknownKeys.contains(keyBytes) {
                        let name = String(decoding: keyBytes, as: UTF8.self)
                        issues.append(
                            ValidationIssue(
                                field: name, code: .duplicateField, message: "\(name) appears more than once; send each field once"))
                        continue
                    }
                    unknownKeys.append(keyBytes)
                }
                unknownFields.append(String(decoding: keyBytes, as: UTF8.self))
                append(scanner, from: member.key.start - 1, to: member.key.end + 1, to: &out)
                out.append(UInt8(ascii: ":"))
                append(scanner, from: member.value.start - (member.value.kind == .string ? 1 : 0),
                    to: member.value.end + (member.value.kind == .string ? 1 : 0), to: &out)
                continue
            }
            let field = compiled.checks[slot]
            let memberStart = Int32(out.count)
            memberPrefixes.withUnsafeBufferPointer { prefixes in
                out.append(contentsOf: UnsafeBufferPointer(rebasing: prefixes[prefixStarts[slot]..<prefixStarts[slot + 1]]))
            }
            let valueStart = out.count
            let token = member.value
            let isString = token.kind == .string
            append(scanner, from: token.start - (isString ? 1 : 0), to: token.end + (isString ? 1 : 0), to: &out)
            let contentStart = Int32(valueStart + (isString ? 1 : 0))
            let contentEnd = Int32(out.count - (isString ? 1 : 0))
            if let stored = checkValue(
                token, field, slot, compiled, scanner, contentStart, contentEnd, &issues, &embedded)
            {
                if case .object = stored, isString {
                    // A JSON object sent as a string: store the object itself.
                    out.removeSubrange(valueStart...)
                    out.append(contentsOf: embedded)
                    values[slot] = .object(start: Int32(valueStart), end: Int32(out.count))
                } else {
                    values[slot] = stored
                }
                memberStarts[slot] = memberStart
            }
        }
        out.append(UInt8(ascii: "}"))

        for (slot, check) in compiled.checks.enumerated() where check.isRequired {
            if case .absent = values[slot] {
                let field = compiled.fields[slot]
                // A field rejected above for its value is reported once, for that reason.
                if issues.contains(where: { $0.field == field.name }) { continue }
                issues.append(
                    ValidationIssue(
                        field: field.name, code: .missing,
                        message: "\(field.name) is required\(compiled.definition.map { " for \($0.eventType)" } ?? "")"))
            }
        }

        if eventTypeMember < 0 || compiled.definition == nil, issues.isEmpty {
            // Only reachable when the event type is present but not a string and nothing else failed.
            issues.append(ValidationIssue(field: "event_type", code: .missing, message: "event_type is required"))
        }

        guard issues.isEmpty, compiled.definition != nil,
            case .uuid(let eventID) = values[catalog.slots.eventID],
            case .uuid(let tenantID) = values[catalog.slots.tenantID],
            case .timestamp(let micros, _, _, _) = values[catalog.slots.timestamp]
        else {
            var eventID: String? = nil
            if eventIDMember >= 0, members[eventIDMember].value.kind == .string {
                eventID = Self.excerpt(string(members[eventIDMember].value, scanner))
            }
            if eventTypeText == nil, eventTypeMember >= 0, members[eventTypeMember].value.kind == .string {
                eventTypeText = string(members[eventTypeMember].value, scanner)
            }
            if issues.isEmpty {
                issues.append(ValidationIssue(field: "", code: .missing, message: "the envelope is incomplete"))
            }
            return .invalid(InvalidEvent(eventType: eventTypeText.map { Self.excerpt($0) }, eventID: eventID, issues: issues))
        }
        return .valid(
            NormalizedEvent(
                compiled: compiled, eventID: eventID, tenantID: tenantID,
                timestampMicros: micros, json: out, unknownFields: unknownFields, values: values,
                memberStarts: memberStarts))
    }

    /// Picks the definition of event type `t` for the event's `version`.
    private func resolveVersion(
        _ t: Int, versionMember: Int, _ scanner: JSONScanner, _ issues: inout [ValidationIssue]
    ) -> CompiledEvent {
        let candidates = catalog.versionsByEventType[t]
        let latest = catalog.compiled[candidates.last!]
        guard versionMember >= 0 else { return latest }  // reported as missing by the envelope check
        let token = members[versionMember].value
        guard token.kind == .string else { return latest }  // reported as wrong_type
        let found = withContent(of: token, scanner) { content -> Int? in
            candidates.first { index in
                let version = catalog.compiled[index].definition!.version.utf8
                return version.count == content.count && version.elementsEqual(content)
            }
        }
        if let found { return catalog.compiled[found] }
        let known = candidates.map { catalog.compiled[$0].definition!.version }
        issues.append(
            ValidationIssue(
                field: "version", code: .unknownVersion,
                message: "\(latest.definition!.eventType) has no version \"\(Self.excerpt(string(token, scanner)))\"; known: \(known.joined(separator: ", "))"))
        return catalog.envelopeOnly
    }

    /// Checks one value against its field; returns what to store, or `nil` after recording an issue.
    private func checkValue(
        _ token: JSONScanner.Token, _ check: FieldCheck, _ slot: Int, _ compiled: CompiledEvent, _ scanner: JSONScanner,
        _ contentStart: Int32, _ contentEnd: Int32,
        _ issues: inout [ValidationIssue], _ embedded: inout [UInt8]
    ) -> StoredValue? {
        // The field's definition (with its name) is only read to describe a problem.
        var field: FieldDefinition { compiled.fields[slot] }
        if token.kind == .null {
            if check.isRequired {
                issues.append(ValidationIssue(field: field.name, code: .missing, message: "\(field.name) is null; it is required"))
                return nil
            }
            return .null
        }
        func wrongType(_ expected: String) -> StoredValue? {
            issues.append(
                ValidationIssue(
                    field: field.name, code: .wrongType, message: "\(field.name) must be \(expected), got \(token.kind.name)"))
            return nil
        }
        switch check.kind {
        case .string:
            guard token.kind == .string else { return wrongType("a string") }
            return .text(start: contentStart, end: contentEnd, escaped: token.escaped)

        case .bool:
            switch token.kind {
            case .true: return .bool(true)
            case .false: return .bool(false)
            default: return wrongType("true or false")
            }

        case .integer:
            guard token.kind == .number else { return wrongType("an integer") }
            let raw = UnsafeRawBufferPointer(start: scanner.base + token.start, count: token.end - token.start)
            switch NumberText.integer(raw, integral: token.integral) {
            case .value(let v):
                if let minimum = check.minimum, v < minimum {
                    issues.append(
                        ValidationIssue(field: field.name, code: .outOfRange, message: "\(field.name) must be at least \(minimum), got \(v)"))
                    return nil
                }
                return .integer(v)
            case .notIntegral:
                issues.append(
                    ValidationIssue(
                        field: field.name, code: .wrongType,
                        message: "\(field.name) must be an integer, got \(Self.excerpt(String(decoding: raw, as: UTF8.self)))"))
                return nil
            case .outOfRange:
                issues.append(
                    ValidationIssue(
                        field: field.name, code: .outOfRange,
                        message: "\(field.name) does not fit a signed 64-bit integer: \(Self.excerpt(String(decoding: raw, as: UTF8.self)))"))
                return nil
            }

        case .number:
            guard token.kind == .number else { return wrongType("a number") }
            let raw = UnsafeRawBufferPointer(start: scanner.base + token.start, count: token.end - token.start)
            guard let v = NumberText.double(raw, integral: token.integral) else {
                issues.append(
                    ValidationIssue(
                        field: field.name, code: .outOfRange,
                        message: "\(field.name) does not fit a 64-bit float: \(Self.excerpt(String(decoding: raw, as: UTF8.self)))"))
                return nil
            }
            if let minimum = check.minimum, v < Double(minimum) {
                issues.append(
                    ValidationIssue(field: field.name, code: .outOfRange, message: "\(field.name) must be at least \(minimum), got \(v)"))
                return nil
            }
            return .number(v)

        case .uuid:
            guard token.kind == .string else { return wrongType("a UUID string") }
            if let uuid = withContent(of: token, scanner, { UUIDValue(parsing: $0) }) { return .uuid(uuid) }
            issues.append(
                ValidationIssue(
                    field: field.name, code: .badUUID,
                    message: "\(field.name) must be a UUID as 8-4-4-4-12 hex digits (RFC 9562), got \"\(Self.excerpt(string(token, scanner)))\""))
            return nil

        case .timestamp:
            guard token.kind == .string else { return wrongType("an ISO 8601 timestamp string") }
            if let micros = withContent(of: token, scanner, { TimestampText.parseMicroseconds($0) }) {
                return .timestamp(micros: micros, start: contentStart, end: contentEnd, escaped: token.escaped)
            }
            issues.append(
                ValidationIssue(
                    field: field.name, code: .badTimestamp,
                    message: "\(field.name) must be an ISO 8601 date-time with a zone, like 2026-11-29T10:15:30.250Z, got \"\(Self.excerpt(string(token, scanner)))\""))
            return nil

        case .ipAddress:
            guard token.kind == .string else { return wrongType("an IP address string") }
            if withContent(of: token, scanner, { IPAddressText.isIPv4($0) || IPAddressText.isIPv6($0) }) {
                return .text(start: contentStart, end: contentEnd, escaped: token.escaped)
            }
            issues.append(
                ValidationIssue(
                    field: field.name, code: .badIP,
                    message: "\(field.name) must be an IPv4 or IPv6 address, got \"\(Self.excerpt(string(token, scanner)))\""))
            return nil

        case .object:
            guard token.kind == .object else { return wrongType("a JSON object") }
            return .object(start: contentStart, end: contentEnd)

        case .stringMap:
            guard token.kind == .object else { return wrongType("a JSON object of strings") }
            var inner = scanner
            inner.position = token.start + 1
            var ok = true
            // The object is known to be well-formed: walk its members.
            inner.skipWhitespace()
            if inner.current != UInt8(ascii: "}") {
                while true {
                    inner.skipWhitespace()
                    guard let key = try? inner.scanString() else { break }
                    try? inner.expect(UInt8(ascii: ":"), "':'")
                    guard let value = try? inner.scanValue(depth: 1) else { break }
                    if value.kind != .string {
                        ok = false
                        let name = "\(field.name).\(Self.excerpt(string(key, scanner)))"
                        issues.append(
                            ValidationIssue(field: name, code: .wrongType, message: "\(name) must be a string, got \(value.kind.name)"))
                    }
                    inner.skipWhitespace()
                    guard inner.current == UInt8(ascii: ",") else { break }
                    inner.position += 1
                }
            }
            return ok ? .object(start: contentStart, end: contentEnd) : nil

        case .jsonObject:
            switch token.kind {
            case .object:
                return .object(start: contentStart, end: contentEnd)
            case .string:
                embedded.removeAll(keepingCapacity: true)
                scanner.decodeString(from: token.start, to: token.end, into: &embedded)
                let problem: String? = embedded.withUnsafeBytes { bytes -> String? in
                    var inner = JSONScanner(bytes, maxDepth: limits.maxDepth - 1)
                    inner.skipWhitespace()
                    guard inner.current == UInt8(ascii: "{") else {
                        return "the string does not hold a JSON object"
                    }
                    do throws(JSONScanner.Failure) {
                        _ = try inner.scanValue(depth: 0)
                        inner.skipWhitespace()
                        return inner.atEnd ? nil : "unexpected data after the object in the string"
                    } catch {
                        switch error.reason {
                        case .tooDeep: return "the object in the string is nested too deeply"
                        case .malformed(let message): return "the string holds malformed JSON: \(message) (at byte \(error.offset))"
                        }
                    }
                }
                if let problem {
                    issues.append(
                        ValidationIssue(
                            field: field.name, code: .badEmbeddedJSON,
                            message: "\(field.name) must be a JSON object or a string holding one; \(problem)"))
                    return nil
                }
                return .object(start: 0, end: 0)  // the caller splices `embedded` in
            default:
                return wrongType("a JSON object (or a string holding one)")
            }
        }
    }

    // MARK: helpers

    /// Runs `body` on a string token's content, decoding escapes first when there are any.
    private func withContent<R>(
        of token: JSONScanner.Token, _ scanner: JSONScanner, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        if token.escaped {
            let decoded = scanner.decodeString(token)
            return decoded.withUnsafeBytes(body)
        }
        return body(UnsafeRawBufferPointer(start: scanner.base + token.start, count: token.end - token.start))
    }

    private func contentBytes(_ token: JSONScanner.Token, _ scanner: JSONScanner) -> ArraySlice<UInt8> {
        if token.escaped { return scanner.decodeString(token)[...] }
        return Array(UnsafeRawBufferPointer(start: scanner.base + token.start, count: token.end - token.start))[...]
    }

    private func string(_ token: JSONScanner.Token, _ scanner: JSONScanner) -> String {
        withContent(of: token, scanner) { String(decoding: $0, as: UTF8.self) }
    }

    private func append(_ scanner: JSONScanner, from start: Int, to end: Int, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeRawBufferPointer(start: scanner.base + start, count: end - start))
    }

    /// At most 64 characters of `text`, for messages that quote what was sent.
    static func excerpt(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(61)) + "..."
    }

    /// ", did you mean X?" for the known event type closest to `text`, when one is close.
    private func suggestion(for text: String) -> String {
        guard text.utf8.count <= 128 else { return "" }
        var best: (String, Int)? = nil
        for known in catalog.eventTypes {
            let d = Self.editDistance(Array(text.utf8), Array(known.utf8))
            if d <= max(2, known.utf8.count / 5), d < (best?.1 ?? .max) { best = (known, d) }
        }
        return best.map { ", did you mean \"\($0.0)\"?" } ?? ""
    }

    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...max(a.count, 1) where !a.isEmpty {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}
