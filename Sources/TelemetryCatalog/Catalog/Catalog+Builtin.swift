// The platform's 19 event types, transcribed from `spec/telemetry-events.txt` with one decision per
// field. The rule behind the decisions: a field is required when the event cannot be identified,
// paired with its other half, or judged (its outcome) without it; everything descriptive is
// optional, so that a producer missing an environment variable or a detail is not rejected.

/// Why a field is required or optional: the recorded decisions, shared by the fields they apply to.
enum Reason {
    static let identity = "Identifies the event; dedupe and lookups need it."
    static let type = "Selects the event's definition; nothing can be checked without it."
    static let occurredAt = "Dates the event; every time filter, bucket and retention uses it."
    static let tenant = "Every event belongs to a tenant: API keys, queries and retention are per tenant."
    static let version = "Selects the catalog version the event is checked against."
    static let sourceService = "Names the emitting service; without it a bad event cannot be traced back."
    static let noUser = "System events (agent start, policy loads) have no user."
    static let noSession = "Only interactive requests have a session."
    static let freeForm = "Free-form context; producers attach it when they have it."
    static let pairing = "Links a start to its completion; the lifecycle operation is keyed on it."
    static let pairingFallback = "The spec pairs deploys on it and falls back to resource_id when absent."
    static let outcome = "The outcome is the point of the event: success rates and failures are computed from it."
    static let model = "Every xumi question is asked per model (load speed, latency, success)."
    static let node = "Says which GPU node ran the work; per-node questions need it and the SDK always knows it."
    static let environment = "Read from environment variables that a node may not set; absence must not lose the event."
    static let domainTime = "The envelope timestamp already dates the event; created is the domain time when it differs."
    static let descriptive = "Descriptive detail; useful when present, not needed to interpret the event."
    static let privacy = "May be withheld by the producer or a privacy policy (prompts, addresses)."
    static let measurement = "A measurement that a failed or cancelled operation may not have."
    static let hardware = "Deploy time and GPU hours are reported per hardware type."
    static let podIdentity = "Identifies the pod: deploy, free and lifetime operations are keyed on it."
    static let decisionSubject = "A policy decision is meaningless without who asked, for what action, on what resource."
    static let rule = "Identifies the rule and revision the change applies to."
    static let workflow = "Identifies the workflow process created."
    static let workflowUser = "The spec lists the creating user for this event; its type here is the spec's plain string."
    static let generationUser = "The spec lists the requesting user for this event."
    static let assetURL = "Identifies the asset acted on."
}

extension Catalog {
    /// The catalog of the platform's events, version 1.0 of all 19 types on 7 topics.
    public static let builtin: Catalog = {
        do {
            return try Catalog(envelope: builtinEnvelope, events: builtinEvents, lifecycles: builtinLifecycles)
        } catch {
            fatalError("the built-in catalog is inconsistent: \(error)")
        }
    }()

    /// The platform's operations: which start and completion events pair up, and by what.
    static let builtinLifecycles: [LifecycleDefinition] = [
        LifecycleDefinition(
            kind: "weights_load", title: "Loading a model's weights onto a node",
            start: "xumi.weights.load.start", complete: "xumi.weights.load.complete",
            keys: [.init(start: "event_id", complete: "origin_event_id")],
            attributes: ["model", "url", "node_id", "vm_type", "host_name", "storage_type", "storage_size", "speed", "size"],
            stuckAfterSeconds: 30 * 60),
        LifecycleDefinition(
            kind: "generation", title: "A generation task, from its start to its result",
            start: "xumi.generation.start", complete: "xumi.generation.complete",
            keys: [.init(start: "task_id", complete: "task_id")],
            attributes: ["model", "node_id", "user_id", "vm_type", "host_name", "storage_type", "detail"],
            spans: [
                .init("queue_ms", from: .start("timestamp"), to: .completion("start_generation"),
                      description: "Time from the start event to the moment generation actually began"),
                .init("run_ms", from: .completion("start_generation"), to: .completion("timestamp"),
                      description: "Time from the moment generation began to its completion"),
            ],
            stuckAfterSeconds: 15 * 60),
        LifecycleDefinition(
            kind: "pod_deploy", title: "Deploying a GPU pod",
            start: "kuber.deploy.start", complete: "kuber.deploy.start.complete",
            keys: [.init(start: "event_id", complete: "prevision_event_id"), .init(start: "resource_id", complete: "resource_id")],
            displayKey: 1,
            attributes: ["hardware", "hardware_template_id", "node_id", "service", "description"],
            stuckAfterSeconds: 15 * 60),
        LifecycleDefinition(
            kind: "pod_free", title: "Freeing a GPU pod",
            start: "kuber.deploy.free", complete: "kuber.deploy.free.complete",
            keys: [.init(start: "resource_id", complete: "resource_id")],
            attributes: ["node_id", "service", "eval_ms"],
            stuckAfterSeconds: 15 * 60),
        LifecycleDefinition(
            kind: "pod_lifetime", title: "A GPU pod's life, from its deploy completing to its free completing",
            start: "kuber.deploy.start.complete", complete: "kuber.deploy.free.complete",
            keys: [.init(start: "resource_id", complete: "resource_id")],
            startsWhen: "result", completesWhen: "result",
            attributes: ["hardware", "hardware_template_id", "node_id"],
            stuckAfterSeconds: nil),
    ]

