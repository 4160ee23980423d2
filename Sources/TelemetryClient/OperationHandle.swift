public import Foundation
public import TelemetryEvents

/// A started operation: the start event as sent, and the clock it started on. Its `complete`
/// methods build and emit the completion with the link fields the collector pairs by
/// (`origin_event_id`, `task_id`, `prevision_event_id`, `resource_id`), the start's descriptive
/// fields, and what can be measured (the elapsed time, `speed`, `start_generation`).
public struct OperationHandle<Start: TelemetryEvent>: Sendable {
    /// The start event as emitted (with its id and timestamp).
    public let start: Start
    let emitter: TelemetryEmitter
    let began: ContinuousClock.Instant
    /// When the work itself began, for generations that queue first (`start_generation`).
    public var workBegan: Date?

    /// Time since the start.
    public var elapsed: Duration { ContinuousClock.now - began }
}

extension TelemetryEmitter {
    /// Emits `event` as the start of an operation and returns the handle that completes it.
    public func start<Start: TelemetryEvent>(_ event: Start) -> OperationHandle<Start> {
        OperationHandle(start: emit(event), emitter: self, began: .now, workBegan: nil)
    }
}

extension OperationHandle where Start == WeightsLoadStarted {
    /// Emits the load's completion; `speed` is measured as `size` over the elapsed time unless given.
    @discardableResult
    public func complete(result: Bool, size: Int64? = nil, speed: Double? = nil) -> WeightsLoadCompleted {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let measured = speed ?? size.flatMap { seconds > 0 ? Double($0) / seconds : nil }
        let event = WeightsLoadCompleted(
            model: start.model, url: start.url, originEventID: start.envelope.eventID!, result: result, speed: measured, size: size,
            nodeID: start.nodeID, vmType: start.vmType, hostName: start.hostName, storageSize: start.storageSize,
            storageType: start.storageType, envelope: EventEnvelope(tenantID: start.envelope.tenantID, sessionID: start.envelope.sessionID))
        return emitter.emit(event)
    }
}

extension OperationHandle where Start == GenerationStarted {
    /// Marks the moment generation actually began, after queueing (`start_generation`).
    public mutating func markWorkBegan(at date: Date = Date()) { workBegan = date }

    /// Emits the generation's completion for `userID`, with `detail` (e.g. the failure).
    @discardableResult
    public func complete(result: Bool, userID: UUID, detail: String? = nil) -> GenerationCompleted {
        let event = GenerationCompleted(
            model: start.model, url: start.url, created: start.created, startGeneration: workBegan, prompt: start.prompt, speed: start.speed,
            result: result, detail: detail, taskID: start.taskID, userID: userID, nodeID: start.nodeID, vmType: start.vmType,
            hostName: start.hostName, storageSize: start.storageSize, storageType: start.storageType,
            envelope: EventEnvelope(tenantID: start.envelope.tenantID, sessionID: start.envelope.sessionID))
        return emitter.emit(event)
    }
}

extension OperationHandle where Start == PodDeployStarted {
    /// Emits the deploy's completion (`prevision_event_id` is the start's id).
    @discardableResult
    public func complete(result: Bool, description: String? = nil) -> PodDeployCompleted {
        let event = PodDeployCompleted(
            nodeID: start.nodeID, user: start.user, action: start.action, resource: start.resource, result: result, service: start.service,
            description: description, resourceID: start.resourceID, userTenantID: start.userTenantID,
            resourceTenantID: start.resourceTenantID, hardware: start.hardware, hardwareTemplateID: start.hardwareTemplateID,
            previsionEventID: start.envelope.eventID,
            envelope: EventEnvelope(tenantID: start.envelope.tenantID, userID: start.envelope.userID, sessionID: start.envelope.sessionID))
        return emitter.emit(event)
    }
}

extension OperationHandle where Start == PodFreeStarted {
    /// Emits the free's completion.
    @discardableResult
    public func complete(result: Bool, evalMs: Double? = nil) -> PodFreeCompleted {
        let event = PodFreeCompleted(
            nodeID: start.nodeID, user: start.user, action: start.action, resource: start.resource, result: result, service: start.service,
            resourceID: start.resourceID, userTenantID: start.userTenantID, resourceTenantID: start.resourceTenantID, evalMs: evalMs,
            envelope: EventEnvelope(tenantID: start.envelope.tenantID, userID: start.envelope.userID, sessionID: start.envelope.sessionID))
        return emitter.emit(event)
    }
}
