import Foundation
import Hummingbird
import Logging
import NIOCore
import TelemetryCatalog
import TelemetryStore

extension Collector {
    // MARK: /v1/keys (admin)

    /// A key as the API shows it (never its secret).
    static func keyJSON(_ key: APIKey) -> JSONValue {
        [
            "key_id": .string(key.id),
            "tenant_id": key.tenantID.map { .string($0) } ?? .null,
            "scopes": .array(key.scopes.sorted().map { .string($0.rawValue) }),
            "name": key.name.map { .string($0) } ?? .null,
            "created_at": .string(ISO8601Timestamp.string(fromMicroseconds: key.createdMicros)),
            "revoked_at": key.revokedMicros.map { .string(ISO8601Timestamp.string(fromMicroseconds: $0)) } ?? .null,
        ]
    }

    /// `GET /v1/access`: who the request is, as the collector sees it: the key and what it may do,
    /// or an open collector (no key exists) that serves everybody on loopback.
    func access(_ context: CollectorRequestContext) -> Response {
        switch context.access {
        case .open:
            return Self.json(
                .ok,
                JSONValue.object([
                    ("keys_required", .bool(false)), ("key_id", .null), ("tenant_id", .null),
                    ("scopes", .array(KeyScope.allCases.map { .string($0.rawValue) })), ("all_tenants", .bool(true)),
                ]).render())
        case .key(let key):
            return Self.json(
                .ok,
                JSONValue.object([
                    ("keys_required", .bool(true)), ("key_id", .string(key.id)), ("tenant_id", key.tenantID.map { .string($0) } ?? .null),
                    ("scopes", .array(key.scopes.sorted().map { .string($0.rawValue) })), ("all_tenants", .bool(key.isAdmin)),
                ]).render())
        }
    }

    private func keyStore() throws(AccessDenied) -> KeyStore {
        guard let keys else { throw AccessDenied("this collector keeps no API keys") }
        return keys
    }

    func listKeys(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        do {
            let keys = try keyStore().list(tenantID: request.uri.queryParameters.value("tenant_id"))
            return Self.json(.ok, JSONValue.object([("keys", .array(keys.map(Self.keyJSON)))]).render())
        } catch let error as StoreError {
            return Self.storeError(error)
        } catch {
            return Self.error(.notFound, "no_keys", "\(error)")
        }
    }

    /// `POST /v1/keys` with `{"tenant_id":"…","scopes":["ingest","read"],"name":"…"}`: 201 with the
    /// new key's text in `key` (shown this once) and its description.
    func createKey(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 << 10)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] else {
            return Self.error(.badRequest, "bad_request", #"send a JSON object: {"tenant_id":"…","scopes":["ingest","read"],"name":"…"}"#)
        }
        let tenant = object["tenant_id"] as? String
        let name = object["name"] as? String
        guard let scopeNames = object["scopes"] as? [String] else {
            return Self.error(.badRequest, "bad_request", "scopes must be an array of ingest, read, admin")
        }
        do {
            let scopes = try KeyScope.parseList(scopeNames.joined(separator: ","))
            let (key, token) = try keyStore().create(tenantID: tenant, scopes: scopes, name: name)
            metrics.countKeyChange("created")
            logger.notice(
                "audit.key_created",
                metadata: [
                    "key.id": "\(key.id)", "key.tenant": "\(key.tenantID ?? "any")", "key.scopes": "\(key.scopeList)",
                    "by": "\(context.access.keyID ?? "loopback")",
                ])
            guard case .object(var members) = Self.keyJSON(key) else { fatalError("a key is an object") }
            members.insert(("key", .string(token)), at: 0)
            return Self.json(.created, JSONValue.object(members).render())
        } catch let error as StoreError where error.code == .badQuery {
            return Self.error(.badRequest, "bad_request", error.message)
        } catch let error as StoreError {
            return Self.storeError(error)
        } catch {
            return Self.error(.notFound, "no_keys", "\(error)")
        }
    }

    func revokeKey(_ context: CollectorRequestContext) async throws -> Response {
        let id = try context.parameters.require("key_id")
        do {
            guard let key = try keyStore().revoke(id: id) else {
                return Self.error(.notFound, "not_found", "no API key \(id)")
            }
            metrics.countKeyChange("revoked")
            logger.notice("audit.key_revoked", metadata: ["key.id": "\(key.id)", "by": "\(context.access.keyID ?? "loopback")"])
            return Self.json(.ok, Self.keyJSON(key).render())
        } catch let error as StoreError {
            return Self.storeError(error)
        } catch {
            return Self.error(.notFound, "no_keys", "\(error)")
        }
    }
}