    static let builtinEnvelope: [FieldDefinition] = [
        .required("event_id", .uuid, "Unique id of the event; the dedupe key.", because: Reason.identity),
        .required("event_type", .string, "The event type, e.g. xumi.generation.start.", because: Reason.type),
        .required("timestamp", .timestamp, "When the event happened (ISO 8601 with a zone).", because: Reason.occurredAt),
        .required("tenant_id", .uuid, "The tenant the event belongs to.", because: Reason.tenant),
        .optional("user_id", .uuid, "The user on whose behalf the event happened.", because: Reason.noUser),
        .optional("session_id", .uuid, "The user's session.", because: Reason.noSession),
        .required("source", .string, "The emitting service, e.g. xumi-worker.", because: Reason.sourceService),
        .required("version", .string, "The event's schema version, e.g. 1.0.", because: Reason.version),
        .optional("metadata", .object, "Free-form JSON object.", because: Reason.freeForm),
        .optional("tags", .stringMap, "Free-form string labels.", because: Reason.freeForm),
    ]

    /// `vm_type`, `host_name`, `storage_size`, `storage_type`: read from the node's environment.
    static let environmentFields: [FieldDefinition] = [
        .optional("vm_type", .string, "Virtual machine type (from an environment variable).", because: Reason.environment),
        .optional("host_name", .string, "Host name (from an environment variable).", because: Reason.environment),
        .optional(
            "storage_size", .integer, "Storage size in bytes (from an environment variable).",
            because: Reason.environment, minimum: 0),
        .optional("storage_type", .string, "Storage type, e.g. nvme or ceph (from an environment variable).", because: Reason.environment),
    ]

    static let created = FieldDefinition.optional(
        "created", .timestamp, "UTC time, ISO 8601 datetime.", because: Reason.domainTime)

    static let builtinEvents: [EventDefinition] = (xumiEvents + kubernetesEvents + pbacEvents + assetEvents + workflowEvents).map {
        var event = $0
        event.typeName = typeNames[event.eventType] ?? event.typeName
        return event
    }

    /// The SDK's names for the events, in the platform's words.
    static let typeNames: [String: String] = [
        "xumi.weights.load.start": "WeightsLoadStarted",
        "xumi.weights.load.complete": "WeightsLoadCompleted",
        "xumi.generation.start": "GenerationStarted",
        "xumi.generation.complete": "GenerationCompleted",
        "kuber.deploy.start": "PodDeployStarted",
        "kuber.deploy.start.complete": "PodDeployCompleted",
        "kuber.deploy.free": "PodFreeStarted",
        "kuber.deploy.free.complete": "PodFreeCompleted",
        "pbac.agent.politics.check": "PolicyChecked",
        "pbac.agent.politics.reset": "PolicyCacheReset",
        "pbac.agent.politics.load": "PolicyLoaded",
        "pbac.agent.start": "PolicyAgentStarted",
        "pbac.agent.politics.update": "PolicyRuleUpdated",
        "pbac.agent.politics.archive": "PolicyRuleArchived",
        "assets.access.read": "AssetRead",
        "assets.access.download": "AssetDownloaded",
        "assets.access.upload": "AssetUploaded",
        "assets.access.delete": "AssetDeleted",
        "workflow.process.create": "WorkflowProcessCreated",
    ]

