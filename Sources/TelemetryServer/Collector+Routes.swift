import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TelemetryCatalog
import TelemetryPipeline
import TelemetryStore

extension Collector {
    // MARK: POST /v1/events

    func postEvents(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        let requestID = Self.newRequestID()
        let idHeader: HTTPFields = [.init("X-Request-ID")!: requestID]
        // A sender with several requests in flight names its batches, and the one each follows.
        let sender = context.access.keyID ?? ""
        let batch: BatchOrder.Key?
        let after: BatchOrder.Key?
        do {
            batch = try Self.batchName(request.headers, Self.batchHeader).map { BatchOrder.Key(sender: sender, batch: $0) }
            after = try Self.batchName(request.headers, Self.afterHeader).map { BatchOrder.Key(sender: sender, batch: $0) }
        } catch let bad as BadHeader {
            return Self.error(.badRequest, "bad_header", bad.message, headers: idHeader)
        }
        if let batch, batch == after {
            return Self.error(.badRequest, "bad_header", "Telemetry-After names this request's own batch", headers: idHeader)
        }
        guard let batch else {
            return try await ingestBody(request, context, requestID: requestID, idHeader: idHeader, after: after)
        }
        ingestor.order.begin(batch)
        do {
            let response = try await ingestBody(request, context, requestID: requestID, idHeader: idHeader, after: after)
            ingestor.order.finish(batch, failure: response.status == .ok ? nil : "it was answered \(response.status.code)")
            return response
        } catch {
            ingestor.order.finish(batch, failure: "\(error)")
            throw error
        }
    }

    static let batchHeader = HTTPField.Name("Telemetry-Batch")!
    static let afterHeader = HTTPField.Name("Telemetry-After")!

    struct BadHeader: Error {
        let message: String
    }

