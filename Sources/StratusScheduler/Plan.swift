import StratusCore

/// What the scheduler sees: an immutable copy of the facts that decide placement.
public struct SchedulingSnapshot: Sendable {
    public struct NodeView: Sendable {
        public let id: NodeID
        public let gpuModel: String
        public var schedulable: Bool
        /// Free GPU indices on the node, ascending.
        public var freeGPUs: [Int]
        public let gpuCount: Int
        /// Index of the node's rack (its NVLink / topology domain) and site.
        public let rack: Int
        public let site: Int
        /// Index of its block (a group of racks), or -1 when its rack is in none.
        public let block: Int
        public var labels: [String: String]
        /// CPU and memory not yet taken; nil when the node declares none (not limited).
        public var freeResources: NodeResources?
        /// GPUs shared by jobs on fractions of them (not in `freeGPUs`).
        public var shares: [SharedGPU]

        public init(
            id: NodeID, gpuModel: String, schedulable: Bool, freeGPUs: [Int], gpuCount: Int, rack: Int = 0, site: Int = 0,
            labels: [String: String] = [:], block: Int = -1, freeResources: NodeResources? = nil, shares: [SharedGPU] = []
        ) {
            self.shares = shares
            self.freeResources = freeResources
            self.block = block
            self.id = id
            self.gpuModel = gpuModel
            self.schedulable = schedulable
            self.freeGPUs = freeGPUs
            self.gpuCount = gpuCount
            self.rack = rack
            self.site = site
            self.labels = labels
        }
    }

    /// A GPU that jobs of one org and tier share, each on a fraction of it.
    public struct SharedGPU: Sendable, Equatable {
        public let gpu: Int
        public let org: OrgID
        public let tier: Tier
        /// Thousandths of the GPU not yet taken.
        public let freeMilli: Int

        public init(gpu: Int, org: OrgID, tier: Tier, freeMilli: Int) {
            self.gpu = gpu
            self.org = org
            self.tier = tier
            self.freeMilli = freeMilli
        }
    }

    /// A site's name, region and power: what data residency and power caps need.
    public struct SiteView: Sendable {
        public let name: String
        public let region: String
        /// Power budget and power drawn now by allocated GPUs (GPU power x PUE), in watts.
        public let budgetWatts: Int64
        public let usedWatts: Int64
        /// PUE in thousandths.
        public let pueMilli: Int64

        public init(name: String, region: String, budgetWatts: Int64, usedWatts: Int64, pueMilli: Int64) {
            self.name = name
            self.region = region
            self.budgetWatts = budgetWatts
            self.usedWatts = usedWatts
            self.pueMilli = pueMilli
        }
    }

    /// Work that holds GPUs now, as preemption sees it.
    public struct RunningJob: Sendable, Equatable {
        public let id: JobID
        public let tier: Tier
        public let org: OrgID
        public let project: String
        /// When it was placed; preemption takes the most recently started first.
        public let startedAt: Timestamp
        public let allocations: [NodeAssignment]
        /// Already being stopped (cancelled, failed gang or preempted): not a victim again.
        public let stopping: Bool
        /// When it will have ended at the latest (start + max_duration); nil if unbounded.
        public let expectedEnd: Timestamp?
        /// The capacity block it runs in, if any.
        public let reservation: ReservationID?
        /// CPU and memory it holds on each of its nodes.
        public let resources: NodeResources
        /// The fraction of its one GPU it holds (thousandths); nil: whole GPUs.
        public let gpuShareMilli: Int?

        public init(
            id: JobID, tier: Tier, org: OrgID = "", project: String = "", startedAt: Timestamp, allocations: [NodeAssignment],
            stopping: Bool, expectedEnd: Timestamp? = nil, reservation: ReservationID? = nil, resources: NodeResources = .zero,
            gpuShareMilli: Int? = nil
        ) {
            self.gpuShareMilli = gpuShareMilli
            self.resources = resources
            self.reservation = reservation
            self.id = id
            self.tier = tier
            self.org = org
            self.project = project
            self.startedAt = startedAt
            self.allocations = allocations
            self.stopping = stopping
            self.expectedEnd = expectedEnd
        }
    }

