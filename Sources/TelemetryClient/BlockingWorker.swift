#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// One thread that runs blocking jobs in order, for code that must block (socket calls) without
/// holding a thread of Swift's cooperative pool or of Dispatch's shared pool.
///
/// The thread starts with the first job and ends after ``stop()``, once its queue is empty.
final class BlockingWorker: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var started = false
        var stopped = false
    }

    private let name: String
    private let state = Mutex(State())
    /// Counts queued jobs (plus one wake-up on stop); the thread sleeps on it.
    private let ready = DispatchSemaphore(value: 0)

    init(name: String) {
        self.name = name
    }

    /// Queues `job`; it runs after the jobs queued before it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        let start = state.withLock { state -> Bool in
            state.jobs.append(job)
            defer { state.started = true }
            return !state.started
        }
        ready.signal()
        if start {
            let thread = Thread { [self] in loop() }
            thread.name = name
            thread.start()
        }
    }

    /// Lets the thread end once the queued jobs have run.
    func stop() {
        state.withLock { $0.stopped = true }
        ready.signal()
    }

    private func loop() {
        while true {
            ready.wait()
            let job = state.withLock { state -> (@Sendable () -> Void)? in
                state.jobs.isEmpty ? nil : state.jobs.removeFirst()
            }
            if let job {
                job()
            } else if state.withLock({ $0.stopped && $0.jobs.isEmpty }) {
                return
            }
        }
    }
}