    /// A batch name from header `name`: 1-128 visible ASCII characters.
    static func batchName(_ headers: HTTPFields, _ name: HTTPField.Name) throws -> String? {
        guard let value = headers[name] else { return nil }
        guard (1...128).contains(value.utf8.count) else {
            throw BadHeader(message: "\(name) must be 1-128 visible ASCII characters; it is \(value.utf8.count) bytes")
        }
        guard value.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw BadHeader(message: "\(name) must be 1-128 visible ASCII characters; it has a space, a control character or a non-ASCII byte")
        }
        return value
    }

    /// The body of `POST /v1/events`, read, validated and stored (after batch `after`, when set).
    private func ingestBody(
        _ request: Request, _ context: CollectorRequestContext, requestID: String, idHeader: HTTPFields, after: BatchOrder.Key?
    ) async throws -> Response {
        let received = Self.nowMicros()
        // A body declared larger than --max-body is refused on its head: none of it is read, and a
        // sender waiting for `100 Continue` never sends it.
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxBodyBytes {
            return Self.error(
                .contentTooLarge, "too_large", "the body is \(length) bytes, more than \(configuration.maxBodyBytes); send smaller batches",
                headers: idHeader)
        }
        // Refused before its body is read when the collector is past what it can take: a burst of
        // senders must not have all its bodies in memory at once. A body of no declared length
        // (chunked) is bounded once read, among those being validated.
        let declared = request.headers[.contentLength].flatMap { Int($0) }.map { min(max(0, $0), configuration.maxBodyBytes) } ?? 0
        do {
            try ingestor.admit(contentLength: declared)
        } catch {
            return overloaded(error, bytes: declared, headers: idHeader)
        }
        // Admitted: its bytes count in flight until it is answered, and towards the rate the
        // pacer measures once it is stored.
        pacer.began(declared)
        do {
            let response = try await ingestAdmitted(
                request, context, requestID: requestID, idHeader: idHeader, after: after, declared: declared, received: received)
            pacer.ended(declared, stored: response.status == .ok)
            return response
        } catch {
            pacer.ended(declared, stored: false)
            throw error
        }
    }

    /// The rest of ``ingestBody(_:_:requestID:idHeader:after:)``, once the request is admitted
    /// with `declared` bytes.
    private func ingestAdmitted(
        _ request: Request, _ context: CollectorRequestContext, requestID: String, idHeader: HTTPFields, after: BatchOrder.Key?,
        declared: Int, received: Int64
    ) async throws -> Response {
        // Admitted: a sender waiting for `100 Continue` sends its body now. (Only then: the event
        // crosses to the connection's event loop, work the other requests need not do.)
        if request.headers[.expect] != nil {
            context.channel.triggerUserOutboundEvent(ContinueHandler.Continue(), promise: nil)
        }
        var body: [UInt8]
        do {
            defer { ingestor.received(declared) }
            body = try await Self.readBody(request.body, into: bodies.take(), declared: declared, limit: configuration.maxBodyBytes)
        } catch {
            return Self.error(
                .contentTooLarge, "too_large", "the body is larger than \(configuration.maxBodyBytes) bytes; send smaller batches",
                headers: idHeader)
        }
        if let encoding = request.headers[.contentEncoding]?.lowercased(), encoding != "identity" {
            guard encoding == "gzip" else {
                return Self.error(
                    .unsupportedMediaType, "unsupported_encoding", "Content-Encoding \(encoding) is not supported; use gzip or none",
                    headers: idHeader)
            }
            do {
                var compressed = ByteBuffer(bytes: body)
                var inflated = try compressed.decompress(with: .gzip(), maxSize: configuration.maxBodyBytes)
                // CompressNIO stops once its buffers pass `maxSize`, but each buffer is rounded up
                // to a power of two and filled: a body could inflate to ~2x the limit and pass.
                guard inflated.readableBytes <= configuration.maxBodyBytes else { throw CompressNIOError.bufferOverflow }
                body = inflated.readBytes(length: inflated.readableBytes) ?? []
            } catch let error as CompressNIOError where error == .bufferOverflow {
                return Self.error(
                    .contentTooLarge, "too_large", "the body inflates to more than \(configuration.maxBodyBytes) bytes",
                    headers: idHeader)
            } catch {
                return Self.error(.badRequest, "bad_gzip", "the body is not valid gzip: \(error)", headers: idHeader)
            }
        }
        let ndjson = request.headers[.contentType]?.lowercased().hasPrefix("application/x-ndjson") == true
        // Validated events hold copies of their bytes: the body's array serves a later request.
        defer { bodies.give(&body) }
        do {
            let result = try await ingestor.ingest(
                body, ndjson: ndjson, requestID: requestID, receivedMicros: received, tenantID: context.access.tenantScope,
                after: after)
            metrics.countIngest(result)
            return Self.json(.ok, Self.ingestResponse(result), headers: idHeader)
        } catch let error as Overloaded {
            return overloaded(error, bytes: declared, headers: idHeader)
        } catch let failure as EventBody.Failure {
            let status: HTTPResponse.Status = failure.code == "not_json" ? .badRequest : .contentTooLarge
            return Self.error(status, failure.code, failure.message, headers: idHeader)
        } catch let outOfOrder as OutOfOrder {
            // Its sender sends the batch it follows first, then this one again.
            metrics.countOutOfOrder()
            return Self.error(
                .conflict, "out_of_order", "\(outOfOrder.message); nothing of this request was stored", headers: idHeader)
        } catch let error as StoreError {
            logger.warning("ingest.unavailable", metadata: ["request.id": "\(requestID)", "error": "\(error)"])
            var headers = idHeader
            headers[.retryAfter] = "1"
            return Self.error(
                .serviceUnavailable, error.code.rawValue, "nothing was stored; retry later (\(error.message))", headers: headers)
        }
    }

    /// The body's bytes, in one array sized by the declared length: collecting into a `ByteBuffer`
    /// copied the body as the buffer grew and again into the array the validator reads, and each
    /// copy of a large body faulted in fresh pages (~14% of the request threads' CPU in
    /// `serve --kafka`). A body of no declared length (chunked) grows as it comes. `bytes` is an
    /// empty array to read into (from ``BodyBuffers``).
    static func readBody(_ body: RequestBody, into bytes: consuming [UInt8], declared: Int, limit: Int) async throws -> [UInt8] {
        var bytes = bytes
        bytes.reserveCapacity(declared)
        for try await chunk in body {
            guard bytes.count + chunk.readableBytes <= limit else { throw BodyTooLarge() }
            chunk.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    struct BodyTooLarge: Error {}

    /// 429: refused whole, nothing acknowledged; the client retries when the pacer says, a
    /// request of `bytes` (its `Content-Length`) taking its turn after those refused before it:
    /// `Retry-After-Ms` in milliseconds (the SDK, `send` and the benchmarks wait that), and
    /// `Retry-After` in whole seconds, rounded up, for every other client.
    private func overloaded(_ overloaded: Overloaded, bytes: Int, headers idHeader: HTTPFields) -> Response {
        metrics.countOverloaded()
        let wait = pacer.refused(bytes)
        let milliseconds = Int((wait * 1000).rounded(.up))
        var headers = idHeader
        headers[.retryAfter] = String(max(1, Int(wait.rounded(.up))))
        headers[Self.retryAfterMilliseconds] = String(milliseconds)
        return Self.error(
            .tooManyRequests, "overloaded", "\(overloaded.message); nothing of this request was taken, retry after \(milliseconds) ms",
            headers: headers)
    }

    /// The wait of a refusal in milliseconds, finer than `Retry-After`'s whole seconds (the name
    /// some other HTTP APIs use for the same).
    static let retryAfterMilliseconds = HTTPField.Name("Retry-After-Ms")!

    static func ingestResponse(_ result: IngestResult) -> String {
        let rejected: [JSONValue] = result.rejected.map { event in
            [
                "index": .integer(Int64(event.index)),
                "event_id": event.eventID.map { .string($0) } ?? .null,
                "errors": .array(
                    event.issues.map { ["field": .string($0.field), "code": .string($0.code.rawValue), "message": .string($0.message)] }
                ),
            ]
        }
        return JSONValue.object([
            ("accepted", .integer(Int64(result.accepted))), ("duplicates", .integer(Int64(result.duplicates))),
            ("rejected", .array(rejected)),
        ]).render()
    }

    // MARK: GET /v1/events

    static let reservedParameters: Set<String> = ["event_type", "topic", "tenant_id", "source", "since", "until", "limit", "cursor"]

    /// Reads the filters shared by `GET /v1/events` and `GET /v1/stream`.
    func eventQuery(_ request: Request, _ access: Access) throws -> EventQuery {
        let parameters = request.uri.queryParameters
        var query = EventQuery()
        query.eventType = parameters.value("event_type")
        query.topic = parameters.value("topic")
        // A name the catalog does not have is a typo, not a filter that matches nothing: every
        // stored event is of a catalog type (the others are rejected), and topics come from types.
        if let eventType = query.eventType, catalog.definitions(of: eventType).isEmpty {
            throw QueryError("\(eventType) is not an event type; GET /v1/catalog lists them")
        }
        if let topic = query.topic, !catalog.topics.contains(where: { $0.name == topic }) {
            throw QueryError("\(topic) is not a topic; topics: \(catalog.topics.map(\.name).joined(separator: ", "))")
        }
        query.tenantID = try access.tenantFilter(parameters.value("tenant_id"))
        query.source = parameters.value("source")
        (query.since, query.until) = try Self.timeRange(parameters)
        (query.limit, query.before) = try Self.paging(parameters, defaultLimit: query.limit)
        for (key, value) in parameters where !Self.reservedParameters.contains(String(key)) {
            guard catalog.canonicalFieldName(String(key)) != nil else {
                throw QueryError("\(key) is neither a filter of this endpoint nor a catalog field; GET /v1/catalog lists the fields")
            }
            query.fields.append(FieldFilter(field: String(key), value: String(value)))
        }
        return query
    }

    /// `limit` (1-1000) and `cursor` (the `next_cursor` of the previous page).
    static func paging(_ parameters: Parameters, defaultLimit: Int) throws(QueryError) -> (limit: Int, before: Int64?) {
        var limit = defaultLimit
        var before: Int64? = nil
        if let text = parameters.value("limit") {
            guard let n = Int(text), (1...1000).contains(n) else { throw QueryError("limit must be a whole number from 1 to 1000") }
            limit = n
        }
        if let cursor = parameters.value("cursor") {
            guard let value = Int64(cursor), value > 0 else { throw QueryError("cursor is not one this API returned") }
            before = value
        }
        return (limit, before)
    }

    func listEvents(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        let query: EventQuery
        do {
            query = try eventQuery(request, context.access)
        } catch {
            return Self.refusal(error)
        }
        do {
            let page = try await store.events(query)
            var text = #"{"events":["#
            for (i, event) in page.events.enumerated() {
                if i > 0 { text += "," }
                text += event.json
            }
            text += #"],"next_cursor":"# + (page.nextBefore.map { "\"\($0)\"" } ?? "null") + "}"
            return Self.json(.ok, text)
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }

    func getEvent(_ context: CollectorRequestContext) async throws -> Response {
        let text = try context.parameters.require("id")
        guard let id = UUIDValue(text) else {
            return Self.error(.badRequest, "bad_uuid", "\(text) is not a UUID (8-4-4-4-12 hex digits)")
        }
        do {
            // Another tenant's event is as absent as one never sent (404): its existence is not told.
            guard let event = try await store.event(id: id, tenant: context.access.tenantScope.flatMap { UUIDValue($0) }) else {
                return Self.error(.notFound, "not_found", "no event \(id)")
            }
            return Self.json(.ok, event.json)
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }

    // MARK: GET /v1/rejected

    func listRejected(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters
        var query = RejectedQuery()
        do {
            query.tenantID = try context.access.tenantFilter(parameters.value("tenant_id"))
        } catch {
            return Self.refusal(error)
        }
        query.eventType = parameters.value("event_type")
        query.code = parameters.value("code")
        do {
            (query.limit, query.before) = try Self.paging(parameters, defaultLimit: query.limit)
        } catch {
            return Self.error(.badRequest, "bad_query", error.message)
        }
        do {
            let page = try await store.rejected(query)
            let items: [JSONValue] = page.rejected.map { event in
                [
                    "received_at": .string(ISO8601Timestamp.string(fromMicroseconds: event.receivedMicros)),
                    "request_id": .string(event.requestID),
                    "index": .integer(Int64(event.index)),
                    "event_type": event.eventType.map { .string($0) } ?? .null,
                    "event_id": event.eventID.map { .string($0) } ?? .null,
                    "errors": .array(
                        event.issues.map { ["field": .string($0.field), "code": .string($0.code.rawValue), "message": .string($0.message)] }),
                    "raw": .string(String(decoding: event.raw, as: UTF8.self)),
                ]
            }
            let body: JSONValue = [
                "rejected": .array(items), "next_cursor": page.nextBefore.map { .string(String($0)) } ?? .null,
            ]
            return Self.json(.ok, body.render())
        } catch let error as StoreError {
            return Self.storeError(error)
        }
    }

    /// A request that cannot be answered as asked: 403 for another tenant's data, else 400.
    static func refusal(_ error: any Error) -> Response {
        switch error {
        case let denied as AccessDenied: Self.error(.forbidden, "forbidden_tenant", denied.message)
        case let query as QueryError: Self.error(.badRequest, "bad_query", query.message)
        default: Self.error(.badRequest, "bad_query", "\(error)")
        }
    }

    static func storeError(_ error: StoreError) -> Response {
        if error.code == .badQuery { return Self.error(.badRequest, "bad_query", error.message) }
        return Self.error(.serviceUnavailable, error.code.rawValue, error.message, headers: [.retryAfter: "1"])
    }
}

/// A query parameter the API cannot use.
struct QueryError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
