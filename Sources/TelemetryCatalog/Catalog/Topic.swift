/// A topic events are published on: a Kafka topic in the scaled deployment, a partition of the
/// event space everywhere else.
public struct Topic: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The topic's name, as in the spec.
    public let name: String

    /// Creates a topic with the given name.
    public init(_ name: String) { self.name = name }
    public init(stringLiteral value: String) { self.name = value }

    public static let xumiLoad: Topic = "xumi_load"
    public static let xumiTask: Topic = "xumi_task"
    public static let kubernetes: Topic = "kubernetes"
    public static let pbacAccess: Topic = "pbac_access"
    public static let pbacService: Topic = "pbac_service"
    public static let assetAccess: Topic = "asset_access"
    public static let assetTransfer: Topic = "asset_transfer"

    public var description: String { name }
}
