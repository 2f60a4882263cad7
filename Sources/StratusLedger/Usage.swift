import StratusCore

/// GPU time one allocation used: recorded once, when its process ends.
public struct UsageRecord: Codable, Equatable, Sendable {
    /// `JOB/NODE`: one record per allocation, so a repeated report cannot count twice.
    public let id: String
    public let job: JobID
    public let org: OrgID
    public let project: ProjectID
    public let node: NodeID
    public let gpuModel: String
    public let tier: Tier
    public let gpus: Int
    public let startedAt: Timestamp
    public let endedAt: Timestamp
    /// The fraction of its one GPU the job held (thousandths); nil: whole GPUs.
    public let gpuShareMilli: Int?

    public init(
        id: String, job: JobID, org: OrgID, project: ProjectID, node: NodeID, gpuModel: String, tier: Tier,
        gpus: Int, startedAt: Timestamp, endedAt: Timestamp, gpuShareMilli: Int? = nil
    ) {
        self.gpuShareMilli = gpuShareMilli
        self.id = id
        self.job = job
        self.org = org
        self.project = project
        self.node = node
        self.gpuModel = gpuModel
        self.tier = tier
        self.gpus = gpus
        self.startedAt = startedAt
        self.endedAt = endedAt
    }

    /// Exact GPU time in GPU-milliseconds (a fraction of a GPU: its share of the time,
    /// rounded down to the millisecond).
    public var gpuMilliseconds: Int64 {
        Self.gpuMilliseconds(gpus: gpus, share: gpuShareMilli, milliseconds: startedAt.milliseconds(until: endedAt))
    }

    public static func gpuMilliseconds(gpus: Int, share: Int?, milliseconds: Int64) -> Int64 {
        let whole = Int64(gpus) * milliseconds
        return share.map { whole * Int64($0) / 1000 } ?? whole
    }
}

/// The usage book: every record once, queryable by any grouping.
public struct UsageMeter: Codable, Equatable, Sendable {
    public private(set) var records: [UsageRecord] = []
    private var ids: Set<UsageRecordID> = []
    /// Records forgotten with their jobs (`retire`): how many, and their GPU time.
    public private(set) var retiredRecords = 0
    public private(set) var retiredGPUMilliseconds: Int64 = 0

    public init() {}

    enum CodingKeys: String, CodingKey { case records, ids, retiredRecords, retiredGPUMilliseconds }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        records = try c.decode([UsageRecord].self, forKey: .records)
        ids = try c.decode(Set<UsageRecordID>.self, forKey: .ids)
        retiredRecords = try c.decodeIfPresent(Int.self, forKey: .retiredRecords) ?? 0
        retiredGPUMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .retiredGPUMilliseconds) ?? 0
    }

    /// Forgets the records `forget` picks, keeping their count and GPU time.
    public mutating func retire(_ forget: (UsageRecord) -> Bool) {
        var kept: [UsageRecord] = []
        kept.reserveCapacity(records.count)
        for r in records {
            if forget(r) {
                retiredRecords += 1
                retiredGPUMilliseconds += r.gpuMilliseconds
                ids.remove(UsageRecordID(r.id))
            } else {
                kept.append(r)
            }
        }
        records = kept
    }

    public enum Outcome: Equatable, Sendable {
        case recorded
        /// The same record was already there: nothing changes.
        case duplicate
    }

    /// Same id and same content is a no-op; same id with different content is refused.
    public func check(_ record: UsageRecord) throws(StratusError) -> Outcome {
        guard ids.contains(UsageRecordID(record.id)) else { return .recorded }
        guard let existing = records.first(where: { $0.id == record.id }), existing == record else {
            throw StratusError(.idempotencyMismatch, "usage record '\(record.id)' already exists with different content")
        }
        return .duplicate
    }

    public mutating func record(_ record: UsageRecord) throws(StratusError) -> Outcome {
        let outcome = try check(record)
        if outcome == .recorded {
            records.append(record)
            ids.insert(UsageRecordID(record.id))
        }
        return outcome
    }

    public static func == (lhs: UsageMeter, rhs: UsageMeter) -> Bool {
        lhs.records == rhs.records && lhs.retiredRecords == rhs.retiredRecords
            && lhs.retiredGPUMilliseconds == rhs.retiredGPUMilliseconds
    }
}

/// Dimensions usage can be grouped by.
public enum UsageDimension: String, Codable, Sendable, CaseIterable {
    case org, project, job, gpuModel = "gpu_model", tier, node
}

public struct UsageGroup: Codable, Equatable, Sendable {
    public var key: [String: String]
    public var gpuMilliseconds: Int64
    public var records: Int
}

public enum UsageReport {
    /// Sums `records` by the given dimensions, in a stable order (by key values).
    public static func group(_ records: [UsageRecord], by dimensions: [UsageDimension]) -> [UsageGroup] {
        var groups: [[String]: UsageGroup] = [:]
        for r in records {
            let values = dimensions.map { value(of: r, $0) }
            var g =
                groups[values]
                ?? UsageGroup(
                    key: Dictionary(uniqueKeysWithValues: zip(dimensions.map(\.rawValue), values)), gpuMilliseconds: 0,
                    records: 0)
            g.gpuMilliseconds += r.gpuMilliseconds
            g.records += 1
            groups[values] = g
        }
        return groups.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.value)
    }

    static func value(of r: UsageRecord, _ d: UsageDimension) -> String {
        switch d {
        case .org: r.org.rawValue
        case .project: r.project.rawValue
        case .job: r.job.rawValue
        case .gpuModel: r.gpuModel
        case .tier: r.tier.rawValue
        case .node: r.node.rawValue
        }
    }
}
