import Foundation
import TelemetryCatalog
import TelemetryClient
import TelemetryProcess
import Testing

/// The dashboard in a real browser: headless Chromium (installed by scripts/test) loads `GET /` from a
/// collector seeded with known events, runs the page's script, and the rendered DOM shows the
/// seeded models, the counts and a chart in every section, with nothing on the console.
@Suite struct DashboardTests {
    /// On either store: the page reads only the API, which both answer the same way.
    @Test(arguments: StoreKind.allCases) func aBrowserRendersEverySectionFromTheSeededEvents(_ kind: StoreKind) async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let server = try await ServerProcess.start(data: data, extraArguments: try kind.serveArguments())
        defer { server.stop() }

        // 3,800 events of every type over the last few minutes, whose completions pair.
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        var sampler = EventSampler(seed: 9, startMicros: now - 10 * 60 * 1_000_000)
        sampler.linksLifecycles = true
        sampler.lifecycleLag = 4
        sampler.spacingMicros = 100_000
        let lines = (0..<3_800).map { i in sampler.sample(Catalog.builtin.events[i % 19]).render() }
        let connection = HTTPConnection(host: "127.0.0.1", port: server.port)
        for chunk in stride(from: 0, to: lines.count, by: 1000) {
            let body = lines[chunk..<min(lines.count, chunk + 1000)].joined(separator: "\n")
            let response = try await connection.request("POST", "/v1/events", body: Array(body.utf8))
            #expect(response.status == 200)
        }

        let page = try await connection.request("GET", "/")
        #expect(page.header("content-type")?.hasPrefix("text/html") == true)
        // No outside resources: no linked styles or scripts, and no address but the SVG namespace.
        #expect(!page.text.contains("<link") && !page.text.contains("src=") && !page.text.contains("@import"))
        #expect(page.text.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http") == false)

        let (dom, log) = try await Self.render("\(server.url)/?range=1h&tail=off")
        #expect(dom.contains("data-ready=\"true\""), "the script ran to its end")
        #expect(dom.contains(/data-drawn-ms="\d+"/), "the time every section took to draw is on the page")
        let consoleLines = log.split(separator: "\n").filter { $0.contains(":CONSOLE") }
        #expect(consoleLines.isEmpty, "console: \(consoleLines.prefix(5))")
        if let failure = dom.range(of: "<h3>Could not load this section</h3>") {
            Issue.record("a section failed: \(dom[failure.lowerBound...].prefix(400))")
        }

        // A chart in every section.
        let sections = ["overview", "generation", "loads", "pods", "pbac", "assets"]
        for (index, section) in sections.enumerated() {
            let start = try #require(dom.range(of: "data-section=\"\(section)\""))
            let end = index + 1 < sections.count ? dom.range(of: "data-section=\"\(sections[index + 1])\"")?.lowerBound ?? dom.endIndex : dom.endIndex
            #expect(dom[start.upperBound..<end].contains("data-chart="), "no chart in \(section)")
        }
        // The seeded models and counts.
        for model in ["sdxl-1.0", "flux-1-dev", "llama-3.1-8b-instruct", "whisper-large-v3", "qwen2.5-14b-instruct"] {
            #expect(dom.contains(model), "\(model) is not shown")
        }
        #expect(dom.contains(">3800<"), "the accepted count is shown")
        #expect(dom.contains("nvidia-h100-80gb"))
        #expect(dom.contains("data-chart=\"events-by-topic\""))
    }

    /// With API keys, the page asks for one, and with a tenant's read key shows that tenant only.
    @Test func withKeysThePageAsksForOneAndShowsTheKeysTenantOnly() async throws {
        let data = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let tenantA = "aaaaaaaa-0000-4000-8000-00000000000a"
        let tenantB = "bbbbbbbb-0000-4000-8000-00000000000b"
        let admin = try #require(try await CLI.runOffPool(["keys", "create", "--data", data.path, "--scopes", "admin"]).stdout.split(separator: "\n").last)
        let reader = try #require(
            try await CLI.runOffPool(["keys", "create", "--data", data.path, "--tenant", tenantA, "--scopes", "read"]).stdout.split(separator: "\n").last)
        let server = try await ServerProcess.start(data: data)
        defer { server.stop() }
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        var sampler = EventSampler(seed: 10, startMicros: now - 5 * 60 * 1_000_000)
        sampler.spacingMicros = 100_000
        let lines = (0..<1_100).map { i in
            var event = sampler.sample(Catalog.builtin.events[i % 19])
            event["tenant_id"] = .string(i < 300 ? tenantA : tenantB)
            return event.render()
        }
        let connection = HTTPConnection(host: "127.0.0.1", port: server.port, apiKey: String(admin))
        let posted = try await connection.request("POST", "/v1/events", body: Array(lines.joined(separator: "\n").utf8))
        #expect(posted.status == 200 && posted.text.contains(#""accepted":1100"#))

        let (locked, _) = try await Self.render("\(server.url)/?range=1h&tail=off")
        #expect(locked.contains("data-ready=\"true\""))
        #expect(locked.contains("requires an API key"), "the key form says what is needed")
        #expect(!locked.contains(">1100<") && !locked.contains(">300<"))

        let (dom, log) = try await Self.render("\(server.url)/?range=1h&tail=off#key=\(reader)")
        #expect(dom.contains("data-ready=\"true\""))
        #expect(!dom.contains("<h3>Could not load this section</h3>"))
        #expect(log.split(separator: "\n").filter { $0.contains(":CONSOLE") }.isEmpty)
        #expect(dom.contains(">300<"), "tenant A's count")
        #expect(!dom.contains(">1100<") && !dom.contains(">800<"), "nothing of tenant B")
    }

    /// The DOM after the page's script has run, and Chromium's log.
    static func render(_ url: String) async throws -> (dom: String, log: String) {
        let browser = try await ChildProcess.run(
            "/usr/bin/env",
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                "--virtual-time-budget=15000", "--dump-dom", url,
            ])
        return (browser.output, browser.errors)
    }
}
