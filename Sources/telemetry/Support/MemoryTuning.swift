import CSQLiteTuning
import Foundation

/// How a long-running command (`serve`, `demo`, `consume`) sets up the C allocator.
enum MemoryTuning {
    /// Blocks this large or larger are mapped from the system and given back to it when freed.
    static let mmapThreshold: Int32 = 256 << 10

    /// Fixes glibc's mmap threshold. By default glibc raises the threshold to the size of each
    /// mapped block freed (up to 32 MiB), so after the first request bodies (~1 MiB each, and the
    /// buffers they are read into) such blocks come from the heap, and what is freed there stays
    /// in the process: `bench ingest` from 400 connections of 500-event requests peaked at
    /// 307-313 MiB, and at 283-288 MiB with the threshold fixed (the collector issue asks under
    /// 300 MiB at any load); at 4 connections the rate and the CPU an event did not move. When
    /// `MALLOC_MMAP_THRESHOLD_` is in the environment, the operator's value stands.
    static func fixMmapThreshold() {
        guard ProcessInfo.processInfo.environment["MALLOC_MMAP_THRESHOLD_"] == nil else { return }
        _ = telemetry_fix_mmap_threshold(mmapThreshold)
    }
}
