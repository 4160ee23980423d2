import CSpawn
public import Foundation
import Synchronization

/// A child process started with `posix_spawn`, for the tests and the benchmarks that run other
/// programs (the `telemetry` binary, ClickHouse, kcat, promtool, Chromium, Python).
///
/// Not Foundation's `Process`: on Linux its `run()` copies every entry of `/proc/self/fd` with a
/// 256-byte read, past the end of glibc's 32 KiB directory buffer once the process holds more than
/// ~1,350 descriptors, and crashes when that buffer ends at an unmapped page (a test run opens
/// that many: stores of tests running side by side hold a dozen connections each). Fixed upstream
/// in swift-corelibs-foundation #5472, after the Swift 6.3.1 this project builds with.
///
/// The child gets default handling for the signals a server is stopped with (a parent, a test
/// process among them, may have SIGTERM blocked, and a child inherits that), and none of the
/// parent's descriptors beyond its standard input, output and error.
public final class ChildProcess: Sendable {
    /// What the child's standard input is.
    public enum Input: Sendable {
        case null
        /// A file, read from its start.
        case file(String)
        /// A pipe; the parent writes through ``standardInput``.
        case pipe
    }

    /// Where the child's standard output or error goes.
    public enum Output: Sendable {
        case null
        /// The parent's own.
        case inherit
        /// A pipe; the parent reads through ``standardOutput`` or ``standardError``.
        case pipe
        /// A file, created if missing, appended to.
        case file(String)
        /// For standard error: wherever standard output goes.
        case standardOutput
    }

