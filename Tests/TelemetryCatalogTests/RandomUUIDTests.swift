import Foundation
import Testing
@testable import TelemetryCatalog

/// Version-4 UUIDs made from the caller's bits: the bits kept, version and variant set.
@Suite struct RandomUUIDTests {
    @Test func theBitsAreKeptAndTheVersionAndVariantSet() {
        let uuid = UUID(version4: 0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210)
        #expect(uuid.uuidString.lowercased() == "01234567-89ab-4def-bedc-ba9876543210")
        let ones = UUID(version4: .max, .max)
        #expect(ones.uuidString.lowercased() == "ffffffff-ffff-4fff-bfff-ffffffffffff")
        let zeros = UUID(version4: 0, 0)
        #expect(zeros.uuidString.lowercased() == "00000000-0000-4000-8000-000000000000")
        // What the validator accepts, as every id we make must be.
        #expect(UUIDValue(uuid.uuidString) != nil)
    }

    @Test func systemRandomIdsDiffer() {
        let ids = Set((0..<1000).map { _ in UUID.systemRandom() })
        #expect(ids.count == 1000)
        #expect(ids.allSatisfy { $0.uuidString.lowercased().dropFirst(14).first == "4" })
    }
}
