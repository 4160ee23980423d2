import Foundation
import TelemetryProcess
import Testing

/// `ChildProcess`, which every test that runs another program starts it with.
@Suite struct ChildProcessTests {
    @Test func outputErrorsInputAndStatusComeBack() async throws {
        let run = try await ChildProcess.run("/bin/sh", ["-c", "cat; echo oops >&2; exit 3"], input: Data("hello\n".utf8))
        #expect(run.output == "hello\n")
        #expect(run.errors == "oops\n")
        #expect(run.termination == .exited(3))
        let merged = try await ChildProcess.run("/bin/sh", ["-c", "echo one; echo two >&2"], standardErrorToOutput: true)
        #expect(merged.output == "one\ntwo\n")
    }

    /// Foundation's `Process.run()` crashed a full test run: it reads `/proc/self/fd` past the end
    /// of its buffer once the process holds more than ~1,350 descriptors. Here the process holds
    /// 1,600 more than it did, without close-on-exec, and starts children: they run, and inherit
    /// none of them (only 0, 1 and 2, and the descriptor `ls` reads the folder with).
    @Test func manyOpenDescriptorsNeitherCrashNorLeakIntoTheChild() throws {
        let held = (0..<1_600).map { _ in open("/dev/null", O_RDONLY) }
        defer { for fd in held where fd >= 0 { close(fd) } }
        #expect(held.allSatisfy { $0 >= 0 })
        for _ in 0..<20 {
            let run = try ChildProcess.run("/bin/sh", ["-c", "ls /proc/self/fd"])
            let fds = run.output.split(separator: "\n").compactMap { Int($0) }
            #expect(run.status == 0)
            #expect(fds.count <= 4 && fds.allSatisfy { $0 <= 3 }, "the child holds \(fds)")
        }
    }

    /// A parent that blocks or ignores SIGTERM (a test process may) still stops its child with it.
    @Test func theChildStopsOnSIGTERMWhateverTheParentBlocks() throws {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let child = try ChildProcess(executable: "/bin/sleep", arguments: ["30"])
        #expect(child.isRunning)
        child.signal(SIGTERM)
        #expect(child.waitUntilExit() == .signalled(SIGTERM))
        #expect(!child.isRunning)
    }

    /// Killed, not ended by itself after its 30 s. (No bound on the test's own wall time: in a
    /// full run, this task waited 25 s for a thread of the cooperative pool after the kill.)
    @Test func aChildThatHangsIsKilledAfterItsTimeout() async throws {
        let run = try await ChildProcess.run("/bin/sleep", ["30"], timeout: .milliseconds(300))
        #expect(run.termination == .signalled(SIGKILL))
    }

    @Test func aMissingExecutableIsAnErrorThatNamesIt() {
        #expect {
            try ChildProcess.run("/nonexistent/tool", [])
        } throws: { error in
            (error as? ChildProcessError)?.code == "spawn_failed" && "\(error)".contains("/nonexistent/tool")
        }
    }

    @Test func theWorkingDirectoryAndEnvironmentAreTheChildsOwn() async throws {
        let run = try await ChildProcess.run("/bin/sh", ["-c", "pwd; echo $GREETING"], environment: ["GREETING": "hi", "PATH": "/usr/bin:/bin"], directory: "/tmp")
        #expect(run.output == "/tmp\nhi\n")
    }
}
