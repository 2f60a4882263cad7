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

    /// The hash sets and dictionaries use: the ID's UTF-8 bytes, eight at a time, folded
    /// with multiply-xor rounds keyed by the table's seed. IDs are hashed on every lookup
    /// of tables of a million nodes and jobs; this costs a fraction of the SipHash of
    /// `hash(into:)` (kept for other hashers).
    public func _rawHashValue(seed: Int) -> Int {
        if let h = rawValue.utf8.withContiguousStorageIfAvailable({ IDHash.hash($0, seed: seed) }) { return h }
        return IDHash.hash(Array(rawValue.utf8), seed: seed)
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
public enum UsageRecordKind {}

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
/// A usage record's `JOB/RUN/NODE` (the meter's table of them hashes as IDs do).
public typealias UsageRecordID = Identifier<UsageRecordKind>

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

/// A fast keyed hash of short byte strings (IDs), wyhash-style: each 8-byte word is
/// folded into the state with a 64x64->128-bit multiply whose halves are xored.
enum IDHash {
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>, seed: Int) -> Int {
        var h = UInt64(truncatingIfNeeded: seed) ^ 0x9E37_79B9_7F4A_7C15 ^ (UInt64(bytes.count) &* 0xA076_1D64_78BD_642F)
        let raw = UnsafeRawBufferPointer(bytes)
        var i = 0
        while i + 8 <= bytes.count {
            h = fold(h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self), 0xE703_7ED1_A0B4_28DB)
            i += 8
        }
        if i < bytes.count {
            var last: UInt64 = 0
            for k in i..<bytes.count { last |= UInt64(bytes[k]) << UInt64(8 * (k - i)) }
            h = fold(h ^ last, 0x8EBC_6AF0_9C88_C6E3)
        }
        return Int(truncatingIfNeeded: fold(h, 0x5899_65CC_7537_4CC3))
    }

    static func hash(_ bytes: [UInt8], seed: Int) -> Int { bytes.withUnsafeBufferPointer { hash($0, seed: seed) } }

    private static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let p = a.multipliedFullWidth(by: b)
        return p.high ^ p.low
    }
}
