/// An error in building or reading a catalog: a definition that contradicts itself or another.
public struct CatalogError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable, machine-readable code, e.g. `duplicate_event`.
    public let code: String
    /// What is wrong, in words a person can act on.
    public let message: String

    package init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
