import Foundation
import Testing

/// `telemetry keys`, a keyed collector in a child process, and Schemathesis against its OpenAPI
/// document with a key.
@Suite struct KeysCommandTests {
    static let tenant = "cccccccc-0000-4000-8000-00000000000c"

    @Test func createListRevokeAndTheLoopbackRule() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        // No key: any address but loopback is refused, saying how to make one.
        let refused = try await CLI.runOffPool(["serve", "--data", data.path, "--host", "0.0.0.0", "--port", "0"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("telemetry keys create"))

        let created = try await CLI.runOffPool(["keys", "create", "--data", data.path, "--tenant", Self.tenant, "--scopes", "ingest,read", "--name", "worker"])
        #expect(created.status == 0, "\(created.stderr)")
        let key = try #require(created.stdout.split(separator: "\n").last.map(String.init))
        #expect(key.wholeMatch(of: /xtk_[0-9a-f]{16}_[0-9a-f]{64}/) != nil, "the key alone on the last line")
        let id = String(key.dropFirst(4).prefix(16))

        let listed = try await CLI.runOffPool(["keys", "list", "--data", data.path, "--format", "json"])
        #expect(listed.stdout.contains(#""key_id":"\#(id)""#) && listed.stdout.contains(#""scopes":["ingest","read"]"#))
        #expect(!listed.stdout.contains(key.suffix(64)), "never the secret")
        #expect(try await CLI.runOffPool(["keys", "revoke", "--data", data.path, id]).status == 0)
        #expect(try await CLI.runOffPool(["keys", "list", "--data", data.path]).stdout.contains("revoked"))
        #expect(try await CLI.runOffPool(["keys", "revoke", "--data", data.path, "0000000000000000"]).status == 2)
        #expect(try await CLI.runOffPool(["keys", "create", "--data", data.path, "--scopes", "read"]).status == 2, "a tenant is needed")
        #expect(try await CLI.runOffPool(["keys", "create", "--data", data.path, "--tenant", Self.tenant, "--scopes", "write"]).status == 2)
    }

    @Test func clientCommandsSendTheKeyFromTheEnvironment() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let created = try await CLI.runOffPool(["keys", "create", "--data", data.path, "--tenant", Self.tenant, "--scopes", "ingest,read"])
        let key = try #require(created.stdout.split(separator: "\n").last.map(String.init))
        let server = try await ServerProcess.start(data: data)
        defer { server.stop() }
        let sample = try await CLI.runOffPool(["sample", "--count", "5", "--seed", "3"])
        let events = sample.stdout.replacing(#/"tenant_id":"[^"]+"/#, with: #""tenant_id":"\#(Self.tenant)""#)
        let denied = try await CLI.runOffPool(["send", "-", "--url", server.url], stdin: Data(events.utf8))
        #expect(denied.status != 0 && denied.stderr.contains("401"), "\(denied.stderr)")
        let sent = try await CLI.runOffPool(["send", "-", "--url", server.url], stdin: Data(events.utf8), environment: ["TELEMETRY_API_KEY": key])
        #expect(sent.status == 0, "\(sent.stderr)")
        let queried = try await CLI.runOffPool(["query", "--url", server.url, "--format", "json"], environment: ["TELEMETRY_API_KEY": key])
        #expect(queried.stdout.split(separator: "\n").count == 5, "\(queried.stderr)")
    }

    /// Schemathesis (PyPI) generates requests from /openapi.json and sends them with an admin key:
    /// no answer may be a 5xx or differ from the document (status, content type, headers, body
    /// schema), routes must refuse requests without the key, and undeclared methods get 405.
    /// The stream is left out: its answer never ends (its behaviour is tested on its own).
    @Test func schemathesisFindsNoServerErrorAndNoAnswerOutsideTheDocument() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let created = try await CLI.runOffPool(["keys", "create", "--data", data.path, "--scopes", "admin"])
        let key = try #require(created.stdout.split(separator: "\n").last.map(String.init))
        let server = try await ServerProcess.start(data: data, extraArguments: ["--fsync", "normal", "--rate-limit", "0", "--order-wait", "1s"])
        defer { server.stop() }
        let checks = [
            "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
            "response_headers_conformance", "unsupported_method", "allow_header_conformance", "ignored_auth",
        ]
        let result = try await CLI.runOffPool(
            [
                "python3", "-m", "schemathesis.cli", "run", "\(server.url)/openapi.json", "-H", "Authorization: Bearer \(key)", "--checks", checks.joined(separator: ","),
                "--exclude-path", "/v1/stream", "--max-examples", "25", "--seed", "1", "--generation-database", "none", "--no-color",
            ], executable: URL(fileURLWithPath: "/usr/bin/env"), timeoutSeconds: 600)
        #expect(result.status == 0, "\(result.stdout.suffix(4000))\n\(result.stderr.suffix(2000))")
        #expect(result.stdout.contains("passed"))
    }
}
