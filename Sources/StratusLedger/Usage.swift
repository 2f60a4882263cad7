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
    /// How many records have each id digest (`digest`), to find a repeated id without a
    /// scan: a digest seen is confirmed against the records. Derived from them, so not
    /// encoded; built by the first `record` (nil until then: the control plane adds its
    /// own records with `add(new:)`, which need no check, and keeping the index for
    /// them cost a hash and a probe of a large table per allocation).
    private var ids: [UInt64: Int32]?
    /// Records forgotten with their jobs (`retire`): how many, and their GPU time.
    public private(set) var retiredRecords = 0
    public private(set) var retiredGPUMilliseconds: Int64 = 0

    public init() {}

    enum CodingKeys: String, CodingKey { case records, retiredRecords, retiredGPUMilliseconds }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        records = try c.decode([UsageRecord].self, forKey: .records)
        retiredRecords = try c.decodeIfPresent(Int.self, forKey: .retiredRecords) ?? 0
        retiredGPUMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .retiredGPUMilliseconds) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(records, forKey: .records)
        try c.encode(retiredRecords, forKey: .retiredRecords)
        try c.encode(retiredGPUMilliseconds, forKey: .retiredGPUMilliseconds)
    }

    static func digest(_ id: String) -> UInt64 {
        var h = WordDigest()
        h.add(id)
        return h.a
    }

    /// Forgets the records of `jobs` that ended before `endedBefore`, keeping their count
    /// and GPU time. In place: kept records move forward, the forgotten are dropped.
    public mutating func retire(jobs: Set<JobID>, endedBefore: Timestamp) {
        var kept = 0
        var forgotten = 0
        var gpuMilliseconds: Int64 = 0
        records.withUnsafeMutableBufferPointer { book in
            for i in book.indices {
                if book[i].endedAt < endedBefore, jobs.contains(book[i].job) {
                    gpuMilliseconds += book[i].gpuMilliseconds
                    forgotten += 1
                } else {
                    // Swapped in the buffer: moved, not copied.
                    if kept != i { book.swapAt(kept, i) }
                    kept += 1
                }
            }
        }
        records.removeLast(records.count - kept)
        retiredRecords += forgotten
        retiredGPUMilliseconds += gpuMilliseconds
        if ids != nil { ids = Self.index(records) }
    }

    public enum Outcome: Equatable, Sendable {
        case recorded
        /// The same record was already there: nothing changes.
        case duplicate
    }

    /// Same id and same content is a no-op; same id with different content is refused.
    public func check(_ record: UsageRecord) throws(StratusError) -> Outcome {
        // Without the index (no `record` yet), a scan.
        if let ids, ids[Self.digest(record.id)] == nil { return .recorded }
        guard let existing = records.first(where: { $0.id == record.id }) else { return .recorded }
        guard existing == record else {
            throw StratusError(.idempotencyMismatch, "usage record '\(record.id)' already exists with different content")
        }
        return .duplicate
    }

    public mutating func record(_ record: UsageRecord) throws(StratusError) -> Outcome {
        if ids == nil { ids = Self.index(records) }
        let outcome = try check(record)
        if outcome == .recorded {
            records.append(record)
            ids![Self.digest(record.id), default: 0] += 1
        }
        return outcome
    }

    /// How many of `records` have each id digest.
    private static func index(_ records: [UsageRecord]) -> [UInt64: Int32] {
        var ids: [UInt64: Int32] = [:]
        ids.reserveCapacity(records.count)
        for r in records { ids[digest(r.id), default: 0] += 1 }
        return ids
    }

    /// Adds a record whose id the caller knows is new (the control plane's records are, by
    /// construction), without `check`'s lookup. A repeated id here is a caller's bug
    /// (the simulator's invariant checks look for one).
    public mutating func add(new record: UsageRecord) {
        records.append(record)
        if ids != nil { ids![Self.digest(record.id), default: 0] += 1 }
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
