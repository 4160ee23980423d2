/// Why a store could not do what it was asked.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// A stable, machine-readable reason.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The store is out of space (disk full, or its configured size limit); nothing was written.
        public static let full = Code("store_full")
        /// The store could not read or write (I/O error, locked, corrupt); nothing was written.
        public static let unavailable = Code("store_unavailable")
        /// The request cannot be answered as asked (an unknown filter field, a bad value).
        public static let badQuery = Code("bad_query")
    }

    public let code: Code
    public let message: String
    /// The underlying error, if any.
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { "\(code): \(message)" }

    /// Whether retrying later may succeed (the sender should get a 503, not a 4xx).
    public var isTransient: Bool { code == .full || code == .unavailable }
}
