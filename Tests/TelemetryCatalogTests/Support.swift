import TelemetryCatalog

/// A valid event of `eventType` from a fixed seed, as a JSON value the test can change.
func validEvent(_ eventType: String, seed: UInt64 = 7) -> JSONValue {
    var sampler = EventSampler(seed: seed)
    var event = sampler.sample(Catalog.builtin.latest(eventType)!)
    // Keep every test independent of the sampler's choice of spelling and optional fields.
    if let id = event["resource_Id"] {
        event["resource_Id"] = nil
        event["resource_id"] = id
    }
    return event
}

/// Validates `json` with a fresh validator.
func check(_ json: String) -> ValidationResult {
    var validator = EventValidator()
    return validator.validate(json)
}

func check(_ value: JSONValue) -> ValidationResult {
    check(value.render())
}

extension ValidationResult {
    var codes: [String] { issues.map(\.code.rawValue) }
    var fields: [String] { issues.map(\.field) }

    var event: NormalizedEvent? {
        if case .valid(let event) = self { return event }
        return nil
    }
}
