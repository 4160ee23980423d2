extension Catalog {
    /// The UUID text pattern; stated beside `format: uuid` because validators differ in how much
    /// of RFC 9562's text they accept (braces, URNs, missing dashes) and ours accepts exactly this.
    static let uuidPattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

    /// The JSON Schema (draft 2020-12) of one event definition.
    ///
    /// It agrees with ``EventValidator`` on everything JSON Schema can express. What it cannot:
    /// that a `json_object` string holds an object, that member names are unique, and the
    /// nesting-depth limit; the validator also checks those.
    public func jsonSchema(for definition: EventDefinition) -> JSONValue {
        var properties: [(String, JSONValue)] = []
        var required: [JSONValue] = []
        var constraints: [JSONValue] = []
        for field in allFields(of: definition) {
            var schema: JSONValue
            switch field.name {
            case "event_type": schema = ["const": .string(definition.eventType)]
            case "version": schema = ["const": .string(definition.version)]
            default: schema = Self.schema(of: field)
            }
            schema["description"] = .string(field.description)
            for name in [field.name] + field.aliases { properties.append((name, schema)) }
            guard field.isRequired else { continue }
            if field.aliases.isEmpty {
                required.append(.string(field.name))
            } else {
                constraints.append(["anyOf": .array(([field.name] + field.aliases).map { ["required": [.string($0)]] })])
            }
        }
        for field in allFields(of: definition) where !field.aliases.isEmpty {
            for alias in field.aliases {
                constraints.append(["not": ["required": [.string(field.name), .string(alias)]]])
            }
        }
        var schema: JSONValue = [
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": .string("\(definition.eventType) \(definition.version)"),
            "description": .string("\(definition.title). Topic: \(definition.topic.name)."),
            "type": "object",
            "properties": .object(properties),
            "required": .array(required),
        ]
        if !constraints.isEmpty { schema["allOf"] = .array(constraints) }
        return schema
    }

    /// The JSON Schema of `eventType`: the one version's schema, or `anyOf` the versions' schemas.
    public func jsonSchema(of eventType: String) -> JSONValue? {
        let versions = definitions(of: eventType)
        guard let first = versions.first else { return nil }
        if versions.count == 1 { return jsonSchema(for: first) }
        return [
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": .string(eventType),
            "anyOf": .array(versions.map { jsonSchema(for: $0) }),
        ]
    }

    /// Every event type mapped to its JSON Schema, as `telemetry catalog --format json-schema` prints it.
    public func jsonSchemas() -> JSONValue {
        .object(eventTypes.map { ($0, jsonSchema(of: $0)!) })
    }

    static func schema(of field: FieldDefinition) -> JSONValue {
        var schema: JSONValue
        switch field.type.kind {
        case .string: schema = ["type": "string"]
        case .integer:
            schema = ["type": "integer", "minimum": .integer(field.minimum ?? Int64.min), "maximum": .integer(Int64.max)]
        case .number:
            // Bounds keep out what overflows a Double (JSON parsers read 1e400 as infinity).
            schema = [
                "type": "number", "minimum": field.minimum.map { .integer($0) } ?? .number(-Double.greatestFiniteMagnitude),
                "maximum": .number(Double.greatestFiniteMagnitude),
            ]
        case .bool: schema = ["type": "boolean"]
        case .uuid: schema = ["type": "string", "format": "uuid", "pattern": .string(uuidPattern)]
        case .timestamp: schema = ["type": "string", "format": "date-time"]
        case .ipAddress:
            // The pattern refuses IPv6 zone ids (`%eth0`), which some `ipv6` format checks allow.
            schema = ["type": "string", "anyOf": [["format": "ipv4"], ["format": "ipv6"]], "pattern": "^[0-9A-Fa-f:.]+$"]
        case .jsonObject:
            schema = ["anyOf": [["type": "object"], ["type": "string", "contentMediaType": "application/json"]]]
        case .object: schema = ["type": "object"]
        case .stringMap: schema = ["type": "object", "additionalProperties": ["type": "string"]]
        }
        guard !field.isRequired else { return schema }
        // Optional fields may be sent as null.
        if case .string(let type)? = schema["type"] {
            schema["type"] = [.string(type), "null"]
        } else if case .array(var choices)? = schema["anyOf"] {
            choices.append(["type": "null"])
            schema["anyOf"] = .array(choices)
        }
        return schema
    }
}
