#if canImport(Glibc)
import Glibc
#endif
public import Foundation
import Synchronization
import TelemetryClient
import TelemetryProcess

/// A ClickHouse server of our own on loopback: its own config, data folder (under
/// `$TMPDIR/xumi-clickhouse` unless given) and ports, started from
/// the installed `clickhouse-server` (Debian's package), stopped by its PID. For tests and the
/// `bench clickhouse` command; production runs its own ClickHouse.
public final class ClickHouseLocalServer: Sendable {
    /// The server's folder: `config.xml`, `users.xml`, `data/`, `log/`, `server.pid`.
    public let directory: URL
    public let httpPort: Int
    public let tcpPort: Int
    public var pid: Int32 { process.pid }
    private let process: ChildProcess

    /// `clickhouse:http://127.0.0.1:PORT/DATABASE`.
    public func location(database: String) -> ClickHouseLocation {
        ClickHouseLocation(host: "127.0.0.1", port: httpPort, database: database)
    }

    /// Where the server binary is, if installed.
    public static var executable: String? {
        ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/local/bin/clickhouse-server"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// Where `clickhouse-client` is, if installed.
    public static var client: String? {
        ["/usr/bin/clickhouse-client", "/usr/local/bin/clickhouse-client"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public struct NotInstalled: Error, CustomStringConvertible {
        public var description: String {
            "clickhouse-server is not installed (Debian: apt-get install clickhouse-server clickhouse-client; scripts/test does it)"
        }
    }

    public struct StartFailed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Starts a server in `directory` (created; a new temporary folder when `nil`) on free loopback
    /// ports, or on `httpPort` when given (to restart a stopped server on its data), and waits until
    /// it answers `/ping`.
    public init(directory: URL? = nil, httpPort: Int? = nil, tcpPort: Int? = nil, timeoutSeconds: Double = 60) throws {
        guard let executable = Self.executable else { throw NotInstalled() }
        let directory =
            directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("xumi-clickhouse/server-\(UUID().uuidString.prefix(8))")
        self.directory = directory
        self.httpPort = try httpPort ?? Self.freePort()
        self.tcpPort = try tcpPort ?? Self.freePort()
        let manager = FileManager.default
        for folder in ["data", "tmp", "log", "user_files", "format_schemas"] {
            try manager.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        let path = directory.path
        let config = """
            <?xml version="1.0"?>
            <yandex>
                <logger><level>warning</level><log>\(path)/log/server.log</log><errorlog>\(path)/log/error.log</errorlog><size>10M</size><count>1</count></logger>
                <http_port>\(self.httpPort)</http_port>
                <tcp_port>\(self.tcpPort)</tcp_port>
                <listen_host>127.0.0.1</listen_host>
                <path>\(path)/data/</path>
                <tmp_path>\(path)/tmp/</tmp_path>
                <user_files_path>\(path)/user_files/</user_files_path>
                <format_schema_path>\(path)/format_schemas/</format_schema_path>
                <users_config>users.xml</users_config>
                <default_profile>default</default_profile>
                <default_database>default</default_database>
                <timezone>UTC</timezone>
                <mark_cache_size>268435456</mark_cache_size>
                <uncompressed_cache_size>268435456</uncompressed_cache_size>
                <max_concurrent_queries>200</max_concurrent_queries>
                <mlock_executable>false</mlock_executable>
            </yandex>

            """
        let users = """
            <?xml version="1.0"?>
            <yandex>
                <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
                <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
                <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
            </yandex>

            """
        try config.write(to: directory.appendingPathComponent("config.xml"), atomically: true, encoding: .utf8)
        try users.write(to: directory.appendingPathComponent("users.xml"), atomically: true, encoding: .utf8)
        do {
            // Default handling of SIGTERM in the server whatever the test process blocks, and none
            // of its descriptors (see ChildProcess).
            process = try ChildProcess(
                executable: executable, arguments: ["--config-file=\(path)/config.xml"], directory: path,
                standardOutput: .file(path + "/log/stdout.log"), standardError: .standardOutput)
        } catch {
            throw StartFailed(description: error.description)
        }
        try "\(pid)\n".write(to: directory.appendingPathComponent("server.pid"), atomically: true, encoding: .utf8)
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        let connection = HTTPConnection(host: "127.0.0.1", port: self.httpPort)
        while true {
            if let response = try? connection.request("GET", "/ping", timeoutSeconds: 2), response.status == 200 { break }
            guard isRunning, Date() < deadline else {
                stop()
                let log = (try? String(contentsOf: directory.appendingPathComponent("log/error.log"), encoding: .utf8)) ?? ""
                throw StartFailed(description: "clickhouse-server did not answer on port \(self.httpPort): \(log.suffix(800))")
            }
            usleep(100_000)
        }
        connection.close()
    }

    /// Stops the server by its PID (SIGTERM, then SIGKILL after 20 s) and waits for it to exit.
    public func stop() {
        guard isRunning else { return }
        process.signal(SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while isRunning && Date() < deadline { usleep(50_000) }
        if isRunning { kill9() }
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits for it to exit.
    public func kill9() {
        guard isRunning else { return }
        process.signal(SIGKILL)
        process.waitUntilExit()
    }

    /// Whether the server process is still there (reaps it once it has exited).
    public var isRunning: Bool { process.isRunning }

    /// Removes the server's folder (after ``stop()``).
    public func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// ClickHouse's ports: see ``LoopbackPorts``.
    static func freePort() throws -> Int {
        guard let port = LoopbackPorts.free(in: LoopbackPorts.clickHouse) else {
            throw StartFailed(description: "no free loopback port in \(LoopbackPorts.clickHouse)")
        }
        return port
    }

    private static let sharedServer = Mutex<Result<ClickHouseLocalServer, any Error>?>(nil)

    /// One server for the whole process (tests: each uses a database of its own), started on first
    /// use in `$TMPDIR/xumi-clickhouse/shared-PID` and stopped by its PID when the process exits.
    public static func shared() throws -> ClickHouseLocalServer {
        try sharedServer.withLock { state in
            if let state { return try state.get() }
            let result = Result {
                try ClickHouseLocalServer(
                    directory: FileManager.default.temporaryDirectory.appendingPathComponent("xumi-clickhouse/shared-\(getpid())"))
            }
            state = result
            if case .success(let server) = result {
                sharedServerPID.withLock { $0 = server.pid }
                atexit {
                    // A C function pointer: it reads the PID from the global, and waits a little for
                    // the server to go, so that no server outlives the tests that started it.
                    guard let pid = sharedServerPID.withLock({ $0 }) else { return }
                    kill(pid, SIGTERM)
                    for _ in 0..<100 where kill(pid, 0) == 0 {
                        var status: Int32 = 0
                        if waitpid(pid, &status, WNOHANG) == pid { break }
                        usleep(50_000)
                    }
                }
            }
            return try result.get()
        }
    }
}

/// The shared server's PID, for the exit handler.
private let sharedServerPID = Mutex<Int32?>(nil)

/// Loopback ports for servers that tests start, picked at random in a range below Linux's ephemeral
/// range (32768-60999), where "bind to port 0" answers come from. A test that reserves a port for
/// a server it starts later (to see a client retry while nothing listens) must not see another
/// server take it meanwhile, as one that binds port 0 may: the kernel hands a free port out again.
public enum LoopbackPorts {
    /// Where ``ClickHouseLocalServer`` takes its ports.
    public static let clickHouse = 20_000..<30_000
    /// Where tests reserve ports for servers they start later.
    public static let reserved = 30_000..<32_768

    /// A port of `range` that nothing listens on at the moment, or `nil` after 200 tries.
    public static func free(in range: Range<Int>) -> Int? {
        for _ in 0..<200 {
            let port = Int.random(in: range)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if bound == 0 { return port }
        }
        return nil
    }
}
