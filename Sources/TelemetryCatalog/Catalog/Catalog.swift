/// The event catalog: the envelope every event shares and the definition of every event type.
///
/// The catalog is data. Validation, normalisation, JSON Schema, the docs and the CLI's `catalog`
/// output are all derived from it, so adding an event type, or a version 1.1 of one, means adding an
/// ``EventDefinition``: nothing in the pipeline changes.
public struct Catalog: Sendable {
    /// The fields every event carries (`event_id`, `event_type`, `timestamp`, …).
    public let envelope: [FieldDefinition]
    /// Every event type and version, in catalog order.
    public let events: [EventDefinition]
    /// How start and completion events pair up into operations.
    public let lifecycles: [LifecycleDefinition]

    /// The envelope names the validator itself relies on; a catalog must define them.
    static let structuralEnvelopeFields = ["event_id", "event_type", "timestamp", "tenant_id", "version"]

    // Compiled lookup structures, derived once from the definitions.
    let names: [String]
    let nameTable: ByteTable
    package let compiled: [CompiledEvent]
    let envelopeOnly: CompiledEvent
    let eventTypeTable: ByteTable
    let versionsByEventType: [[Int]]
    let slots: EnvelopeSlots

    /// Creates a catalog, checking that its definitions are consistent.
    ///
    /// - Throws: ``CatalogError`` when an event type and version appear twice, a field name
    ///   appears twice in one event, an alias names two fields, or the envelope lacks one of
    ///   `event_id`, `event_type`, `timestamp`, `tenant_id`, `version`; or when a lifecycle names an
    ///   event type or field the catalog lacks.
    public init(envelope: [FieldDefinition], events: [EventDefinition], lifecycles: [LifecycleDefinition] = [])
        throws(CatalogError)
    {
        self.envelope = envelope
        self.events = events
        self.lifecycles = lifecycles
        try Self.check(lifecycles: lifecycles, events: events, envelope: envelope)

        for name in Self.structuralEnvelopeFields where !envelope.contains(where: { $0.name == name }) {
            throw CatalogError("missing_envelope_field", "the envelope must define \(name)")
        }

        for field in envelope + events.flatMap(\.fields) {
            for name in [field.name] + field.aliases where !Self.isValidFieldName(name) {
                throw CatalogError("bad_field_name", "\(name) is not a valid field name (a letter, then letters, digits or _)")
            }
        }

        // Every distinct name, canonical ones first, then aliases mapping to their canonical id.
        var names: [String] = []
        var idByName: [String: Int] = [:]
        var aliasOf: [String: String] = [:]
        for field in envelope + events.flatMap(\.fields) {
            if idByName[field.name] == nil {
                idByName[field.name] = names.count
                names.append(field.name)
            }
            for alias in field.aliases {
                if let existing = aliasOf[alias], existing != field.name {
                    throw CatalogError("conflicting_alias", "\(alias) is an alias of both \(existing) and \(field.name)")
                }
                aliasOf[alias] = field.name
            }
        }
        for (alias, _) in aliasOf where idByName[alias] != nil {
            throw CatalogError("conflicting_alias", "\(alias) is both a field name and an alias")
        }
        var entries = names.enumerated().map { (key: Array($0.element.utf8), value: $0.offset) }
        entries += aliasOf.sorted(by: { $0.key < $1.key }).map { (key: Array($0.key.utf8), value: idByName[$0.value]!) }
        self.names = names
        self.nameTable = ByteTable(entries)

        self.envelopeOnly = try CompiledEvent(index: -1, definition: nil, envelope: envelope, idByName: idByName, nameCount: names.count)
        var compiled: [CompiledEvent] = []
        var versions: [[Int]] = []
        var typeIndex: [String: Int] = [:]
        var typeEntries: [(key: [UInt8], value: Int)] = []
        for event in events {
            let index = compiled.count
            compiled.append(
                try CompiledEvent(index: index, definition: event, envelope: envelope, idByName: idByName, nameCount: names.count))
            if let t = typeIndex[event.eventType] {
                if versions[t].contains(where: { compiled[$0].definition!.version == event.version }) {
                    throw CatalogError("duplicate_event", "\(event.eventType) version \(event.version) is defined twice")
                }
                versions[t].append(index)
            } else {
                typeIndex[event.eventType] = versions.count
                typeEntries.append((key: Array(event.eventType.utf8), value: versions.count))
                versions.append([index])
            }
        }
        self.compiled = compiled
        self.versionsByEventType = versions
        self.eventTypeTable = ByteTable(typeEntries)
        self.slots = EnvelopeSlots(envelope: envelope)
    }

    /// Field names start with a letter and hold only ASCII letters, digits and `_`, so that stores
    /// can use them as column names and keep names starting with `_` for their own columns.
    static func isValidFieldName(_ name: String) -> Bool {
        guard let first = name.utf8.first, (first | 0x20) >= UInt8(ascii: "a"), (first | 0x20) <= UInt8(ascii: "z") else {
            return false
        }
        return name.utf8.allSatisfy { b in
            ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")) || isDigit(b) || b == UInt8(ascii: "_")
        }
    }

