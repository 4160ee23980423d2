import Crypto
import Foundation
import GRDB
import Synchronization

/// What an API key may do. `admin` may do everything, for any tenant, and manage keys.
public enum KeyScope: String, CaseIterable, Sendable, Comparable {
    case ingest
    case read
    case admin

    public static func < (lhs: KeyScope, rhs: KeyScope) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// Parses `ingest,read` (any order, spaces allowed).
    public static func parseList(_ text: String) throws(StoreError) -> Set<KeyScope> {
        var scopes: Set<KeyScope> = []
        for part in text.split(separator: ",") {
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let scope = KeyScope(rawValue: name) else {
                throw StoreError(.badQuery, "unknown scope \"\(name)\"; the scopes are ingest, read and admin")
            }
            scopes.insert(scope)
        }
        guard !scopes.isEmpty else { throw StoreError(.badQuery, "a key needs at least one scope: ingest, read or admin") }
        return scopes
    }
}

/// An API key as stored: everything but its secret, of which only a hash is kept.
public struct APIKey: Sendable, Hashable {
    /// The public part of the key (16 hex digits), shown in lists, logs and metrics.
    public let id: String
    /// The tenant the key acts for; `nil` only for an admin key created without one.
    public let tenantID: String?
    public let scopes: Set<KeyScope>
    /// A label for people (which service holds it).
    public let name: String?
    public let createdMicros: Int64
    public let revokedMicros: Int64?

    /// Whether the key grants `scope` (admin grants every scope).
    public func allows(_ scope: KeyScope) -> Bool { scopes.contains(.admin) || scopes.contains(scope) }

    /// Whether the key may act on every tenant (admin keys).
    public var isAdmin: Bool { scopes.contains(.admin) }

    /// Whether the key may act on `tenant`.
    public func mayAct(onTenant tenant: String) -> Bool { isAdmin || tenantID == tenant }

    /// The scopes as `ingest,read`.
    public var scopeList: String { scopes.sorted().map(\.rawValue).joined(separator: ",") }
}

/// The outcome of presenting a key.
public enum KeyCheck: Sendable, Equatable {
    case valid(APIKey)
    /// The key was revoked; it names the key for the audit log.
    case revoked(APIKey)
    /// No such key, or a wrong secret for a known id (`keyID` is then set, for the audit log).
    case unknown(keyID: String?)
    /// Not shaped like a key of ours.
    case malformed
}

/// The collector's API keys, in a SQLite file of their own (`keys.sqlite` next to the data).
///
/// A key is `xtk_<id>_<secret>`: 64 random bits of id and 256 of secret. Only the SHA-256 of the
/// secret is stored, and a presented secret is compared with it in constant time. Several processes
/// may use the file at once (the CLI creates keys while the collector runs): the collector notices
/// another process's change on the next request (SQLite's `data_version`) and reloads, so a revoked
/// key stops working at once.
public final class KeyStore: Sendable {
    private struct Cache {
        var dataVersion: Int64 = -1
        var keys: [String: (key: APIKey, hash: [UInt8])] = [:]
        /// Whether any key was ever created (revoked ones included): from then on keys are required.
        var anyKey = false
    }

    public let path: String
    private let database: DatabaseQueue
    private let cache = Mutex(Cache())