    // MARK: xumi

    static let xumiEvents: [EventDefinition] = [
        EventDefinition(
            "xumi.weights.load.start", topic: .xumiLoad, title: "Start of loading weights",
            fields: [
                .required("model", .string, "Model name & version.", because: Reason.model),
                .optional("url", .string, "Weights url.", because: Reason.descriptive),
                .required("node_id", .uuid, "The node loading the weights.", because: Reason.node),
            ] + environmentFields),
        EventDefinition(
            "xumi.weights.load.complete", topic: .xumiLoad, title: "Finish of loading weights",
            fields: [
                .required("model", .string, "Model name & version.", because: Reason.model),
                .optional("url", .string, "Weights url.", because: Reason.descriptive),
                .required(
                    "origin_event_id", .uuid, "event_id of the xumi.weights.load.start this completes.",
                    because: Reason.pairing),
                .required("result", .bool, "true when the weights loaded, false when loading failed.", because: Reason.outcome),
                .optional("speed", .number, "Average loading speed, bytes per second.", because: Reason.measurement, minimum: 0),
                .optional("size", .integer, "Downloaded size in bytes.", because: Reason.measurement, minimum: 0),
                .required("node_id", .uuid, "The node loading the weights.", because: Reason.node),
            ] + environmentFields),
        EventDefinition(
            "xumi.generation.start", topic: .xumiTask, title: "Start of generation execution",
            fields: [
                .required("model", .string, "Model name & version.", because: Reason.model),
                .optional("url", .string, "Weights url.", because: Reason.descriptive),
                created,
                .optional("prompt", .string, "The generation prompt.", because: Reason.privacy),
                .optional("speed", .string, "Requested generation speed (the spec types it as a string).", because: Reason.descriptive),
                .required("task_id", .uuid, "The generation task; pairs start and completion.", because: Reason.pairing),
                .required("node_id", .uuid, "The node running the generation.", because: Reason.node),
            ] + environmentFields),
        EventDefinition(
            "xumi.generation.complete", topic: .xumiTask, title: "Finish of generation execution",
            fields: [
                .required("model", .string, "Model name.", because: Reason.model),
                .optional("url", .string, "Weights url.", because: Reason.descriptive),
                created,
                .optional(
                    "start_generation", .timestamp, "When generation actually started (after queueing), UTC.",
                    because: Reason.measurement),
                .optional("prompt", .string, "The generation prompt.", because: Reason.privacy),
                .optional("speed", .string, "Requested generation speed (the spec types it as a string).", because: Reason.descriptive),
                .required("result", .bool, "true when the generation succeeded.", because: Reason.outcome),
                .optional("detail", .string, "Failure detail or other result detail.", because: Reason.descriptive),
                .required("task_id", .uuid, "The generation task; pairs start and completion.", because: Reason.pairing),
                .required("user_id", .uuid, "The user who requested the generation.", because: Reason.generationUser),
                .required("node_id", .uuid, "The node running the generation.", because: Reason.node),
            ] + environmentFields),
    ]

    // MARK: kubernetes

    /// The access-decision fields the kubernetes events share with PBAC.
    static func accessFields(resultMeaning: String) -> [FieldDefinition] {
        [
            .optional("user", .jsonObject, "User JSON object.", because: Reason.descriptive),
            .optional("action", .string, "Action access.", because: Reason.descriptive),
            .optional("resource", .jsonObject, "Resource JSON object.", because: Reason.descriptive),
            .required("result", .bool, resultMeaning, because: Reason.outcome),
            .optional("service", .string, "Service name.", because: Reason.descriptive),
        ]
    }

    static let tenantPair: [FieldDefinition] = [
        .optional("user_tenant_id", .uuid, "Tenant of the user.", because: Reason.descriptive),
        .optional("resource_tenant_id", .uuid, "Tenant owning the resource.", because: Reason.descriptive),
    ]

    static func podResource(_ description: String) -> FieldDefinition {
        .required("resource_id", .uuid, description, because: Reason.podIdentity, aliases: ["resource_Id"])
    }

