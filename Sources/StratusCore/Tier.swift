/// Priority classes, highest first. Internal work belongs to the operator; reserved,
/// on-demand and spot are sold to tenants.
public enum Tier: String, Codable, Sendable, CaseIterable, Comparable {
    case `internal`
    case reserved
    case onDemand = "on-demand"
    case spot

    /// Hashes the case, not its raw string (tiers key hot dictionaries in billing).
    public func hash(into hasher: inout Hasher) { hasher.combine(rank) }

    /// What hash tables use: the rank through `WordDigest`, keyed by the table's seed
    /// (a fraction of SipHash's cost; tiers key dictionaries touched for every allocation).
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(UInt64(rank))
        return h.tableHash
    }

    /// Lower rank schedules first.
    public var rank: Int {
        switch self {
        case .internal: 0
        case .reserved: 1
        case .onDemand: 2
        case .spot: 3
        }
    }

    public static func < (lhs: Tier, rhs: Tier) -> Bool { lhs.rank < rhs.rank }
}
