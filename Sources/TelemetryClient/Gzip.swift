import CompressNIO
import NIOCore

/// gzip for request bodies.
enum Gzip {
    static func compress(_ bytes: [UInt8]) -> [UInt8] {
        var buffer = ByteBuffer(bytes: bytes)
        guard var compressed = try? buffer.compress(with: .gzip()) else { return bytes }
        return compressed.readBytes(length: compressed.readableBytes) ?? bytes
    }
}