    static let kubernetesEvents: [EventDefinition] = [
        EventDefinition(
            "kuber.deploy.start", topic: .kubernetes, title: "Deploy new start GPU pod",
            fields: [created, .optional("node_id", .uuid, "node_id.", because: Reason.descriptive)]
                + accessFields(resultMeaning: "Access politics result.")
                + [podResource("The pod being deployed (the spec spells it resource_Id).")] + tenantPair + [
                    .required("hardware", .string, "GPU hardware type.", because: Reason.hardware),
                    .optional("hardware_template_id", .uuid, "Hardware template.", because: Reason.descriptive),
                ]),
        EventDefinition(
            "kuber.deploy.start.complete", topic: .kubernetes, title: "Deploy complete GPU pod",
            fields: [created, .optional("node_id", .uuid, "node_id.", because: Reason.descriptive)]
                + accessFields(resultMeaning: "true when the pod was deployed.")
                + [
                    .optional("description", .string, "Detail of the result.", because: Reason.descriptive),
                    podResource("The pod deployed (the spec spells it resource_Id)."),
                ] + tenantPair + [
                    .required("hardware", .string, "GPU hardware type.", because: Reason.hardware),
                    .optional("hardware_template_id", .uuid, "Hardware template.", because: Reason.descriptive),
                    .optional(
                        "prevision_event_id", .uuid, "event_id of the kuber.deploy.start this completes.",
                        because: Reason.pairingFallback),
                ]),
        EventDefinition(
            "kuber.deploy.free", topic: .kubernetes, title: "Free kuber pod",
            fields: [created, .optional("node_id", .uuid, "node_id.", because: Reason.descriptive)]
                + accessFields(resultMeaning: "Access politics result.")
                + [podResource("The pod being freed (the spec spells it resource_Id).")] + tenantPair + [
                    .optional("eval_ms", .number, "PBAC rule execution time, ms.", because: Reason.measurement, minimum: 0)
                ]),
        EventDefinition(
            "kuber.deploy.free.complete", topic: .kubernetes, title: "Free kuber pod complete",
            fields: [created, .optional("node_id", .uuid, "node_id.", because: Reason.descriptive)]
                + accessFields(resultMeaning: "true when the pod was freed.")
                + [podResource("The pod freed.")] + tenantPair + [
                    .optional("eval_ms", .number, "PBAC rule execution time, ms.", because: Reason.measurement, minimum: 0)
                ]),
    ]

    // MARK: pbac

    static let ruleChangeFields: [FieldDefinition] = [
        created,
        .required("rule_id", .uuid, "The rule changed.", because: Reason.rule),
        .required("rule_version", .integer, "The rule's version.", because: Reason.rule, minimum: 0),
        .optional("politic_version", .integer, "The policy version.", because: Reason.descriptive, minimum: 0),
        .optional("description", .string, "Description of the change.", because: Reason.descriptive),
    ]

