import CompressNIO
import Foundation
public import Hummingbird
public import Logging
import NIOCore
public import TelemetryCatalog
public import TelemetryPipeline
public import TelemetryStore

/// Configuration of the collector's HTTP API.
public struct CollectorConfiguration: Sendable {
    /// Address to listen on.
    public var host: String = "127.0.0.1"
    /// Port to listen on; 0 picks a free one.
    public var port: Int = 8080
    /// Largest request body accepted, bytes, before and after gzip decompression.
    public var maxBodyBytes: Int = 16 << 20
    /// Seconds a stream waits without events before sending a keep-alive comment.
    public var streamHeartbeatSeconds: Int = 15

    public init() {}
}

/// The collector: the HTTP API v1 over a store and the ingest pipeline.
public struct Collector: Sendable {
    public let configuration: CollectorConfiguration
    public let store: any EventStore
    public let ingestor: Ingestor
    public let broadcaster: SequenceBroadcaster
    public let catalog: Catalog
    /// The collector's metrics, rendered by `GET /metrics`.
    public let metrics: CollectorMetrics
    let logger: Logger

    public init(
        configuration: CollectorConfiguration, store: any EventStore, ingestor: Ingestor, broadcaster: SequenceBroadcaster,
        metrics: CollectorMetrics = CollectorMetrics(), logger: Logger
    ) {
        self.metrics = metrics
        self.configuration = configuration
        self.store = store
        self.ingestor = ingestor
        self.broadcaster = broadcaster
        self.catalog = ingestor.catalog
        self.logger = logger
    }

    /// The Hummingbird application serving the API; run it (in a `ServiceGroup` with the
    /// ``IngestWriter``) to serve.
    ///
    /// - Parameter onServerRunning: called with the bound port once the server listens.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestMetricsMiddleware(metrics: metrics))
        addRoutes(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "xumi-telemetry"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("v1/events") { request, context in try await self.postEvents(request, context) }
        router.get("v1/events") { request, _ in try await self.listEvents(request) }
        router.get("v1/events/:id") { _, context in try await self.getEvent(context) }
        router.get("v1/rejected") { request, _ in try await self.listRejected(request) }
        router.get("v1/stream") { request, _ in try await self.stream(request) }
        router.get("v1/operations") { request, _ in try await self.listOperations(request) }
        router.get("v1/stats") { request, _ in try await self.stats(request) }
        router.get("metrics") { _, _ in try await self.metrics() }
        router.get("v1/catalog") { _, _ in Self.json(.ok, self.catalog.jsonListing().render()) }
        router.get("v1/catalog/:event_type") { _, context in
            let eventType = try context.parameters.require("event_type")
            guard let schema = self.catalog.jsonSchema(of: eventType) else {
                return Self.error(.notFound, "unknown_event_type", "no event type \(eventType); GET /v1/catalog lists them")
            }
            return Self.json(.ok, schema.render())
        }
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: Dashboard.html)))
        }
        router.get("healthz") { _, _ in Self.json(.ok, #"{"status":"ok"}"#) }
        router.get("readyz") { _, _ in
            do {
                _ = try await self.store.latestSequence()
                return Self.json(.ok, #"{"status":"ready"}"#)
            } catch {
                return Self.error(.serviceUnavailable, "store_unavailable", "the store cannot be read: \(error)")
            }
        }
        router.get("openapi.json") { _, _ in Self.json(.ok, OpenAPIDocument.document.render(pretty: true)) }
    }

    // MARK: responses

    static func json(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) -> Response {
        json(status, JSONValue.object([("error", ["code": .string(code), "message": .string(message)])]).render(), headers: headers)
    }

    static func nowMicros() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1_000_000).rounded())
    }
}

/// Times every request into `telemetry_http_request_duration_seconds`, labelled with the route's
/// pattern (`/v1/events/{id}`, not the id), so that the number of series stays small.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: CollectorMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.recordRequest(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, duration: .now - started)
            return response
        } catch {
            metrics.recordRequest(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, duration: .now - started)
            throw error
        }
    }
}
