import TelemetryCatalog

/// The OpenAPI 3.1 description of the HTTP API v1, served at `/openapi.json`.
enum OpenAPIDocument {
    static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }

    static func jsonContent(_ schema: JSONValue) -> JSONValue { ["application/json": ["schema": schema]] }

    static func response(_ description: String, _ schema: JSONValue? = nil) -> JSONValue {
        var r: JSONValue = ["description": .string(description)]
        if let schema { r["content"] = jsonContent(schema) }
        return r
    }

    static func errorResponse(_ description: String) -> JSONValue { response(description, ref("Error")) }

    static func query(_ name: String, _ description: String, _ schema: JSONValue = ["type": "string"]) -> JSONValue {
        ["name": .string(name), "in": "query", "required": false, "description": .string(description), "schema": schema]
    }

    static let eventFilters: [JSONValue] = [
        query("event_type", "Only this event type, e.g. xumi.generation.start; a type the catalog does not have is a 400."),
        query("topic", "Only events of this topic, e.g. xumi_task; a topic the catalog does not have is a 400."),
        query("tenant_id", "Only this tenant's events.", ["type": "string", "format": "uuid"]),
        query("source", "Only events from this emitting service."),
        query("since", "Events whose timestamp is at or after this instant (ISO 8601 with a zone).", ["type": "string", "format": "date-time"]),
        query("until", "Events whose timestamp is before this instant (ISO 8601 with a zone).", ["type": "string", "format": "date-time"]),
        [
            "name": "filters", "in": "query", "required": false, "style": "form", "explode": true,
            "description": "Any catalog field as field=value (e.g. model=sdxl-1.0, result=false); the value is read per the field's type.",
            "schema": ["type": "object", "additionalProperties": ["type": "string"]],
        ],
    ]

    static let paging: [JSONValue] = [
        query("limit", "Page size, 1-1000 (default 100).", ["type": "integer", "minimum": 1, "maximum": 1000]),
        query("cursor", "next_cursor of the previous page."),
    ]

    /// The document, with what every `/v1` route shares (the API key, and its 401, 403 and 429)
    /// added to each of their operations.
    static let document: JSONValue = {
        guard case .object(var members) = base, let pathsIndex = members.firstIndex(where: { $0.0 == "paths" }),
            case .object(var paths) = members[pathsIndex].1
        else { fatalError("the OpenAPI document has paths") }
        for (p, (path, item)) in paths.enumerated() {
            guard case .object(var operations) = item else { continue }
            for (o, (method, operation)) in operations.enumerated() {
                var operation = operation
                if path.hasPrefix("/v1/") {
                    operation["security"] = [["apiKey": []]]
                    var responses = operation["responses"] ?? [:]
                    responses["401"] = errorResponse("No API key, or an unknown or revoked one (once any key exists, every /v1 route needs one).")
                    responses["403"] = errorResponse("The key lacks the route's scope, or asks for another tenant's data.")
                    let ingest = path == "/v1/events" && method == "post"
                    var tooMany = errorResponse(
                        ingest
                            ? "The key is over its rate limit (rate_limited), or the collector is past what it can take now: its queue of events waiting for the store is full, or too many bytes of bodies are being received or validated (overloaded: answered on the request's head when it can be, before its body is read); nothing of the request was taken; retry after Retry-After-Ms milliseconds (overloaded), else Retry-After seconds."
                            : "The key is over its rate limit; retry after Retry-After seconds.")
                    var headers: JSONValue = [
                        "Retry-After": [
                            "description": "Seconds to wait before sending the request again (whole seconds, rounded up).",
                            "schema": ["type": "integer", "minimum": 1],
                        ]
                    ]
                    if ingest {
                        headers["Retry-After-Ms"] = [
                            "description": "With overloaded: this sender's turn, in milliseconds. The collector gives the senders it refuses successive turns, at the rate it has been taking requests, so that they do not all come back at once; a sender that can wait milliseconds should wait this rather than Retry-After.",
                            "schema": ["type": "integer", "minimum": 0],
                        ]
                    }
                    tooMany["headers"] = headers
                    responses["429"] = tooMany
                    operation["responses"] = responses
                } else {
                    operation["security"] = []
                }
                operations[o] = (method, operation)
            }
            paths[p] = (path, .object(operations))
        }
        members[pathsIndex] = ("paths", .object(paths))
        return .object(members)
    }()

    static let apiKeySchema: JSONValue = [
        "type": "object", "required": ["key_id", "tenant_id", "scopes", "name", "created_at", "revoked_at"],
        "properties": [
            "key_id": ["type": "string", "pattern": "^[0-9a-f]{16}$"],
            "tenant_id": ["type": ["string", "null"], "format": "uuid", "description": "null: an admin key for every tenant."],
            "scopes": ["type": "array", "items": ["type": "string", "enum": ["ingest", "read", "admin"]]],
            "name": ["type": ["string", "null"]],
            "created_at": ["type": "string", "format": "date-time"],
            "revoked_at": ["type": ["string", "null"], "format": "date-time"],
        ],
    ]

    static let base: JSONValue = [
        "openapi": "3.1.0",
        "info": [
            "title": "xumi telemetry collector",
            "version": "1.0.0",
            "description": "Ingest, validation and query of the xumi platform's telemetry events. Events are flat JSON objects: the envelope plus the fields of their event_type (GET /v1/catalog).",
        ],
        "paths": [
            "/v1/events": [
                "post": [
                    "summary": "Ingest events",
                    "description": "A JSON object, a JSON array of objects, or NDJSON (application/x-ndjson), optionally gzip-encoded. Valid events are stored; invalid ones are rejected with every reason and kept in the rejected store. The 200 is sent only after the accepted events are durable.",
                    "operationId": "ingestEvents",
                    "parameters": [
                        ["name": "Content-Encoding", "in": "header", "required": false, "schema": ["type": "string", "enum": ["gzip", "identity"]]],
                        [
                            "name": "Telemetry-Batch", "in": "header", "required": false,
                            "description": "A name for this request's batch (unique among the sender's recent batches), for a later request to follow with Telemetry-After.",
                            "schema": ["type": "string", "pattern": "^[!-~]{1,128}$"],
                        ],
                        [
                            "name": "Telemetry-After", "in": "header", "required": false,
                            "description": "The Telemetry-Batch of an earlier request of the same sender (the same API key) that must be stored first. This request is validated at once and stored only after that batch has been stored; if that batch was not stored (it failed or was refused, or did not arrive and finish within the collector's --order-wait, 10 s by default), this one is answered 409 and nothing of it is stored.",
                            "schema": ["type": "string", "pattern": "^[!-~]{1,128}$"],
                        ],
                    ],
                    "requestBody": [
                        "required": true,
                        "content": [
                            "application/json": ["schema": ["oneOf": [ref("Event"), ["type": "array", "items": ref("Event")]]]],
                            "application/x-ndjson": ["schema": ["type": "string", "description": "One event object per line."]],
                        ],
                    ],
                    "responses": [
                        "200": response("What became of each event.", ref("IngestResponse")),
                        "400": errorResponse("The body is not JSON at all, or not valid gzip (not_json, bad_gzip), or a Telemetry-Batch or Telemetry-After header is malformed (bad_header)."),
                        "409": errorResponse("The batch named by Telemetry-After was not stored (out_of_order); nothing of this request was stored. Send that batch first, then this one."),
                        "413": errorResponse("The body, or its number of events, is over the limit; or nothing in it could be read because of a limit (event size, string length, nesting depth)."),
                        "415": errorResponse("An unsupported Content-Encoding."),
                        "503": errorResponse("Nothing could be made durable; nothing was stored. Retry after Retry-After seconds."),
                    ],
                ],
                "get": [
                    "summary": "List events, newest first",
                    "operationId": "listEvents",
                    "parameters": .array(eventFilters + paging),
                    "responses": [
                        "200": response("A page of events.", ref("EventPage")),
                        "400": errorResponse("A filter the API cannot use."),
                        "503": errorResponse("The store cannot be read."),
                    ],
                ],
            ],
            "/v1/events/{event_id}": [
                "get": [
                    "summary": "One event by id",
                    "operationId": "getEvent",
                    "parameters": [["name": "event_id", "in": "path", "required": true, "schema": ["type": "string", "format": "uuid"]]],
                    "responses": [
                        "200": response("The stored (normalised) event.", ref("Event")),
                        "400": errorResponse("The id is not a UUID."),
                        "404": errorResponse("No such event."),
                    ],
                ]
            ],
            "/v1/rejected": [
                "get": [
                    "summary": "List rejected events, newest first",
                    "operationId": "listRejected",
                    "parameters": .array([
                        query("tenant_id", "Only this tenant's rejections."), query("event_type", "Only this event type."),
                        query("code", "Only rejections with this error code, e.g. bad_uuid."),
                    ] + paging),
                    "responses": [
                        "200": response("A page of rejected events.", ref("RejectedPage")),
                        "400": errorResponse("A filter the API cannot use."),
                    ],
                ]
            ],
            "/v1/stream": [
                "get": [
                    "summary": "Follow new events (server-sent events)",
                    "description": "Each event is sent as `id: <sequence>`, `event: event`, `data: <event JSON>`. Reconnect with Last-Event-ID to miss nothing.",
                    "operationId": "streamEvents",
                    "parameters": .array(
                        eventFilters + [
                            ["name": "Last-Event-ID", "in": "header", "required": false, "schema": ["type": "string"]]
                        ]),
                    "responses": [
                        "200": ["description": "An endless text/event-stream.", "content": ["text/event-stream": ["schema": ["type": "string"]]]],
                        "400": errorResponse("A filter the API cannot use."),
                    ],
                ]
            ],
            "/v1/catalog": [
                "get": [
                    "summary": "The event catalog",
                    "operationId": "getCatalog",
                    "responses": ["200": response("Every event type with its topic, version and fields.", ["type": "object"])],
                ]
            ],
            "/v1/catalog/{event_type}": [
                "get": [
                    "summary": "The JSON Schema of one event type",
                    "operationId": "getEventSchema",
                    "parameters": [["name": "event_type", "in": "path", "required": true, "schema": ["type": "string"]]],
                    "responses": [
                        "200": response("A JSON Schema (draft 2020-12).", ["type": "object"]),
                        "404": errorResponse("No such event type."),
                    ],
                ]
            ],
            "/v1/operations": [
                "get": [
                    "summary": "List operations (paired start and completion events), newest start first",
                    "description": "Kinds and their pairing rules: GET /v1/catalog (lifecycles). A running operation older than its kind's timeout is reported as stuck; a late completion still completes it. While only the completion is known, started_at and duration_ms are null.",
                    "operationId": "listOperations",
                    "parameters": .array([
                        query("kind", "Only this kind.", ["type": "string", "enum": .array(Catalog.builtin.lifecycles.map { .string($0.kind) })]),
                        query("status", "Only this status.", ["type": "string", "enum": ["running", "succeeded", "failed", "stuck"]]),
                        query("tenant_id", "Only this tenant's operations.", ["type": "string", "format": "uuid"]),
                        query("key", "Only operations with this key (task_id, resource_id, start event id)."),
                        query("since", "Operations started at or after this instant.", ["type": "string", "format": "date-time"]),
                        query("until", "Operations started before this instant.", ["type": "string", "format": "date-time"]),
                        [
                            "name": "attributes", "in": "query", "required": false, "style": "form", "explode": true,
                            "description": "Any attribute of the kind as name=value (e.g. model=sdxl-1.0, storage_type=ceph).",
                            "schema": ["type": "object", "additionalProperties": ["type": "string"]],
                        ],
                    ] + paging),
                    "responses": [
                        "200": response("A page of operations.", ref("OperationPage")),
                        "400": errorResponse("A filter the API cannot use."),
                        "503": errorResponse("The store cannot be read."),
                    ],
                ]
            ],
            "/v1/stats": [
                "get": [
                    "summary": "Aggregates of events or operations, grouped and bucketed",
                    "description": "At most one of event_type and operation; with neither, events of every type (fields: the envelope's, and topic). count counts rows; sum, avg, min, max, last (the newest row's value) and percentiles (pN, exact, nearest rank) read a numeric field; rate is the share of true of a bool field. For operations field defaults to duration_ms; duration_s and duration_h are the same in seconds and hours, and success (true when succeeded, false when failed) is a bool field.",
                    "operationId": "stats",
                    "parameters": .array([
                        query("event_type", "Aggregate events of this type."),
                        query("operation", "Aggregate operations of this kind.", ["type": "string", "enum": .array(Catalog.builtin.lifecycles.map { .string($0.kind) })]),
                        query("field", "The field aggregated."),
                        query("agg", "Comma-separated aggregates: count, sum, avg, min, max, last, rate, p50, p95, p99, any pN (default count)."),
                        query("group_by", "Comma-separated fields to group by."),
                        query("since", "Rows at or after this instant.", ["type": "string", "format": "date-time"]),
                        query("until", "Rows before this instant.", ["type": "string", "format": "date-time"]),
                        query("interval", "Time bucket width: a number and s, m, h or d (e.g. 1m, 1h).", ["type": "string", "pattern": "^[1-9][0-9]*[smhd]$"]),
                        query("tenant_id", "Only this tenant.", ["type": "string", "format": "uuid"]),
                        [
                            "name": "filters", "in": "query", "required": false, "style": "form", "explode": true,
                            "description": "field=value filters: catalog fields for events; attributes and status for operations.",
                            "schema": ["type": "object", "additionalProperties": ["type": "string"]],
                        ],
                    ]),
                    "responses": [
                        "200": response("One entry per group and bucket.", ref("StatsResponse")),
                        "400": errorResponse("An unknown type, kind or field, or an aggregate the field's type does not allow."),
                        "503": errorResponse("The store cannot be read."),
                    ],
                ]
            ],
            "/v1/access": [
                "get": [
                    "summary": "Who am I: the presented key and what it may do",
                    "description": "Any valid key may ask. Without keys (an open collector on loopback) keys_required is false and every scope is granted.",
                    "operationId": "getAccess",
                    "responses": [
                        "200": response(
                            "The key's id, tenant and scopes.",
                            [
                                "type": "object", "required": ["keys_required", "key_id", "tenant_id", "scopes", "all_tenants"],
                                "properties": [
                                    "keys_required": ["type": "boolean"], "key_id": ["type": ["string", "null"]],
                                    "tenant_id": ["type": ["string", "null"], "format": "uuid"],
                                    "scopes": ["type": "array", "items": ["type": "string", "enum": ["ingest", "read", "admin"]]],
                                    "all_tenants": ["type": "boolean", "description": "Whether the key sees every tenant (admin, or no keys)."],
                                ],
                            ])
                    ],
                ]
            ],
            "/v1/keys": [
                "get": [
                    "summary": "List API keys (admin)",
                    "description": "Every key, revoked ones included; never their secrets.",
                    "operationId": "listKeys",
                    "parameters": [query("tenant_id", "Only this tenant's keys.", ["type": "string", "format": "uuid"])],
                    "responses": [
                        "200": response("The keys.", ["type": "object", "required": ["keys"], "properties": ["keys": ["type": "array", "items": ref("APIKey")]]]),
                        "503": errorResponse("The key file cannot be read."),
                    ],
                ],
                "post": [
                    "summary": "Create an API key (admin)",
                    "description": "The answer's `key` is the key itself, shown this once: only its hash is kept.",
                    "operationId": "createKey",
                    "requestBody": [
                        "required": true,
                        "content": jsonContent([
                            "type": "object", "required": ["scopes"],
                            "properties": [
                                "tenant_id": ["type": "string", "format": "uuid", "description": "Required unless scopes has admin."],
                                "scopes": ["type": "array", "minItems": 1, "items": ["type": "string", "enum": ["ingest", "read", "admin"]]],
                                "name": ["type": "string"],
                            ],
                        ]),
                    ],
                    "responses": [
                        "201": response("The new key.", ["allOf": [ref("APIKey"), ["type": "object", "required": ["key"], "properties": ["key": ["type": "string"]]]]]),
                        "400": errorResponse("Unknown scopes, or no tenant for a key without admin."),
                        "503": errorResponse("The key file cannot be written."),
                    ],
                ],
            ],
            "/v1/keys/{key_id}": [
                "delete": [
                    "summary": "Revoke an API key at once (admin)",
                    "operationId": "revokeKey",
                    "parameters": [["name": "key_id", "in": "path", "required": true, "schema": ["type": "string"]]],
                    "responses": [
                        "200": response("The revoked key.", ref("APIKey")),
                        "404": errorResponse("No such key."),
                        "503": errorResponse("The key file cannot be written."),
                    ],
                ]
            ],
            "/metrics": [
                "get": [
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": [
                        "200": ["description": "The Prometheus text format.", "content": ["text/plain": ["schema": ["type": "string"]]]],
                        "503": errorResponse("The store cannot be read."),
                    ],
                ]
            ],
            "/": [
                "get": [
                    "summary": "The dashboard",
                    "description": "A self-contained HTML page (no outside resources) that draws SVG charts from this API. Query parameters tenant_id, range (e.g. 1h), since and until set its filters.",
                    "operationId": "dashboard",
                    "responses": ["200": ["description": "The dashboard.", "content": ["text/html": ["schema": ["type": "string"]]]]],
                ]
            ],
            "/healthz": [
                "get": ["summary": "Liveness", "operationId": "healthz", "responses": ["200": response("Alive.", ref("Status"))]]
            ],
            "/readyz": [
                "get": [
                    "summary": "Readiness: the store can be read",
                    "operationId": "readyz",
                    "responses": ["200": response("Ready.", ref("Status")), "503": errorResponse("The store cannot be read.")],
                ]
            ],
            "/openapi.json": [
                "get": ["summary": "This document", "operationId": "openapi", "responses": ["200": response("OpenAPI 3.1.", ["type": "object"])]]
            ],
        ],
        "components": [
            "securitySchemes": [
                "apiKey": [
                    "type": "http", "scheme": "bearer",
                    "description": "An API key (telemetry keys create, or POST /v1/keys): Authorization: Bearer xtk_<id>_<secret>. Required on every /v1 route once any key exists; until then the collector serves loopback only, without keys.",
                ]
            ],
            "schemas": [
                "Event": [
                    "type": "object",
                    "description": "A telemetry event: envelope plus the fields of its event_type, flat. Per-type schemas: GET /v1/catalog/{event_type}.",
                    "required": ["event_id", "event_type", "timestamp", "tenant_id", "source", "version"],
                    "properties": [
                        "event_id": ["type": "string", "format": "uuid"], "event_type": ["type": "string"],
                        "timestamp": ["type": "string", "format": "date-time"], "tenant_id": ["type": "string", "format": "uuid"],
                        "user_id": ["type": ["string", "null"]], "session_id": ["type": ["string", "null"], "format": "uuid"],
                        "source": ["type": "string"], "version": ["type": "string"],
                        "metadata": ["type": ["object", "null"]],
                        "tags": ["type": ["object", "null"], "additionalProperties": ["type": "string"]],
                    ],
                    "additionalProperties": true,
                ],
                "ValidationIssue": [
                    "type": "object", "required": ["field", "code", "message"],
                    "properties": [
                        "field": ["type": "string"],
                        "code": ["type": "string", "enum": .array(ValidationIssue.Code.all.map { .string($0.rawValue) })],
                        "message": ["type": "string"],
                    ],
                ],
                "IngestResponse": [
                    "type": "object", "required": ["accepted", "duplicates", "rejected"],
                    "properties": [
                        "accepted": ["type": "integer", "minimum": 0],
                        "duplicates": ["type": "integer", "minimum": 0],
                        "rejected": [
                            "type": "array",
                            "items": [
                                "type": "object", "required": ["index", "event_id", "errors"],
                                "properties": [
                                    "index": ["type": "integer", "minimum": 0],
                                    "event_id": ["type": ["string", "null"]],
                                    "errors": ["type": "array", "items": ref("ValidationIssue")],
                                ],
                            ],
                        ],
                    ],
                ],
                "EventPage": [
                    "type": "object", "required": ["events", "next_cursor"],
                    "properties": [
                        "events": ["type": "array", "items": ref("Event")], "next_cursor": ["type": ["string", "null"]],
                    ],
                ],
                "RejectedEvent": [
                    "type": "object", "required": ["received_at", "request_id", "index", "event_type", "event_id", "errors", "raw"],
                    "properties": [
                        "received_at": ["type": "string", "format": "date-time"], "request_id": ["type": "string"],
                        "index": ["type": "integer"], "event_type": ["type": ["string", "null"]],
                        "event_id": ["type": ["string", "null"]], "errors": ["type": "array", "items": ref("ValidationIssue")],
                        "raw": ["type": "string", "description": "The bytes as received (UTF-8, invalid sequences replaced)."],
                    ],
                ],
                "RejectedPage": [
                    "type": "object", "required": ["rejected", "next_cursor"],
                    "properties": [
                        "rejected": ["type": "array", "items": ref("RejectedEvent")], "next_cursor": ["type": ["string", "null"]],
                    ],
                ],
                "Operation": [
                    "type": "object",
                    "required": ["kind", "key", "tenant_id", "status", "started_at", "completed_at", "duration_ms", "start_event_id", "complete_event_id", "attributes"],
                    "properties": [
                        "kind": ["type": "string"], "key": ["type": ["string", "null"]],
                        "tenant_id": ["type": "string", "format": "uuid"],
                        "status": ["type": "string", "enum": ["running", "succeeded", "failed", "stuck"]],
                        "started_at": ["type": ["string", "null"], "format": "date-time"],
                        "completed_at": ["type": ["string", "null"], "format": "date-time"],
                        "duration_ms": ["type": ["number", "null"]],
                        "start_event_id": ["type": ["string", "null"], "format": "uuid"],
                        "complete_event_id": ["type": ["string", "null"], "format": "uuid"],
                        "attributes": ["type": "object", "description": "The kind's attributes and spans (e.g. model, storage_type, queue_ms) that have a value."],
                    ],
                ],
                "OperationPage": [
                    "type": "object", "required": ["operations", "next_cursor"],
                    "properties": [
                        "operations": ["type": "array", "items": ref("Operation")], "next_cursor": ["type": ["string", "null"]],
                    ],
                ],
                "StatsResponse": [
                    "type": "object", "required": ["groups"],
                    "properties": [
                        "groups": [
                            "type": "array",
                            "items": [
                                "type": "object", "required": ["key", "count"],
                                "properties": [
                                    "key": ["type": "object", "description": "The group's value of each group_by field."],
                                    "bucket": ["type": "string", "format": "date-time", "description": "Start of the time bucket, when interval is given."],
                                    "count": ["type": "integer", "minimum": 0],
                                ],
                                "additionalProperties": ["type": ["number", "null"], "description": "Each aggregate asked for, by name (p99, avg, rate, …)."],
                            ],
                        ]
                    ],
                ],
                "Status": ["type": "object", "required": ["status"], "properties": ["status": ["type": "string"]]],
                "APIKey": apiKeySchema,
                "Error": [
                    "type": "object", "required": ["error"],
                    "properties": [
                        "error": [
                            "type": "object", "required": ["code", "message"],
                            "properties": ["code": ["type": "string"], "message": ["type": "string"]],
                        ]
                    ],
                ],
            ]
        ],
    ]
}