    public struct PendingJob: Sendable {
        public let id: JobID
        public let tier: Tier
        public let gpuModel: String
        public let gpusPerNode: Int
        public let numNodes: Int
        public let topology: TopologyLevel?
        /// GPUs held for this job while the work it preempted stops.
        public let nominated: [NodeAssignment]?
        public let placement: PlacementConstraints
        public let org: OrgID
        public let project: String
        /// The job's time limit; backfill lets it run ahead only if it ends in time.
        public let maxDurationSeconds: Int64?
        /// Other acceptable GPU models, tried in order when `gpuModel` does not fit.
        public let alternatives: [Accelerator]
        /// The capacity block it runs in, if any.
        public let reservation: ReservationID?
        /// CPU and memory it needs on each node (zero: none asked for).
        public let resources: NodeResources
        /// A fraction of one GPU, in thousandths; nil: whole GPUs.
        public let gpuShareMilli: Int?

        public init(
            id: JobID, tier: Tier, gpuModel: String, gpusPerNode: Int, numNodes: Int, topology: TopologyLevel? = nil,
            nominated: [NodeAssignment]? = nil, placement: PlacementConstraints = .anywhere, org: OrgID = "",
            project: String = "", maxDurationSeconds: Int64? = nil, alternatives: [Accelerator] = [],
            reservation: ReservationID? = nil, resources: NodeResources = .zero, gpuShareMilli: Int? = nil
        ) {
            self.gpuShareMilli = gpuShareMilli
            self.resources = resources
            self.reservation = reservation
            self.id = id
            self.tier = tier
            self.gpuModel = gpuModel
            self.gpusPerNode = gpusPerNode
            self.numNodes = numNodes
            self.topology = topology
            self.nominated = nominated
            self.placement = placement
            self.org = org
            self.project = project
            self.maxDurationSeconds = maxDurationSeconds
            self.alternatives = alternatives
        }

        /// The job as it would run on one of its acceptable models.
        public func choosing(_ choice: Accelerator) -> PendingJob {
            PendingJob(
                id: id, tier: tier, gpuModel: choice.model, gpusPerNode: choice.count, numNodes: numNodes, topology: topology,
                nominated: nominated, placement: placement, org: org, project: project, maxDurationSeconds: maxDurationSeconds,
                reservation: reservation, resources: resources, gpuShareMilli: gpuShareMilli)
        }

        /// Every acceptable choice as its own job, most preferred first.
        public var choices: [PendingJob] {
            [self] + alternatives.map { choosing($0) }
        }
    }

    /// Nodes in inventory order.
    public let nodes: [NodeView]
    /// Queued jobs in submission order.
    public let pending: [PendingJob]
    /// Jobs holding GPUs (in the table's slot order).
    public var running: [RunningJob] { table.slots.compactMap { $0 } }
    /// Jobs holding GPUs, with the indexes preemption, backfill and fair share read.
    public let table: RunningTable
    /// Sites by the index in `NodeView.site`; empty means no location or power limits.
    public let sites: [SiteView]
    /// Each org's fair-share weight and recent GPU time.
    public let tenants: [OrgID: TenantUsage]
    /// Quota rules and the GPUs held now under each.
    public let quotas: [QuotaScope: Int]
    public let quotaUsed: [QuotaScope: Int]
    /// Capacity held for internal demand.
    public let reserves: [InternalReserve]

    /// Tiers in priority order (highest first).
    public let tiers: [Tier]
    /// Capacity blocks that are not cancelled, by ID.
    public let reservations: [ReservationID: ReservationView]

