import TelemetryServer
import Testing

/// The arrays request bodies are read into: kept with their capacity, and no more of them, nor
/// larger ones, than the pool's bounds.
@Suite struct BodyBuffersTests {
    @Test func aGivenArrayComesBackEmptyWithItsCapacity() {
        let pool = BodyBuffers(maxKept: 2, maxCapacity: 1 << 20)
        var body = [UInt8](repeating: 7, count: 300_000)
        let capacity = body.capacity
        pool.give(&body)
        #expect(body.isEmpty && body.capacity == 0, "the caller's array is left empty")
        #expect(pool.count == 1)
        let taken = pool.take()
        #expect(taken.isEmpty)
        #expect(taken.capacity == capacity)
        #expect(pool.count == 0)
        #expect(pool.take().capacity == 0, "an empty pool gives a new array")
    }

    @Test func thePoolKeepsNoMoreNorLargerArraysThanItsBounds() {
        let pool = BodyBuffers(maxKept: 2, maxCapacity: 1 << 20)
        var large = [UInt8](repeating: 1, count: 2 << 20)
        pool.give(&large)
        #expect(pool.count == 0, "an array past maxCapacity is freed")
        for _ in 0..<3 {
            var body = [UInt8](repeating: 2, count: 1000)
            pool.give(&body)
        }
        #expect(pool.count == 2)
        var empty: [UInt8] = []
        pool.give(&empty)
        #expect(pool.count == 2)
    }
}
