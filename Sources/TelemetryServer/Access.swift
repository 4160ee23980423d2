import Foundation
public import Hummingbird
import Logging
import NIOCore
import Synchronization
public import TelemetryStore
import TelemetryCatalog

/// Who is asking: anybody (no key is configured, so the collector serves loopback only), or the
/// holder of an API key.
public enum Access: Sendable {
    case open
    case key(APIKey)

    /// The only tenant this request may see or write; `nil` for every tenant (open, or admin).
    public var tenantScope: String? {
        switch self {
        case .open: nil
        case .key(let key): key.isAdmin ? nil : key.tenantID
        }
    }

    /// The key's id, for logs.
    var keyID: String? {
        if case .key(let key) = self { return key.id }
        return nil
    }

    /// The tenant filter a read uses: `requested` where allowed; the key's own tenant when none was
    /// requested; a refusal when another tenant was.
    func tenantFilter(_ requested: String?) throws(AccessDenied) -> String? {
        guard let own = tenantScope else { return requested }
        if let requested, requested.lowercased() != own {
            throw AccessDenied("this key reads tenant \(own) only; tenant_id=\(requested) is not its tenant")
        }
        return own
    }
}

/// A request for another tenant's data.
struct AccessDenied: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The collector's request context: Hummingbird's core context plus who is asking.
public struct CollectorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var access: Access = .open
    /// The peer's address, for the audit log.
    public let remoteAddress: String?
    /// The request's connection: `POST /v1/events` tells ``ContinueHandler`` through it when a
    /// body is admitted.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.description
        channel = source.channel
    }
}

/// A token bucket per key: `rate` requests a second on average, bursts of up to `burst`.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let buckets = Mutex([String: Bucket]())

    init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = Double(max(1, burst))
    }

    /// Takes a token for `key`; when there is none, returns how long until there is.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + seconds * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return .seconds((1 - bucket.tokens) / rate)
        }
    }
}

/// Authentication, authorisation and rate limiting of `/v1` routes.
///
/// Once any API key exists, every `/v1` request needs `Authorization: Bearer KEY` (401 without or
/// with an unknown or revoked key; 403 when the key lacks the route's scope); each key gets a token
/// bucket (429 with `Retry-After` when it is empty). `POST /v1/events` needs `ingest`, `/v1/keys`
/// needs `admin`, `GET /v1/access` any key, every other `/v1` route `read`. Outside `/v1` (dashboard page, health, metrics,
/// the OpenAPI document) nothing is asked: those carry no tenant's data.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = CollectorRequestContext

    let keys: KeyStore?
    let limiter: RateLimiter?
    let metrics: CollectorMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path == "/v1", let keys else { return try await next(request, context) }
        do {
            guard try keys.isEnforcing else { return try await next(request, context) }
            let scope = Self.requiredScope(method: request.method, path: path)
            guard let header = request.headers[.authorization] else {
                return refuse(.unauthorized, "unauthorized", "missing_key", keyID: nil, context, request,
                    "this collector requires an API key: send Authorization: Bearer KEY (an admin creates one with `telemetry keys create`)")
            }
            guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
                return refuse(.unauthorized, "unauthorized", "malformed_header", keyID: nil, context, request,
                    "the Authorization header must be: Bearer KEY")
            }
            let key: APIKey
            // isEnforcing has just reloaded the keys if another process changed them: one read a request.
            switch try keys.check(header.dropFirst(7).trimmingCharacters(in: .whitespaces), reload: false) {
            case .valid(let found):
                key = found
            case .revoked(let found):
                return refuse(.unauthorized, "unauthorized", "revoked", keyID: found.id, context, request, "API key \(found.id) was revoked")
            case .unknown(let id):
                return refuse(.unauthorized, "unauthorized", id == nil ? "unknown_key" : "wrong_secret", keyID: id, context, request,
                    "unknown API key")
            case .malformed:
                return refuse(.unauthorized, "unauthorized", "malformed_key", keyID: nil, context, request,
                    "that is not an API key of this collector (they look like xtk_<16 hex>_<64 hex>)")
            }
            if let scope, !key.allows(scope) {
                return refuse(.forbidden, "forbidden", "missing_scope", keyID: key.id, context, request,
                    "API key \(key.id) has the scopes \(key.scopeList); \(request.method.rawValue) \(path) needs \(scope.rawValue)")
            }
            if let limiter, let wait = limiter.take(key.id) {
                metrics.countRateLimited(keyID: key.id)
                let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
                return Collector.error(
                    .tooManyRequests, "rate_limited",
                    "API key \(key.id) is over its rate limit of \(limiter.rate) requests a second (bursts of \(Int(limiter.burst))); retry after \(seconds) s",
                    headers: [.retryAfter: String(seconds)])
            }
            var context = context
            context.access = .key(key)
            return try await next(request, context)
        } catch let error as StoreError {
            return Collector.storeError(error)
        }
    }

    /// The scope a route needs; `nil` for any valid key (`GET /v1/access`).
    static func requiredScope(method: HTTPRequest.Method, path: String) -> KeyScope? {
        if path == "/v1/access" { return nil }
        if path == "/v1/keys" || path.hasPrefix("/v1/keys/") { return .admin }
        if method == .post && path == "/v1/events" { return .ingest }
        return .read
    }

    private func refuse(
        _ status: HTTPResponse.Status, _ code: String, _ reason: String, keyID: String?, _ context: Context, _ request: Request,
        _ message: String
    ) -> Response {
        metrics.countAuthFailure(keyID: keyID, reason: reason)
        logger.warning(
            "audit.auth_failed",
            metadata: [
                "key.id": "\(keyID ?? "none")", "reason": "\(reason)", "peer": "\(context.remoteAddress ?? "?")",
                "http.method": "\(request.method.rawValue)", "http.path": "\(request.uri.path)",
            ])
        var headers: HTTPFields = [:]
        if status == .unauthorized { headers[.wwwAuthenticate] = #"Bearer realm="xumi-telemetry""# }
        return Collector.error(status, code, message, headers: headers)
    }
}

extension Parameters {
    /// The query parameter `name`, with an empty value read as absent (`?cursor=` is no cursor).
    func value(_ name: String) -> String? {
        guard let text = get(name), !text.isEmpty else { return nil }
        return text
    }
}

/// Answers 405 with `Allow` (instead of the router's 404) for a method a known path does not
/// have, from the paths and methods of the OpenAPI document.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Each documented path as its segments (`nil` for a `{parameter}`), with its methods.
    static var routes: [(segments: [Substring?], methods: [String])] {
        guard let value = OpenAPIDocument.document["paths"], case JSONValue.object(let paths) = value else { return [] }
        return paths.map { path, item in
            let segments = path.split(separator: "/").map { $0.hasPrefix("{") ? nil : $0 }
            guard case JSONValue.object(let operations) = item else { return (segments, []) }
            return (segments, operations.map { $0.0.uppercased() })
        }
    }

    let routes = Self.routes

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let segments = request.uri.path.split(separator: "/")
            guard
                let route = routes.first(where: { route in
                    route.segments.count == segments.count && zip(route.segments, segments).allSatisfy { $0 == nil || $0 == $1 }
                })
            else { throw error }
            var allowed = route.methods
            if allowed.contains("GET") { allowed.append("HEAD") }
            return Collector.error(
                .methodNotAllowed, "method_not_allowed",
                "\(request.method.rawValue) is not a method of \(request.uri.path); it has \(allowed.joined(separator: ", "))",
                headers: [.allow: allowed.joined(separator: ", ")])
        }
    }
}