    /// A capacity block as the scheduler sees it.
    public struct ReservationView: Sendable {
        public let id: ReservationID
        public let gpuModel: String
        /// Index in `sites`; nil: anywhere.
        public let site: Int?
        public let gpus: Int
        public let start: Timestamp
        public let end: Timestamp
        /// From when its GPUs are held for its jobs (some time before the start).
        public let holdFrom: Timestamp
        /// GPUs its jobs hold now.
        public let used: Int
        /// For a block of whole racks: their indices (as in `NodeView.rack`); empty otherwise.
        public let racks: Set<Int>

        public init(
            id: ReservationID, gpuModel: String, site: Int?, gpus: Int, start: Timestamp, end: Timestamp, used: Int,
            holdFrom: Timestamp? = nil, racks: Set<Int> = []
        ) {
            self.racks = racks
            self.holdFrom = holdFrom ?? start
            self.id = id
            self.gpuModel = gpuModel
            self.site = site
            self.gpus = gpus
            self.start = start
            self.end = end
            self.used = used
        }
    }

    /// What fair share needs of an org: its weight and GPU-milliseconds per day.
    public struct TenantUsage: Sendable {
        public let weight: Int
        public let dailyGPUMilliseconds: [Int64: Int64]

        public init(weight: Int, dailyGPUMilliseconds: [Int64: Int64]) {
            self.weight = weight
            self.dailyGPUMilliseconds = dailyGPUMilliseconds
        }
    }

    public init(
        nodes: [NodeView], pending: [PendingJob], running: [RunningJob] = [], sites: [SiteView] = [],
        tenants: [OrgID: TenantUsage] = [:], quotas: [QuotaScope: Int] = [:], quotaUsed: [QuotaScope: Int] = [:],
        reserves: [InternalReserve] = [], reservations: [ReservationID: ReservationView] = [:],
        tiers: [Tier] = Tier.allCases, nodeIndex: [NodeID: Int]? = nil, capacity: KeptCapacity? = nil,
        runningTable: RunningTable? = nil, sharedNodes: [Int]? = nil
    ) {
        let index = nodeIndex ?? Self.positions(nodes)
        self.nodeIndex = index
        self.kept = capacity
        self.tiers = tiers
        self.reservations = reservations
        self.nodes = nodes
        self.pending = pending
        self.table = runningTable ?? RunningTable(running, nodes: nodes, position: index)
        self.sites = sites
        self.tenants = tenants
        self.quotas = quotas
        self.quotaUsed = quotaUsed
        self.reserves = reserves
        self.sharedNodes = sharedNodes
        self.prepared = Prepared(
            nodes: nodes, pending: pending, running: table, reserves: reserves,
            reservedModels: Set(reservations.values.map(\.gpuModel)),
            rackBlocks: Set(reservations.values.flatMap(\.racks)), index: index, kept: capacity, sharedNodes: sharedNodes)
    }

    /// Each node's position in `nodes`.
    static func positions(_ nodes: [NodeView]) -> [NodeID: Int] {
        var index: [NodeID: Int] = [:]
        index.reserveCapacity(nodes.count)
        for (i, n) in nodes.enumerated() { index[n.id] = i }
        return index
    }

    private init(_ base: SchedulingSnapshot, pending: [PendingJob]) {
        nodes = base.nodes
        self.pending = pending
        table = base.table
        sites = base.sites
        tenants = base.tenants
        quotas = base.quotas
        quotaUsed = base.quotaUsed
        reserves = base.reserves
        reservations = base.reservations
        tiers = base.tiers
        prepared = base.prepared
        nodeIndex = base.nodeIndex
        kept = base.kept
        sharedNodes = base.sharedNodes
    }

    /// The same facts with another queue. The indexes are reused unless either queue
    /// holds GPUs for a preemption (nominations are part of the capacity index).
    public func replacingPending(_ pending: [PendingJob]) -> SchedulingSnapshot {
        if self.pending.contains(where: { $0.nominated != nil }) || pending.contains(where: { $0.nominated != nil }) {
            return SchedulingSnapshot(
                nodes: nodes, pending: pending, sites: sites, tenants: tenants, quotas: quotas,
                quotaUsed: quotaUsed, reserves: reserves, reservations: reservations, tiers: tiers, nodeIndex: nodeIndex,
                capacity: kept, runningTable: table, sharedNodes: sharedNodes)
        }
        return SchedulingSnapshot(self, pending: pending)
    }

