import ArgumentParser
import Foundation
import TelemetryCatalog
import TelemetryStore

/// `telemetry keys create|list|revoke`: the collector's API keys, in its key file.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list and revoke the collector's API keys.",
        discussion: """
            Keys live hashed in DIR/keys.sqlite (--data, or --keys PATH), next to the store; these \
            commands work on that file directly, also while the collector runs (it sees a change on \
            the next request: a revoked key stops working at once). The admin API (POST/GET \
            /v1/keys, DELETE /v1/keys/{key_id}) does the same over HTTP.

            Once any key exists, every /v1 request needs `Authorization: Bearer KEY`. Scopes: \
            ingest (POST /v1/events, own tenant's events only), read (every GET /v1 route, own \
            tenant only), admin (everything, every tenant, key management). CLI commands that talk \
            to a collector read their key from TELEMETRY_API_KEY.

            Examples:
              telemetry keys create --tenant 0b6c7c2e-5f0e-4c55-9c0f-7f2b1d1e9a10 \\
                  --scopes ingest,read --name worker
              telemetry keys create --scopes admin --name ops
              telemetry keys list
              telemetry keys revoke 3f9a0c1d2e4b5a69
            """,
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Location: ParsableArguments {
        @Option(help: "The collector's data folder; the keys are DIR/keys.sqlite.")
        var data: String = "./telemetry-data"

        @Option(help: "The key file itself (overrides --data).")
        var keys: String?

        func open() -> KeyStore {
            do {
                return try KeyStore(path: keys ?? (data as NSString).appendingPathComponent("keys.sqlite"))
            } catch {
                CommandFailure.exit("\(error)")
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key; prints what it is, then the key alone on the last line (shown only now).")

        @OptionGroup var location: Location

        @Option(help: "The tenant (UUID) the key acts for; optional for admin keys, which act for every tenant.")
        var tenant: String?

        @Option(help: "Comma-separated scopes: ingest, read, admin.")
        var scopes: String

        @Option(help: "A label: who or what holds the key.")
        var name: String?

        func validate() throws {
            do {
                _ = try KeyScope.parseList(scopes)
            } catch {
                throw ValidationError(error.message)
            }
            if let tenant, UUID(uuidString: tenant) == nil { throw ValidationError("--tenant must be a UUID; got \(tenant)") }
        }

        func run() throws {
            let store = location.open()
            do {
                let (key, token) = try store.create(tenantID: tenant, scopes: try KeyScope.parseList(scopes), name: name)
                print("created key \(key.id) for \(key.tenantID.map { "tenant \($0)" } ?? "every tenant") with scopes \(key.scopeList)")
                print("store it now: only its hash is kept, so it cannot be shown again")
                print(token)
            } catch {
                CommandFailure.exit(error.message)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets), revoked ones included.")

        @OptionGroup var location: Location

        @Option(help: "Only this tenant's keys.")
        var tenant: String?

        @Option(help: "text or json (one object a line).")
        var format: String = "text"

        func validate() throws {
            guard ["text", "json"].contains(format) else { throw ValidationError("--format must be text or json") }
        }

        func run() throws {
            let keys: [APIKey]
            do {
                keys = try location.open().list(tenantID: tenant)
            } catch {
                CommandFailure.exit(error.message)
            }
            for key in keys {
                let created = ISO8601Timestamp.string(fromMicroseconds: key.createdMicros)
                let revoked = key.revokedMicros.map { ISO8601Timestamp.string(fromMicroseconds: $0) }
                if format == "json" {
                    let object: JSONValue = [
                        "key_id": .string(key.id), "tenant_id": key.tenantID.map { .string($0) } ?? .null,
                        "scopes": .array(key.scopes.sorted().map { .string($0.rawValue) }), "name": key.name.map { .string($0) } ?? .null,
                        "created_at": .string(created), "revoked_at": revoked.map { .string($0) } ?? .null,
                    ]
                    print(object.render())
                } else {
                    let state = revoked.map { "revoked \($0)" } ?? "active"
                    print(
                        "\(key.id)  \(key.tenantID ?? "every tenant")  \(key.scopeList)  \(state)  created \(created)\(key.name.map { "  \($0)" } ?? "")")
                }
            }
            if keys.isEmpty, format == "text" {
                print("no keys: the collector serves loopback only, without keys (telemetry keys create makes one)")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key at once (a running collector refuses it from its next request).")

        @OptionGroup var location: Location

        @Argument(help: "The key's id (the 16 hex digits after xtk_, as `keys list` shows).")
        var keyID: String

        func run() throws {
            do {
                guard let key = try location.open().revoke(id: keyID) else {
                    CommandFailure.exit("no key \(keyID); `telemetry keys list` shows them")
                }
                print("revoked key \(key.id) (\(key.tenantID.map { "tenant \($0)" } ?? "every tenant"), \(key.scopeList))")
            } catch {
                CommandFailure.exit(error.message)
            }
        }
    }
}
