import Synchronization

/// Arrays that request bodies are read into, kept between requests.
///
/// A body is read into one array, and an array past glibc's mmap threshold (256 KiB, see
/// `MemoryTuning`) is a fresh mapping: writing it faulted in every page, and freeing it unmapped
/// them again (~8% of the request threads' CPU in `serve --kafka`, a body of 1,000 events being
/// ~800 KiB). A few arrays kept with their capacity are written without a fault. The pool is small
/// and bounded, so a burst of large bodies does not hold its memory afterwards: at most
/// ``maxKept`` arrays of at most ``maxCapacity`` bytes each.
package final class BodyBuffers: Sendable {
    package let maxKept: Int
    package let maxCapacity: Int
    private let kept = Mutex<[[UInt8]]>([])

    package init(maxKept: Int = 8, maxCapacity: Int = 2 << 20) {
        self.maxKept = maxKept
        self.maxCapacity = maxCapacity
    }

    /// An empty array, with a kept array's capacity when there is one.
    package func take() -> [UInt8] {
        kept.withLock { $0.popLast() } ?? []
    }

    /// Keeps the storage of `bytes` for a later body, emptied in place, when it is not too large and
    /// the pool is not full; otherwise it is freed as usual. `bytes` is left empty. Given once the
    /// request is done with the body, when nothing else holds it (emptying a shared array would
    /// allocate a new one instead).
    package func give(_ bytes: inout [UInt8]) {
        guard bytes.capacity <= maxCapacity, bytes.capacity > 0 else {
            bytes = []
            return
        }
        bytes.removeAll(keepingCapacity: true)
        var array: [UInt8] = []
        swap(&array, &bytes)
        kept.withLock { kept in
            if kept.count < maxKept { kept.append(array) }
        }
    }

    /// Arrays kept now.
    package var count: Int { kept.withLock { $0.count } }
}