    /// Indexes built once per snapshot, so that each decision is cheap.
    let prepared: Prepared
    /// Each node's position in `nodes` (given by the fleet's owner, or built).
    let nodeIndex: [NodeID: Int]
    /// What the fleet's owner keeps across rounds (capacity, nodes with shared GPUs), if given.
    let kept: KeptCapacity?
    let sharedNodes: [Int]?
}

/// One node's part of a placement.
public struct NodeAssignment: Codable, Equatable, Sendable {
    public let node: NodeID
    public let gpus: [Int]

    public init(node: NodeID, gpus: [Int]) {
        self.node = node
        self.gpus = gpus
    }
}

/// A decision with its reason. Placements are applied by the state machine and
/// recorded in the log; waits are kept to answer "why is my job pending".
public struct Placement: Codable, Equatable, Sendable {
    public let job: JobID
    public let nodes: [NodeAssignment]
    public let reason: String

    public init(job: JobID, nodes: [NodeAssignment], reason: String) {
        self.job = job
        self.nodes = nodes
        self.reason = reason
    }
}

/// Stop lower-tier work so that `job` can run: the victims get a notice and are killed
/// at its deadline; `target` GPUs are held for `job` meanwhile.
public struct Preemption: Codable, Equatable, Sendable {
    public let job: JobID
    public let victims: [JobID]
    public let target: [NodeAssignment]
    public let noticeSeconds: Int64
    public let reason: String

    public init(job: JobID, victims: [JobID], target: [NodeAssignment], noticeSeconds: Int64, reason: String) {
        self.job = job
        self.victims = victims
        self.target = target
        self.noticeSeconds = noticeSeconds
        self.reason = reason
    }
}

/// Why a queued job was not placed this round, one line per constraint that stopped it.
public struct Wait: Codable, Equatable, Sendable {
    public let job: JobID
    public let reasons: [String]

    public init(job: JobID, reasons: [String]) {
        self.job = job
        self.reasons = reasons
    }

    public var reason: String { reasons.joined(separator: "; ") }
}

/// Stop a running job whose capacity block ends: it gets a notice and is killed at `deadline`.
public struct Stop: Codable, Equatable, Sendable {
    public let job: JobID
    public let deadline: Timestamp
    public let reason: String

    public init(job: JobID, deadline: Timestamp, reason: String) {
        self.job = job
        self.deadline = deadline
        self.reason = reason
    }
}

public struct Plan: Codable, Equatable, Sendable {
    public var placements: [Placement]
    public var preemptions: [Preemption]
    public var stops: [Stop]
    public var waits: [Wait]

    public init(placements: [Placement] = [], preemptions: [Preemption] = [], stops: [Stop] = [], waits: [Wait] = []) {
        self.placements = placements
        self.preemptions = preemptions
        self.stops = stops
        self.waits = waits
    }

    enum CodingKeys: String, CodingKey { case placements, preemptions, stops, waits }

    /// Plans logged before stops existed decode with none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        placements = try c.decode([Placement].self, forKey: .placements)
        preemptions = try c.decode([Preemption].self, forKey: .preemptions)
        stops = try c.decodeIfPresent([Stop].self, forKey: .stops) ?? []
        waits = try c.decode([Wait].self, forKey: .waits)
    }

    /// Whether the plan changes anything (waits do not).
    public var isEmpty: Bool { placements.isEmpty && preemptions.isEmpty && stops.isEmpty }

    /// The part of the plan the state machine applies and the log records.
    public var decisions: Plan { Plan(placements: placements, preemptions: preemptions, stops: stops) }
}
