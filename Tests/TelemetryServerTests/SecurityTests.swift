import Foundation
import TelemetryCatalog
import TelemetryClient
import TelemetryServer
import TelemetryStore
import Testing

/// API keys, scopes and tenants against a real collector on loopback.
@Suite struct SecurityTests {
    static let tenantA = "aaaaaaaa-0000-4000-8000-00000000000a"
    static let tenantB = "bbbbbbbb-0000-4000-8000-00000000000b"

    static func keyFile() -> String {
        TestScratch.path("keys-\(UUID().uuidString)/keys.sqlite").path
    }

    /// `count` valid events of `tenant` (of the given type when set) as NDJSON lines.
    static func events(_ count: Int, tenant: String, type: String? = nil, seed: UInt64) -> [String] {
        var sampler = EventSampler(seed: seed)
        return (0..<count).map { _ in
            var event = type.map { sampler.sample(Catalog.builtin.latest($0)!) } ?? sampler.sample()
            event["tenant_id"] = .string(tenant)
            return event.render()
        }
    }

    @Test func keysAreRandomHashedAndCheckedWholly() throws {
        let path = Self.keyFile()
        let store = try KeyStore(path: path)
        #expect(try !store.isEnforcing)
        let (key, token) = try store.create(tenantID: Self.tenantA, scopes: [.ingest, .read], name: "worker")
        let (_, other) = try store.create(tenantID: Self.tenantA, scopes: [.read])
        #expect(token != other)
        #expect(token.hasPrefix("xtk_\(key.id)_") && token.count == 85, "64 bits of id, 256 of secret")
        #expect(try store.isEnforcing)
        #expect(try store.check(token) == .valid(key))
        // Only a hash is on disk: neither the secret nor the whole key appears in the file.
        let secret = String(token.suffix(64))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.range(of: Data(secret.utf8)) == nil)
        // A wrong secret for a known id, an unknown id, and junk are all refused.
        var wrong = Array(token)
        wrong[wrong.count - 1] = wrong.last == "0" ? "1" : "0"
        #expect(try store.check(String(wrong)) == .unknown(keyID: key.id))
        #expect(try store.check("xtk_0000000000000000_" + secret) == .unknown(keyID: nil))
        #expect(try store.check("hunter2") == .malformed)
        #expect(throws: StoreError.self) { try store.create(tenantID: nil, scopes: [.read]) }
        #expect(throws: StoreError.self) { try store.create(tenantID: "not-a-uuid", scopes: [.read]) }
    }

    @Test func withoutKeysTheCollectorIsOpenAndOnceOneExistsEveryV1RouteAsksForIt() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        try await TestCollector.run(keys: keys) { collector in
            let anonymous = collector.connection()
            #expect(try await anonymous.post(Self.events(1, tenant: Self.tenantA, seed: 1)[0]).status == 200, "no key yet: open")
            let (_, token) = try keys.create(tenantID: Self.tenantA, scopes: [.ingest, .read])
            for (method, path) in [
                ("POST", "/v1/events"), ("GET", "/v1/events"), ("GET", "/v1/events/\(UUID())"), ("GET", "/v1/rejected"),
                ("GET", "/v1/stream"), ("GET", "/v1/operations"), ("GET", "/v1/stats"), ("GET", "/v1/catalog"), ("GET", "/v1/keys"),
                ("DELETE", "/v1/keys/0000000000000000"),
            ] {
                let response = try await anonymous.request(method, path, body: method == "POST" ? Array("{}".utf8) : [])
                #expect(response.status == 401, "\(method) \(path)")
                #expect(response.header("www-authenticate")?.hasPrefix("Bearer") == true)
            }
            // Outside /v1 nothing is asked: no tenant's data there.
            for path in ["/healthz", "/readyz", "/openapi.json", "/", "/metrics"] {
                #expect(try await anonymous.request("GET", path).status == 200, "\(path)")
            }
            let keyed = collector.connection(key: token)
            #expect(try await keyed.getJSON("/v1/events").status == 200)
            let junk = collector.connection(key: "xtk_" + String(repeating: "0", count: 16) + "_" + String(repeating: "1", count: 64))
            #expect(try await junk.getJSON("/v1/events").json["error"].map { "\($0)" }?.contains("unknown API key") == true)
        }
    }

    @Test func scopesLimitRoutes() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        let ingestOnly = try keys.create(tenantID: Self.tenantA, scopes: [.ingest]).token
        let readOnly = try keys.create(tenantID: Self.tenantA, scopes: [.read]).token
        let admin = try keys.create(tenantID: nil, scopes: [.admin]).token
        try await TestCollector.run(keys: keys) { collector in
            let line = Self.events(1, tenant: Self.tenantA, seed: 2)[0]
            let ingest = collector.connection(key: ingestOnly)
            #expect(try await ingest.post(line).status == 200)
            let refused = try await ingest.getJSON("/v1/events")
            #expect(refused.status == 403)
            #expect("\(refused.json["error"] ?? "")".contains("needs read"))
            let read = collector.connection(key: readOnly)
            #expect(try await read.post(line).status == 403)
            #expect(try await read.getJSON("/v1/events").status == 200)
            #expect(try await read.getJSON("/v1/keys").status == 403)
            let root = collector.connection(key: admin)
            #expect(try await root.getJSON("/v1/keys").status == 200)
            // Any key may ask what it is.
            let me = try await ingest.getJSON("/v1/access")
            #expect(me.status == 200 && me.json["tenant_id"] as? String == Self.tenantA && me.json["scopes"] as? [String] == ["ingest"])
            #expect(me.json["all_tenants"] as? Bool == false)
            #expect(try await root.getJSON("/v1/access").json["all_tenants"] as? Bool == true)
            #expect(try await root.post(Self.events(1, tenant: Self.tenantB, seed: 3)[0]).json["accepted"] as? Int == 1, "admin writes any tenant")
        }
    }

    @Test func aKeySeesAndWritesItsOwnTenantOnlyOnEveryRoute() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        let keyA = try keys.create(tenantID: Self.tenantA, scopes: [.ingest, .read]).token
        let admin = try keys.create(tenantID: nil, scopes: [.admin]).token
        try await TestCollector.run(keys: keys) { collector in
            let root = collector.connection(key: admin)
            let a = collector.connection(key: keyA)
            // Tenant B's events, a generation among them (an operation), and an invalid one.
            let bEvents = Self.events(5, tenant: Self.tenantB, seed: 4) + Self.events(1, tenant: Self.tenantB, type: "xumi.generation.start", seed: 5)
            #expect(try await root.post(bEvents.joined(separator: "\n")).json["accepted"] as? Int == 6)
            var badB = Self.events(1, tenant: Self.tenantB, seed: 6)[0]
            badB = badB.replacingOccurrences(of: #""event_id":""#, with: #""event_id":"x"#)
            #expect((try await root.post(badB).json["rejected"] as? [Any])?.count == 1)

            // A batch of A's key with both tenants' events: A's stored, B's rejected with the reason, and recorded.
            let mine = Self.events(3, tenant: Self.tenantA, seed: 7) + Self.events(1, tenant: Self.tenantA, type: "xumi.generation.start", seed: 8)
            let smuggled = Self.events(2, tenant: Self.tenantB, seed: 9)
            let mixed = try await a.post((mine + smuggled).joined(separator: "\n"))
            #expect(mixed.status == 200)
            #expect(mixed.json["accepted"] as? Int == 4)
            let rejected = mixed.json["rejected"] as? [[String: Any]] ?? []
            #expect(rejected.map { $0["index"] as? Int } == [4, 5])
            let errors = rejected.first?["errors"] as? [[String: String]]
            #expect(errors?.first?["code"] == "forbidden_tenant" && errors?.first?["field"] == "tenant_id")
            let recorded = try await collector.store.rejected(RejectedQuery())
            #expect(recorded.rejected.filter { $0.issues.first?.code == .forbiddenTenant }.count == 2)

            // Lists: only A's, and asking for B is refused.
            let listed = try await a.getJSON("/v1/events?limit=1000")
            let tenants = Set((listed.json["events"] as? [[String: Any]] ?? []).compactMap { $0["tenant_id"] as? String })
            #expect(tenants == [Self.tenantA])
            #expect((listed.json["events"] as? [Any])?.count == 4)
            #expect(try await a.getJSON("/v1/events?tenant_id=\(Self.tenantB)").status == 403)
            #expect(try await a.getJSON("/v1/events?tenant_id=\(Self.tenantA)").status == 200)
            // By id: B's event is as absent as one never sent; the admin sees it.
            let bID = eventID(of: bEvents[0])
            #expect(try await a.getJSON("/v1/events/\(bID)").status == 404)
            #expect(try await root.getJSON("/v1/events/\(bID)").status == 200)
            #expect(try await a.getJSON("/v1/events/\(eventID(of: mine[0]))").status == 200)
            // Rejected: A's own (what A's key sent), none of B's.
            let aRejected = try await a.getJSON("/v1/rejected")
            let aCodes = (aRejected.json["rejected"] as? [[String: Any]] ?? []).compactMap {
                (($0["errors"] as? [[String: String]])?.first?["code"])
            }
            #expect(aCodes == ["forbidden_tenant", "forbidden_tenant"])
            let bRejected = try await root.getJSON("/v1/rejected?tenant_id=\(Self.tenantB)")
            #expect((bRejected.json["rejected"] as? [Any])?.count == 1, "B's own invalid event is B's")
            #expect(try await a.getJSON("/v1/rejected?tenant_id=\(Self.tenantB)").status == 403)
            #expect(((try await root.getJSON("/v1/rejected")).json["rejected"] as? [Any])?.count == 3)
            // Stats: A's count only.
            let stats = try await a.getJSON("/v1/stats?agg=count")
            #expect((stats.json["groups"] as? [[String: Any]])?.first?["count"] as? Int == 4)
            #expect(try await a.getJSON("/v1/stats?agg=count&tenant_id=\(Self.tenantB)").status == 403)
            let allStats = try await root.getJSON("/v1/stats?agg=count")
            #expect((allStats.json["groups"] as? [[String: Any]])?.first?["count"] as? Int == 10)
            // Operations: A's generation only.
            let operations = try await a.getJSON("/v1/operations")
            let opTenants = (operations.json["operations"] as? [[String: Any]] ?? []).compactMap { $0["tenant_id"] as? String }
            #expect(!opTenants.isEmpty && Set(opTenants) == [Self.tenantA])
            let allOperations = try await root.getJSON("/v1/operations")
            #expect(Set((allOperations.json["operations"] as? [[String: Any]] ?? []).compactMap { $0["tenant_id"] as? String }) == [Self.tenantA, Self.tenantB])
            #expect(try await a.getJSON("/v1/operations?tenant_id=\(Self.tenantB)").status == 403)
            // Keys: an admin route.
            #expect(try await a.getJSON("/v1/keys").status == 403)
            // Stream: B's new events never reach A's follower; A's do.
            #expect(try await a.getJSON("/v1/stream?tenant_id=\(Self.tenantB)").status == 403)
            let seen = try await Self.follow(collector.port, key: keyA, until: 2) {
                _ = try await root.post(Self.events(3, tenant: Self.tenantB, seed: 10).joined(separator: "\n"))
                _ = try await a.post(Self.events(2, tenant: Self.tenantA, seed: 11).joined(separator: "\n"))
            }
            #expect(seen.count == 2 && seen.allSatisfy { $0.contains(Self.tenantA) && !$0.contains(Self.tenantB) })
        }
    }

    /// Follows /v1/stream with `key` while `act` runs; returns the first `until` events' data lines.
    static func follow(_ port: Int, key: String, until: Int, _ act: @Sendable () async throws -> Void) async throws -> [String] {
        let connection = HTTPConnection(host: "127.0.0.1", port: port, apiKey: key)
        let (opened, open) = AsyncStream.makeStream(of: Void.self)
        let deadline = Date().addingTimeInterval(60)
        async let lines: [String] = Task.detached {
            var data: [String] = []
            var pending = ""
            _ = try? connection.stream("GET", "/v1/stream", onHead: { _ in open.yield() }) { chunk in
                pending += String(decoding: chunk, as: UTF8.self)
                while let newline = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<newline])
                    pending = String(pending[pending.index(after: newline)...])
                    if line.hasPrefix("data: ") { data.append(String(line.dropFirst(6))) }
                }
                return data.count < until && Date() < deadline
            }
            return data
        }.value
        for await _ in opened { break }
        try await act()
        return await lines
    }

    @Test func aRevokedKeyStopsAtOnceEvenWhenRevokedByAnotherProcess() async throws {
        let path = Self.keyFile()
        let keys = try KeyStore(path: path)
        let (key, token) = try keys.create(tenantID: Self.tenantA, scopes: [.read])
        try await TestCollector.run(keys: keys) { collector in
            let reader = collector.connection(key: token)
            #expect(try await reader.getJSON("/v1/events").status == 200)
            // The CLI opens the file on its own, as another process would.
            #expect(try KeyStore(path: path).revoke(id: key.id)?.revokedMicros != nil)
            let refused = try await reader.getJSON("/v1/events")
            #expect(refused.status == 401)
            #expect("\(refused.json["error"] ?? "")".contains("revoked"))
            // Audited: the failure is counted by key id and reason.
            let metrics = try await collector.connection().request("GET", "/metrics").text
            #expect(metrics.contains(#"telemetry_auth_failures_total{key_id="\#(key.id)",reason="revoked"} 1"#))
        }
    }

    @Test func theAdminAPICreatesListsAndRevokesKeys() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        let admin = try keys.create(tenantID: nil, scopes: [.admin], name: "ops").token
        try await TestCollector.run(keys: keys) { collector in
            let root = collector.connection(key: admin)
            let body = #"{"tenant_id":"\#(Self.tenantA)","scopes":["ingest"],"name":"worker-1"}"#
            let created = try await root.request("POST", "/v1/keys", headers: [("Content-Type", "application/json")], body: Array(body.utf8))
            #expect(created.status == 201)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])
            let token = try #require(object["key"] as? String)
            let id = try #require(object["key_id"] as? String)
            #expect(object["scopes"] as? [String] == ["ingest"])
            let worker = collector.connection(key: token)
            #expect(try await worker.post(Self.events(1, tenant: Self.tenantA, seed: 12)[0]).status == 200)
            let listed = try await root.getJSON("/v1/keys")
            let ids = (listed.json["keys"] as? [[String: Any]] ?? []).compactMap { $0["key_id"] as? String }
            #expect(ids.count == 2 && ids.contains(id))
            #expect(!String(decoding: try await root.request("GET", "/v1/keys").body, as: UTF8.self).contains(String(token.suffix(64))))
            #expect(try await root.request("DELETE", "/v1/keys/\(id)").status == 200)
            #expect(try await worker.post(Self.events(1, tenant: Self.tenantA, seed: 13)[0]).status == 401)
            #expect(try await root.request("DELETE", "/v1/keys/ffffffffffffffff").status == 404)
            let bad = try await root.request("POST", "/v1/keys", body: Array(#"{"scopes":["write"]}"#.utf8))
            #expect(bad.status == 400)
            let metrics = try await collector.connection().request("GET", "/metrics").text
            #expect(metrics.contains(#"telemetry_api_key_changes_total{action="created"} 1"#))
            #expect(metrics.contains(#"telemetry_api_key_changes_total{action="revoked"} 1"#))
        }
    }

    @Test func eachKeyHasItsOwnRateLimit() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        let first = try keys.create(tenantID: Self.tenantA, scopes: [.read]).token
        let second = try keys.create(tenantID: Self.tenantA, scopes: [.read]).token
        try await TestCollector.run(keys: keys, configure: { $0.rateLimit = 0.01; $0.rateBurst = 3 }) { collector in
            // A token every 100 s: however loaded the machine, none comes back during the test.
            let one = collector.connection(key: first)
            for _ in 0..<3 { #expect(try await one.getJSON("/v1/events").status == 200) }
            let limited = try await one.request("GET", "/v1/events")
            #expect(limited.status == 429)
            #expect(Int(limited.header("retry-after") ?? "") ?? 0 >= 1)
            // Another key is not slowed by the first one's burst.
            #expect(try await collector.connection(key: second).getJSON("/v1/events").status == 200)
        }
    }

    @Test func theEmitterSendsItsKey() async throws {
        let keys = try KeyStore(path: Self.keyFile())
        let token = try keys.create(tenantID: Self.tenantA, scopes: [.ingest]).token
        try await TestCollector.run(keys: keys) { collector in
            var configuration = EmitterTests.configuration(port: collector.port)
            configuration.tenantID = UUID(uuidString: Self.tenantA)!
            configuration.apiKey = token
            let emitter = try TelemetryEmitter(configuration: configuration, logger: EmitterTests.logger)
            try await EmitterTests.running(emitter) {
                for i in 0..<20 { _ = EmitterTests.emit(emitter, i) }
                try await EmitterTests.waitUntil { emitter.counts.sent == 20 }
            }
            #expect(try await collector.store.counts().events == 20)
        }
    }
}