    /// Opens (creating when missing) the key file at `path`.
    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            database = try DatabaseQueue(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE api_keys (
                            id TEXT PRIMARY KEY,
                            tenant_id TEXT,
                            scopes TEXT NOT NULL,
                            name TEXT,
                            secret_sha256 BLOB NOT NULL,
                            created_us INTEGER NOT NULL,
                            revoked_us INTEGER
                        )
                        """)
            }
            try migrator.migrate(database)
            // Owner-only: the hashes are not secrets, but nobody else needs to read or change them.
            chmod(path, 0o600)
        } catch {
            throw StoreError(.unavailable, "cannot open the key file \(path): \(error)", cause: error)
        }
        try reloadIfChanged()
    }

    /// Creates a key and returns it with its full text, which is shown once and never stored.
    public func create(tenantID: String?, scopes: Set<KeyScope>, name: String? = nil) throws(StoreError) -> (key: APIKey, token: String) {
        guard tenantID != nil || scopes.contains(.admin) else {
            throw StoreError(.badQuery, "a key without the admin scope needs a tenant (--tenant)")
        }
        if let tenantID, UUID(uuidString: tenantID) == nil {
            throw StoreError(.badQuery, "\(tenantID) is not a tenant id (a UUID)")
        }
        let id = Self.hex(Self.randomBytes(8))
        let secret = Self.hex(Self.randomBytes(32))
        let key = APIKey(
            id: id, tenantID: tenantID?.lowercased(), scopes: scopes, name: name, createdMicros: Self.nowMicros(), revokedMicros: nil)
        let hash = Array(SHA256.hash(data: Array(secret.utf8)))
        do {
            try database.write { db in
                try db.execute(
                    sql: "INSERT INTO api_keys (id, tenant_id, scopes, name, secret_sha256, created_us) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [key.id, key.tenantID, key.scopeList, name, Data(hash), key.createdMicros])
            }
        } catch {
            throw StoreError(.unavailable, "cannot write the key file \(path): \(error)", cause: error)
        }
        cache.withLock {
            $0.keys[id] = (key, hash)
            $0.anyKey = true
        }
        return (key, "xtk_\(id)_\(secret)")
    }

    /// Every key (revoked ones too), oldest first; only `tenantID`'s when given.
    public func list(tenantID: String? = nil) throws(StoreError) -> [APIKey] {
        try reloadIfChanged()
        return cache.withLock { cache in
            cache.keys.values.map(\.key)
                .filter { tenantID == nil || $0.tenantID == tenantID?.lowercased() }
                .sorted { ($0.createdMicros, $0.id) < ($1.createdMicros, $1.id) }
        }
    }

    /// The key with `id`, if any.
    public func key(id: String) throws(StoreError) -> APIKey? {
        try reloadIfChanged()
        return cache.withLock { $0.keys[id.lowercased()]?.key }
    }

    /// Revokes the key `id` at once; returns it (nil when there is no such key). Revoking twice keeps
    /// the first revocation time.
    @discardableResult
    public func revoke(id: String) throws(StoreError) -> APIKey? {
        let id = id.lowercased()
        let now = Self.nowMicros()
        do {
            try database.write { db in
                try db.execute(sql: "UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL", arguments: [now, id])
            }
        } catch {
            throw StoreError(.unavailable, "cannot write the key file \(path): \(error)", cause: error)
        }
        try reload()
        return cache.withLock { $0.keys[id]?.key }
    }

    /// Whether keys are required: once any key was created (even if all are revoked since, so that
    /// revoking the last key never opens the collector).
    public var isEnforcing: Bool {
        get throws(StoreError) {
            try reloadIfChanged()
            return cache.withLock { $0.anyKey }
        }
    }

    /// Checks a presented key (the text after `Bearer `).
    ///
    /// - Parameter reload: look for another process's changes first; `false` right after
    ///   ``isEnforcing``, which has just looked.
    public func check(_ token: some StringProtocol, reload: Bool = true) throws(StoreError) -> KeyCheck {
        guard let (id, secret) = Self.parse(token) else { return .malformed }
        if reload { try reloadIfChanged() }
        guard let entry = cache.withLock({ $0.keys[id] }) else { return .unknown(keyID: nil) }
        let presented = Array(SHA256.hash(data: Array(secret.utf8)))
        guard Self.constantTimeEqual(presented, entry.hash) else { return .unknown(keyID: id) }
        return entry.key.revokedMicros == nil ? .valid(entry.key) : .revoked(entry.key)
    }

    // MARK: internals

    /// `xtk_<16 hex>_<64 hex>` split into id and secret.
    static func parse(_ token: some StringProtocol) -> (id: String, secret: Substring)? {
        let utf8 = token.utf8
        guard utf8.count == 4 + 16 + 1 + 64, token.hasPrefix("xtk_") else { return nil }
        let text = Substring(token)
        let idStart = text.index(text.startIndex, offsetBy: 4)
        let idEnd = text.index(idStart, offsetBy: 16)
        guard text[idEnd] == "_" else { return nil }
        let id = text[idStart..<idEnd]
        let secret = text[text.index(after: idEnd)...]
        guard id.utf8.allSatisfy(Self.isHexDigit), secret.utf8.allSatisfy(Self.isHexDigit) else { return nil }
        return (String(id).lowercased(), secret)
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46)
    }

    /// Compares every byte whatever the first difference, so the time taken tells nothing.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    private func reloadIfChanged() throws(StoreError) {
        let version: Int64
        do {
            version = try database.read { db in try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
        } catch {
            throw StoreError(.unavailable, "cannot read the key file \(path): \(error)", cause: error)
        }
        guard cache.withLock({ $0.dataVersion != version }) else { return }
        try reload(version: version)
    }

    private func reload(version: Int64? = nil) throws(StoreError) {
        do {
            let (rows, dataVersion) = try database.read { db in
                (
                    try Row.fetchAll(db, sql: "SELECT id, tenant_id, scopes, name, secret_sha256, created_us, revoked_us FROM api_keys"),
                    try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0
                )
            }
            var keys: [String: (key: APIKey, hash: [UInt8])] = [:]
            for row in rows {
                let scopes = Set((row["scopes"] as String).split(separator: ",").compactMap { KeyScope(rawValue: String($0)) })
                let key = APIKey(
                    id: row["id"], tenantID: row["tenant_id"], scopes: scopes, name: row["name"], createdMicros: row["created_us"],
                    revokedMicros: row["revoked_us"])
                keys[key.id] = (key, Array(row["secret_sha256"] as Data))
            }
            cache.withLock {
                $0.keys = keys
                $0.anyKey = !keys.isEmpty
                $0.dataVersion = version ?? dataVersion
            }
        } catch {
            throw StoreError(.unavailable, "cannot read the key file \(path): \(error)", cause: error)
        }
    }

    private static func randomBytes(_ count: Int) -> [UInt8] {
        // SystemRandomNumberGenerator is the operating system's CSPRNG (getrandom on Linux).
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func nowMicros() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000_000).rounded()) }
}