    /// The distinct event types, in catalog order.
    public var eventTypes: [String] {
        versionsByEventType.map { compiled[$0[0]].definition!.eventType }
    }

    /// The distinct topics, in catalog order.
    public var topics: [Topic] {
        var seen: Set<Topic> = []
        return events.map(\.topic).filter { seen.insert($0).inserted }
    }

    /// Every version of `eventType`, oldest first as listed.
    public func definitions(of eventType: String) -> [EventDefinition] {
        guard let t = eventTypeTable.lookup(Array(eventType.utf8)) else { return [] }
        return versionsByEventType[t].map { compiled[$0].definition! }
    }

    /// The definition of `eventType` at `version`, if the catalog has it.
    public func definition(of eventType: String, version: String) -> EventDefinition? {
        definitions(of: eventType).first { $0.version == version }
    }

    /// The latest (last listed) version of `eventType`, if the catalog has it.
    public func latest(_ eventType: String) -> EventDefinition? {
        definitions(of: eventType).last
    }

    /// All fields of an event: the envelope's, overridden where the event redefines one, then the
    /// event's own, in that order. This is the list a validated event's values follow.
    public func allFields(of definition: EventDefinition) -> [FieldDefinition] {
        CompiledEvent.merge(envelope: envelope, fields: definition.fields)
    }

    /// The canonical name of a field name or alias (`resource_Id` → `resource_id`), or `nil` when the
    /// catalog has no such field.
    public func canonicalFieldName(_ name: String) -> String? {
        nameTable.lookup(Array(name.utf8)).map { names[$0] }
    }

    /// Every distinct field name of the catalog (envelope and events), canonical names only.
    public var fieldNames: [String] { names }

    /// The versions any event type is defined at.
    public var versions: [String] {
        var seen: Set<String> = []
        return events.map(\.version).filter { seen.insert($0).inserted }
    }
}

/// Indices of the structural envelope fields; the same in every compiled event because the
/// envelope always comes first and overrides keep their place.
struct EnvelopeSlots: Sendable {
    let eventID: Int
    let eventType: Int
    let timestamp: Int
    let tenantID: Int
    let version: Int

    init(envelope: [FieldDefinition]) {
        func slot(_ name: String) -> Int { envelope.firstIndex { $0.name == name }! }
        eventID = slot("event_id")
        eventType = slot("event_type")
        timestamp = slot("timestamp")
        tenantID = slot("tenant_id")
        version = slot("version")
    }
}

/// What the validator needs of a field, as plain values: checking a field copies no strings.
struct FieldCheck: Sendable {
    let kind: FieldType.Kind
    let isRequired: Bool
    let minimum: Int64?
}

/// An event definition prepared for validation: its merged field list and a slot for every name.
///
/// A class, so that the validator and every ``NormalizedEvent`` share one instance by reference.
package final class CompiledEvent: Sendable {
    /// The position in `Catalog.compiled`, or -1 for the envelope-only definition.
    package let index: Int
    package let definition: EventDefinition?
    package let fields: [FieldDefinition]
    let checks: [FieldCheck]
    /// `"name":` (the canonical name) of every slot, one after another, as the normalised event
    /// writes it before each member's value, and where each starts (one more entry than slots):
    /// one append a member from one buffer, instead of four and a reference to each name's own
    /// array.
    let memberPrefixes: [UInt8]
    let memberPrefixStarts: [Int]
    /// For each catalog name id, the slot of that field in `fields`, or -1 when the event lacks it.
    let slotByName: [Int32]

    init(index: Int, definition: EventDefinition?, envelope: [FieldDefinition], idByName: [String: Int], nameCount: Int)
        throws(CatalogError)
    {
        self.index = index
        self.definition = definition
        var seen: Set<String> = []
        for field in definition?.fields ?? [] where !seen.insert(field.name).inserted {
            throw CatalogError("duplicate_field", "\(definition!.eventType) lists \(field.name) twice")
        }
        let fields = Self.merge(envelope: envelope, fields: definition?.fields ?? [])
        self.fields = fields
        self.checks = fields.map { FieldCheck(kind: $0.type.kind, isRequired: $0.isRequired, minimum: $0.minimum) }
        var prefixes: [UInt8] = []
        var prefixStarts = [0]
        for field in fields {
            prefixes += [UInt8(ascii: "\"")] + Array(field.name.utf8) + Array(#"":"#.utf8)
            prefixStarts.append(prefixes.count)
        }
        self.memberPrefixes = prefixes
        self.memberPrefixStarts = prefixStarts
        var slotByName = [Int32](repeating: -1, count: nameCount)
        for (slot, field) in fields.enumerated() {
            slotByName[idByName[field.name]!] = Int32(slot)
        }
        self.slotByName = slotByName
    }

    static func merge(envelope: [FieldDefinition], fields: [FieldDefinition]) -> [FieldDefinition] {
        var merged = envelope
        for field in fields {
            if let i = merged.firstIndex(where: { $0.name == field.name }) {
                merged[i] = field
            } else {
                merged.append(field)
            }
        }
        return merged
    }
}