    static let pbacEvents: [EventDefinition] = [
        EventDefinition(
            "pbac.agent.politics.check", topic: .pbacAccess, title: "Event Policy review event",
            fields: [
                created,
                .required("user", .jsonObject, "User JSON object.", because: Reason.decisionSubject),
                .required("action", .string, "Action access.", because: Reason.decisionSubject),
                .required("resource", .jsonObject, "Resource JSON object.", because: Reason.decisionSubject),
                .required("result", .bool, "Access politics result: true when allowed.", because: Reason.outcome),
                .optional("system_rule_revision", .integer, "System rule version.", because: Reason.descriptive, minimum: 0),
                .optional("tenant_rule_revision", .integer, "Tenant rule version.", because: Reason.descriptive, minimum: 0),
                .optional("service", .string, "Service name.", because: Reason.descriptive),
                .optional(
                    "resource_id", .uuid, "The resource checked (the spec spells it resource_Id).",
                    because: Reason.descriptive, aliases: ["resource_Id"]),
            ] + tenantPair + [
                .optional("eval_ms", .number, "PBAC rule execution time, ms.", because: Reason.measurement, minimum: 0),
                .optional(
                    "cache_hit", .bool, "True if cached politics was used, false if politics was cached during request.",
                    because: Reason.measurement),
                .optional("error", .string, "Oso access evaluation error.", because: Reason.descriptive),
                .optional(
                    "denial_source", .string, "System or tenant policy denied access to resource.",
                    because: Reason.descriptive),
            ]),
        EventDefinition(
            "pbac.agent.politics.reset", topic: .pbacService, title: "Event politic reset cache",
            fields: [
                created,
                .optional("description", .string, "Description.", because: Reason.descriptive),
                .required("result", .bool, "true when the cache was reset.", because: Reason.outcome),
            ]),
        EventDefinition(
            "pbac.agent.politics.load", topic: .pbacService, title: "Event loading politics",
            fields: [
                created,
                .optional("policy_revision", .integer, "Tenant policy version.", because: Reason.descriptive, minimum: 0),
                .optional("description", .string, "Description.", because: Reason.descriptive),
                .required("result", .bool, "true when the policy loaded.", because: Reason.outcome),
                .optional("compile_ms", .number, "Policy load duration, ms.", because: Reason.measurement, minimum: 0),
            ]),
        EventDefinition("pbac.agent.start", topic: .pbacService, title: "Event start agent", fields: [created]),
        EventDefinition(
            "pbac.agent.politics.update", topic: .pbacService, title: "Event update politics", fields: ruleChangeFields),
        EventDefinition(
            "pbac.agent.politics.archive", topic: .pbacService, title: "Event archive politics", fields: ruleChangeFields),
    ]

    // MARK: assets

    static func assetFields(speed: Bool) -> [FieldDefinition] {
        var fields: [FieldDefinition] = [
            created,
            .required("resource_url", .string, "The asset's URL.", because: Reason.assetURL),
            .optional("object_size", .integer, "Object size in bytes.", because: Reason.measurement, minimum: 0),
            .required("result", .bool, "true when the operation succeeded.", because: Reason.outcome),
            .optional("description", .string, "Description (the spec gives no type: a string).", because: Reason.descriptive),
        ]
        if speed {
            fields.append(
                .optional("avg_speed", .number, "Average transfer speed, bytes per second.", because: Reason.measurement, minimum: 0))
        }
        fields.append(.optional("IP", .ipAddress, "Client IP address (IPv4 or IPv6).", because: Reason.privacy))
        return fields
    }

    static let assetEvents: [EventDefinition] = [
        EventDefinition(
            "assets.access.read", topic: .assetAccess, title: "Event access to asset resource",
            fields: assetFields(speed: false)),
        EventDefinition(
            "assets.access.download", topic: .assetTransfer, title: "Event download to asset resource",
            fields: assetFields(speed: true)),
        EventDefinition(
            "assets.access.upload", topic: .assetTransfer, title: "Event upload to asset resource",
            fields: assetFields(speed: true) + [
                .optional("user_space_size", .integer, "User space size, bytes.", because: Reason.measurement, minimum: 0),
                .optional("total_space_size", .integer, "Total user space size, bytes.", because: Reason.measurement, minimum: 0),
            ]),
        EventDefinition(
            "assets.access.delete", topic: .assetTransfer, title: "Event delete asset resource",
            fields: assetFields(speed: false) + [
                .optional("used_space_size", .integer, "User used space size, bytes.", because: Reason.measurement, minimum: 0),
                .optional("total_space_size", .integer, "Total user space size, bytes.", because: Reason.measurement, minimum: 0),
            ]),
    ]

    // MARK: workflow

    static let workflowEvents: [EventDefinition] = [
        EventDefinition(
            "workflow.process.create", topic: .kubernetes, title: "Deploy new create workflow process",
            fields: [
                created,
                .optional("node_id", .uuid, "node_id.", because: Reason.descriptive),
                .required("user_id", .string, "User Id.", because: Reason.workflowUser),
                .required("result", .bool, "Access politics result.", because: Reason.outcome),
                .optional("service", .string, "Service name.", because: Reason.descriptive),
                .optional(
                    "resource_id", .uuid, "The resource (the spec spells it resource_Id).", because: Reason.descriptive,
                    aliases: ["resource_Id"]),
            ] + tenantPair + [
                .required("workflow_process_id", .uuid, "The workflow process created.", because: Reason.workflow)
            ]),
    ]
}
