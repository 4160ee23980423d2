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
    /// Connections the kernel holds for the server to accept (the listen backlog; Linux caps it
    /// at `net.core.somaxconn`, 4096 by default). Hummingbird's 256 dropped the connections of a
    /// burst past it, and their clients sent again only after a second (TCP's SYN retry).
    public var listenBacklog: Int = 4096
    /// Largest request body accepted, bytes, before and after gzip decompression.
    public var maxBodyBytes: Int = 16 << 20
    /// Seconds a stream waits without events before sending a keep-alive comment.
    public var streamHeartbeatSeconds: Int = 15
    /// Requests a second each API key may make on average (a token bucket); `nil` for no limit.
    public var rateLimit: Double? = 100
    /// The most requests a key may make at once, beyond its rate.
    public var rateBurst: Int = 200
    /// How long a client has to send a request's head, from connecting or from the end of the
    /// previous response (so also how long an idle keep-alive connection stays open).
    public var headerTimeout: Duration = .seconds(30)
    /// How long a client has to send a request's body once its head is in.
    public var bodyTimeout: Duration = .seconds(60)

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
    /// The API keys; `nil` (or no key created yet) serves without keys, which the caller must keep
    /// to loopback.
    public let keys: KeyStore?
    let limiter: RateLimiter?
    let logger: Logger
    /// Arrays request bodies are read into, kept between requests.
    let bodies = BodyBuffers()
    /// When each sender refused as overloaded should come back (`Retry-After-Ms`).
    let pacer = RetryPacer()

    public init(
        configuration: CollectorConfiguration, store: any EventStore, ingestor: Ingestor, broadcaster: SequenceBroadcaster,
        metrics: CollectorMetrics = CollectorMetrics(), keys: KeyStore? = nil, logger: Logger
    ) {
        self.metrics = metrics
        self.keys = keys
        self.limiter = configuration.rateLimit.map { RateLimiter(rate: $0, burst: configuration.rateBurst) }
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
        let router = Router(context: CollectorRequestContext.self)
        router.add(middleware: RequestMetricsMiddleware(metrics: metrics))
        router.add(middleware: MethodNotAllowedMiddleware())
        router.add(middleware: AuthMiddleware(keys: keys, limiter: limiter, metrics: metrics, logger: logger))
        addRoutes(to: router)
        let headerTimeout = TimeAmount(configuration.headerTimeout)
        let bodyTimeout = TimeAmount(configuration.bodyTimeout)
        return Application(
            router: router,
            server: .http1(
                configuration: .init(additionalChannelHandlers: [
                    RequestDeadlineHandler(headerTimeout: headerTimeout, bodyTimeout: bodyTimeout), ContinueHandler(),
                ])),
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "xumi-telemetry",
                backlog: configuration.listenBacklog),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    func addRoutes(to router: Router<CollectorRequestContext>) {
        router.post("v1/events") { request, context in try await self.postEvents(request, context) }
        router.get("v1/events") { request, context in try await self.listEvents(request, context) }
        router.get("v1/events/:id") { _, context in try await self.getEvent(context) }
        router.get("v1/rejected") { request, context in try await self.listRejected(request, context) }
        router.get("v1/stream") { request, context in try await self.stream(request, context) }
        router.get("v1/operations") { request, context in try await self.listOperations(request, context) }
        router.get("v1/stats") { request, context in try await self.stats(request, context) }
        router.get("v1/access") { _, context in self.access(context) }
        router.get("v1/keys") { request, context in try await self.listKeys(request, context) }
        router.post("v1/keys") { request, context in try await self.createKey(request, context) }
        router.delete("v1/keys/:key_id") { _, context in try await self.revokeKey(context) }
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

    /// A new request id: a random (version 4) UUID in lower case, from the system's generator
    /// (Foundation's `UUID()` costs ~4x as much on Linux; see ``UUID/systemRandom()``).
    static func newRequestID() -> String {
        UUID.systemRandom().uuidString.lowercased()
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
