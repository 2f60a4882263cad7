/// A typed, string-backed identifier. The phantom `Kind` keeps a job ID from being
/// passed where a node ID is expected, at no run-time cost.
public struct Identifier<Kind>: Hashable, Comparable, Codable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The hash sets and dictionaries use: the ID's UTF-8 bytes eight at a time, keyed by
    /// the table's seed, through `WordDigest` (the usage meter's digest). IDs are hashed on
    /// every lookup of tables of a million nodes and jobs; this costs a fraction of the
    /// SipHash of `hash(into:)` (kept for other hashers).
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(rawValue)
        return h.tableHash
    }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

public enum OrgKind {}
public enum ProjectKind {}
public enum JobKind {}
public enum NodeKind {}
public enum KeyKind {}
public enum RegionKind {}
public enum SiteKind {}
public enum RackKind {}
public enum MemberKind {}
public enum ReservationKind {}
public enum AgentTokenKind {}

public typealias OrgID = Identifier<OrgKind>
public typealias ProjectID = Identifier<ProjectKind>
public typealias JobID = Identifier<JobKind>
public typealias NodeID = Identifier<NodeKind>
public typealias KeyID = Identifier<KeyKind>
public typealias RegionID = Identifier<RegionKind>
public typealias SiteID = Identifier<SiteKind>
public typealias RackID = Identifier<RackKind>
public typealias MemberID = Identifier<MemberKind>
public typealias ReservationID = Identifier<ReservationKind>
public typealias AgentTokenID = Identifier<AgentTokenKind>

/// Names chosen by people (orgs, projects, regions, sites, racks, nodes): lowercase
/// letters, digits and dashes, starting with a letter or digit, at most `Limits.maxNameLength`.
public enum Name {
    public static func validate(_ name: String, field: String) throws(StratusError) {
        guard !name.isEmpty else {
            throw StratusError(.invalidArgument, "\(field): must not be empty")
        }
        guard name.utf8.count <= Limits.maxNameLength else {
            throw StratusError(.invalidArgument, "\(field): longer than \(Limits.maxNameLength) characters")
        }
        let allowed = name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E || c == 0x5F
        }
        guard allowed, let first = name.utf8.first, first != 0x2D, first != 0x2E else {
            throw StratusError(
                .invalidArgument,
                "\(field): '\(name)' must use lowercase letters, digits, '-', '_' or '.', starting with a letter or digit")
        }
    }
}

extension Identifier: CodingKeyRepresentable {
    public var codingKey: any CodingKey { SpecValue.AnyKey(rawValue) }
    public init?<T: CodingKey>(codingKey: T) { self.init(codingKey.stringValue) }
}