    /// How the child ended.
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)

        /// The exit code, or the number of the signal that ended the child (as `Process` has it).
        public var status: Int32 {
            switch self {
            case .exited(let code), .signalled(let code): code
            }
        }
    }

    public let pid: Int32
    /// The parent's ends of the pipes, for the streams that were asked to be pipes.
    public let standardInput: FileHandle?
    public let standardOutput: FileHandle?
    public let standardError: FileHandle?
    /// Set once the child is reaped; `waitpid` runs under the lock except in the blocking wait.
    private let termination = Mutex<Termination?>(nil)

    /// Starts `executable` (a path: no `PATH` search; use `/usr/bin/env` for that).
    ///
    /// - Parameter environment: the child's whole environment; `nil` passes the parent's.
    public init(
        executable: String, arguments: [String] = [], environment: [String: String]? = nil, directory: String? = nil,
        standardInput input: Input = .null, standardOutput output: Output = .null, standardError error: Output = .null
    ) throws(ChildProcessError) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Descriptors the parent closes after the spawn (the child's ends of the pipes), and on
        // failure its own ends too.
        var childEnds: [Int32] = []
        var parentEnds: [Int32] = []
        func closeAll(_ fds: [Int32]) { for fd in fds { close(fd) } }
        func pipe() throws(ChildProcessError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard telemetry_spawn_pipe(&fds) == 0 else {
                let code = errno
                closeAll(childEnds + parentEnds)
                throw ChildProcessError("pipe_failed", "cannot make a pipe for \(executable): \(String(cString: strerror(code)))")
            }
            return (fds[0], fds[1])
        }

        var inputHandle: Int32? = nil
        switch input {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        case .pipe:
            let fds = try pipe()
            posix_spawn_file_actions_adddup2(&actions, fds.read, 0)
            childEnds.append(fds.read)
            parentEnds.append(fds.write)
            inputHandle = fds.write
        }
        var outputHandles: [Int32?] = [nil, nil]
        for (index, (fd, stream)) in [(Int32(1), output), (Int32(2), error)].enumerated() {
            switch stream {
            case .null: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            case .inherit: break
            case .file(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .standardOutput: posix_spawn_file_actions_adddup2(&actions, 1, fd)
            case .pipe:
                let fds = try pipe()
                posix_spawn_file_actions_adddup2(&actions, fds.write, fd)
                childEnds.append(fds.write)
                parentEnds.append(fds.read)
                outputHandles[index] = fds.read
            }
        }
        // Every other descriptor of the parent (sockets, store files, pipes of other children)
        // stays out of the child.
        telemetry_spawn_add_close_from(&actions, 3)
        if let directory { telemetry_spawn_add_chdir(&actions, directory) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for pointer in envp ?? [] { free(pointer) } }
        var pid: Int32 = 0
        let rc = envp.map { posix_spawn(&pid, executable, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        closeAll(childEnds)
        guard rc == 0 else {
            closeAll(parentEnds)
            throw ChildProcessError("spawn_failed", "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        standardInput = inputHandle.map { FileHandle(fileDescriptor: $0, closeOnDealloc: true) }
        standardOutput = outputHandles[0].map { FileHandle(fileDescriptor: $0, closeOnDealloc: true) }
        standardError = outputHandles[1].map { FileHandle(fileDescriptor: $0, closeOnDealloc: true) }
    }

    /// Whether the child still runs (reaps it once it has exited).
    public var isRunning: Bool {
        termination.withLock { termination in
            if termination != nil { return false }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { termination = Self.termination(status) }
            return termination == nil
        }
    }

    /// Sends `signal` to the child, unless it was already reaped (its PID may be another's now).
    public func signal(_ signal: Int32) {
        termination.withLock { termination in
            if termination == nil { kill(pid, signal) }
        }
    }

    /// Waits for the child to exit. Blocks: call it off Swift's cooperative pool.
    @discardableResult
    public func waitUntilExit() -> Termination {
        if let known = termination.withLock({ $0 }) { return known }
        var status: Int32 = 0
        var reaped: Int32
        repeat { reaped = waitpid(pid, &status, 0) } while reaped == -1 && errno == EINTR
        return termination.withLock { termination in
            // Reaped here, or (ECHILD) by `isRunning` on another thread, which stored it under the lock.
            if termination == nil && reaped == pid { termination = Self.termination(status) }
            return termination ?? .exited(-1)
        }
    }

    private static func termination(_ status: Int32) -> Termination {
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}

extension ChildProcess {
    /// What ``run(_:_:input:environment:directory:standardErrorToOutput:timeout:)`` returns.
    public struct Completed: Sendable {
        public var termination: Termination
        public var standardOutput: Data
        public var standardError: Data

        public var status: Int32 { termination.status }
        public var output: String { String(decoding: standardOutput, as: UTF8.self) }
        public var errors: String { String(decoding: standardError, as: UTF8.self) }
    }

    /// Runs `executable` to its end: feeds it `input` (from another thread, so that a large input
    /// cannot dead-lock against a full output pipe), collects its output and error, and kills it
    /// (SIGKILL) if it is still running after `timeout`. Blocks: call it off the cooperative pool.
    public static func run(
        _ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil,
        directory: String? = nil, standardErrorToOutput: Bool = false, timeout: Duration? = nil
    ) throws(ChildProcessError) -> Completed {
        let child = try ChildProcess(
            executable: executable, arguments: arguments, environment: environment, directory: directory,
            standardInput: input == nil ? .null : .pipe, standardOutput: .pipe,
            standardError: standardErrorToOutput ? .standardOutput : .pipe)
        // A child that hangs fails its caller instead of holding it forever. The watchdog is a
        // thread of its own: Dispatch's shared pool, busy with other work in a loaded process,
        // fired a 300 ms timer 32 s late in a CI run.
        let finished = DispatchSemaphore(value: 0)
        defer { finished.signal() }
        if let timeout {
            let milliseconds = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
            Thread.detachNewThread {
                if finished.wait(timeout: .now() + .milliseconds(milliseconds)) == .timedOut { child.signal(SIGKILL) }
            }
        }
        if let input, let handle = child.standardInput {
            Thread.detachNewThread {
                handle.write(input)
                try? handle.close()
            }
        }
        let errors = Collected()
        let done = DispatchSemaphore(value: 0)
        if let handle = child.standardError {
            Thread.detachNewThread {
                errors.set(handle.readDataToEndOfFile())
                done.signal()
            }
        } else {
            done.signal()
        }
        let output = child.standardOutput?.readDataToEndOfFile() ?? Data()
        done.wait()
        let termination = child.waitUntilExit()
        return Completed(termination: termination, standardOutput: output, standardError: errors.get())
    }
}

extension ChildProcess {
    /// ``run(_:_:input:environment:directory:standardErrorToOutput:timeout:)`` on a thread of its
    /// own, for async code: a child's run must not hold one of the cooperative pool's threads (two
    /// on this machine), which every other task then waits for.
    public static func run(
        _ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil,
        directory: String? = nil, standardErrorToOutput: Bool = false, timeout: Duration? = nil
    ) async throws -> Completed {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        try run(
                            executable, arguments, input: input, environment: environment, directory: directory,
                            standardErrorToOutput: standardErrorToOutput, timeout: timeout) as Completed
                    })
            }.start()
        }
    }
}

/// Bytes read on one thread, handed to another.
private final class Collected: Sendable {
    private let data = Mutex(Data())
    func set(_ value: Data) { data.withLock { $0 = value } }
    func get() -> Data { data.withLock { $0 } }
}

/// A child process that could not be started.
public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    /// `pipe_failed` or `spawn_failed`.
    public let code: String
    public let message: String
    public var description: String { message }

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
}
