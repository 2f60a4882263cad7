import StratusCore
import StratusLedger
import StratusScheduler

/// The whole control-plane state. It changes only through `apply`, so the same log
/// always rebuilds the same value.
public struct State: Codable, Equatable, Sendable {
    /// Sequence number of the last applied log entry.
    public internal(set) var seq: UInt64 = 0

    public internal(set) var orgs: [OrgID: Org] = [:]
    public internal(set) var projects: [ProjectID: Project] = [:]
    public internal(set) var members: [MemberID: Member] = [:]
    public internal(set) var keys: [KeyID: APIKey] = [:]
    var keyByHash: [String: KeyID] = [:]

    public internal(set) var regions: [RegionID: Region] = [:]
    public internal(set) var sites: [SiteID: Site] = [:]
    public internal(set) var racks: [RackID: Rack] = [:]
    public internal(set) var nodes = NodeTable<Node>()
    /// Nodes in the order they were added; the scheduler scans in this order.
    public internal(set) var nodeOrder: [NodeID] = []
    /// Nodes per GPU model per GPU count, kept by `applyFleet`, so that submit-time checks
    /// do not scan the fleet.
    var nodeSizes: [String: [Int: Int]] = [:]
    /// For each node, the job holding each GPU index (nil when free). This and the other
    /// node tables keep the slots of `nodeOrder` (`addNode`).
    public internal(set) var gpuHolders = NodeTable<[JobID?]>()
    /// GPUs shared by jobs that each take a fraction of one: node -> GPU index -> share.
    /// A shared GPU has no whole holder in `gpuHolders`.
    public internal(set) var gpuShares = NodeTable<[Int: GPUShare]>()
    /// Power, spot supply, the jobs holding GPUs and the scheduler's node views and
    /// capacity index, kept as commands change the fleet and the GPU table (derived).
    var counters = FleetCounters()
    /// CPU and memory that live allocations of jobs asking for them take on each node.
    public internal(set) var resourcesInUse = NodeTable<NodeResources>()

    public internal(set) var jobs = JobTable()
    /// Queued jobs in submission order.
    public internal(set) var queue: [JobID] = []
    var idempotency: [String: JobID] = [:]
    /// Internal reserves by `InternalReserve.key`.
    public internal(set) var reserves: [String: InternalReserve] = [:]
    /// Quota rules: GPUs each scope may hold at once.
    public internal(set) var quotas: [QuotaScope: Int] = [:]
    /// The tiers offered, highest priority first (`stratus up --tiers`).
    public internal(set) var tiers: [Tier] = Tier.allCases
    /// Capacity blocks, cancelled and ended ones included.
    public internal(set) var reservations: [ReservationID: Reservation] = [:]
    var nextReservation: UInt64 = 1
    /// Capacity-block work interrupted by lost nodes, per block (for the availability SLA).
    public internal(set) var reservationOutages: [ReservationID: [Outage]] = [:]
    /// GPUs held for a queued job while the spot work it preempted stops.
    public internal(set) var nominations: [JobID: [NodeAssignment]] = [:]

    public internal(set) var usage = UsageMeter()
    /// Prices, metered usage, the ledger and invoices.
    public internal(set) var billing = Billing()
    var nextCredit: UInt64 = 1
    var nextCommitment: UInt64 = 1
    /// Service levels the control plane checks; breaches become credits.
    public internal(set) var slas: [SLA] = []
    /// GPU-milliseconds per org per day (days since the epoch), for fair share: exact
    /// integers, so state does not depend on the scheduler's half-life.
    public internal(set) var usageByOrgDay: [OrgID: [Int64: Int64]] = [:]

    /// Credentials of node agents, revoked ones included.
    public internal(set) var agentTokens: [AgentTokenID: AgentToken] = [:]
    var agentTokenByHash: [String: AgentTokenID] = [:]
    var nextAgentToken: UInt64 = 1

    var nextJob: UInt64 = 1
    var nextKey: UInt64 = 1
    var nextMember: UInt64 = 1

    public init() {}

    public var isBootstrapped: Bool { orgs[InternalOrg.id] != nil }

    /// The key whose secret hashes to `hash`, if it exists and is not revoked.
    public func activeKey(hash: String) -> APIKey? {
        guard let id = keyByHash[hash], let key = keys[id], key.revokedAt == nil else { return nil }
        return key
    }

    /// The agent token whose secret hashes to `hash`, if it exists and is not revoked.
    public func activeAgentToken(hash: String) -> AgentToken? {
        guard let id = agentTokenByHash[hash], let token = agentTokens[id], token.revokedAt == nil else { return nil }
        return token
    }

    public func project(org: OrgID, name: String) -> Project? { projects[Self.projectID(org, name)] }

    static func projectID(_ org: OrgID, _ name: String) -> ProjectID { ProjectID("\(org.rawValue)/\(name)") }

    static func idempotencySlot(_ org: OrgID, _ key: String) -> String { "\(org.rawValue)\u{0}\(key)" }

    /// The next job ID `submitJob` would assign (for callers that want to log it).
    public var nextJobID: JobID { JobID("job-\(nextJob)") }

    /// Racks and sites numbered in name order, blocks by "site/block" name, and each
    /// node's rack, site and block numbers, in `nodeOrder`.
    func schedulerIndex() -> (
        racks: [RackID: Int], sites: [SiteID: Int], placement: [(rack: Int, site: Int, block: Int)]
    ) {
        let rackIndex = Dictionary(uniqueKeysWithValues: racks.keys.sorted().enumerated().map { ($1, $0) })
        let siteIndex = Dictionary(uniqueKeysWithValues: sites.keys.sorted().enumerated().map { ($1, $0) })
        let blockNames = Set(racks.values.compactMap { r in r.block.map { "\(r.site.rawValue)/\($0)" } }).sorted()
        let blockIndex = Dictionary(uniqueKeysWithValues: blockNames.enumerated().map { ($1, $0) })
        let placement = nodeOrder.map { id -> (rack: Int, site: Int, block: Int) in
            let node = nodes[id]!
            let block = racks[node.rack].flatMap { r in r.block.flatMap { blockIndex["\(r.site.rawValue)/\($0)"] } } ?? -1
            let site = racks[node.rack].map { siteIndex[$0.site] ?? 0 } ?? 0
            return (rackIndex[node.rack] ?? 0, site, block)
        }
        return (rackIndex, siteIndex, placement)
    }

    /// The facts the scheduler needs, in deterministic order. Fair-share usage is given for
    /// every org with `allTenants`, else only for the orgs with queued jobs (all a round ranks).
    public func schedulingSnapshot(allTenants: Bool = true) -> SchedulingSnapshot {
        let counters = currentCounters
        let siteIDs = sites.keys.sorted()
        let siteIndex = counters.siteIndex
        let rackIndex = counters.rackIndex
        let used = counters.wattsBySite
        let siteViews = siteIDs.map { id -> SchedulingSnapshot.SiteView in
            let site = sites[id]!
            return .init(
                name: id.rawValue, region: site.region.rawValue, budgetWatts: site.powerBudgetKW * 1000,
                usedWatts: used[id] ?? 0, pueMilli: site.pueMilli)
        }
        let pending = queue.compactMap { id -> SchedulingSnapshot.PendingJob? in
            guard let job = jobs[id] else { return nil }
            return pendingView(
                id: id, job.spec, org: job.org, project: projects[job.project]?.name ?? "", nominated: nominations[id])
        }
        let ranked = allTenants ? Array(orgs.keys) : Array(Set(pending.map(\.org)))
        let tenants = Dictionary(
            uniqueKeysWithValues: ranked.compactMap { id in
                orgs[id].map { org in
                    (
                        org.id,
                        SchedulingSnapshot.TenantUsage(weight: org.weight, dailyGPUMilliseconds: usageByOrgDay[org.id] ?? [:])
                    )
                }
            })
        var blocks: [ReservationID: SchedulingSnapshot.ReservationView] = [:]
        let use = reservations.isEmpty ? [:] : reservationUse(counters)
        for r in reservations.values where r.cancelledAt == nil {
            blocks[r.id] = .init(
                id: r.id, gpuModel: r.gpuModel, site: r.site.flatMap { siteIndex[$0] }, gpus: r.gpus, start: r.start,
                end: r.end, used: use[r.id] ?? 0, holdFrom: r.holdFrom, racks: Set(r.racks.compactMap { rackIndex[$0] }))
        }
        return SchedulingSnapshot(
            nodes: counters.nodeViews, pending: pending, sites: siteViews, tenants: tenants, quotas: quotas,
            quotaUsed: quotaUsage(), reserves: reserves.keys.sorted().map { reserves[$0]! }, reservations: blocks,
            tiers: tiers, nodeIndex: counters.position, capacity: counters.capacity, runningTable: counters.running,
            sharedNodes: counters.sharedNodes.sorted())
    }

    /// How the scheduler sees job `id` while it holds GPUs (nil: it does not).
    func runningView(_ id: JobID) -> SchedulingSnapshot.RunningJob? {
        guard let job = jobs[id] else { return nil }
        // The live allocations, in one array.
        var live: [NodeAssignment] = []
        live.reserveCapacity(job.allocations.count)
        var stopRequested = false
        for a in job.allocations where !a.isEnded {
            live.append(NodeAssignment(node: a.node, gpus: a.gpus))
            stopRequested = stopRequested || a.stopRequested
        }
        return .init(
            id: id, tier: job.spec.tier, org: job.org, project: projects[job.project]?.name ?? "",
            startedAt: job.startedAt ?? job.placedAt ?? job.submittedAt,
            allocations: live,
            stopping: job.cancelRequested || job.preemptedBy != nil || stopRequested,
            expectedEnd: Self.expectedEnd(job), reservation: job.spec.reservation,
            resources: job.spec.nodeResources ?? .zero, gpuShareMilli: job.spec.gpuShareMilli)
    }

    /// How the scheduler sees node `id`, numbered as `placement` says.
    func nodeView(_ id: NodeID, _ placement: (rack: Int, site: Int, block: Int)) -> SchedulingSnapshot.NodeView {
        Self.nodeView(
            nodes[id]!, placement, holders: gpuHolders[id] ?? [], shares: gpuShares[id], used: resourcesInUse[id])
    }

    /// The view of `node` from its GPU table, shared GPUs and CPU and memory in use (a
    /// static function: a caller changing the state passes its parts without copying it).
    static func nodeView(
        _ node: Node, _ placement: (rack: Int, site: Int, block: Int), holders: [JobID?], shares: [Int: GPUShare]?,
        used: NodeResources?
    ) -> SchedulingSnapshot.NodeView {
        let id = node.id
        let free = holders.indices.filter { holders[$0] == nil && shares?[$0] == nil }
        return .init(
            id: id, gpuModel: node.gpuModel, schedulable: node.isSchedulable, freeGPUs: free, gpuCount: node.gpuCount,
            rack: placement.rack, site: placement.site, labels: node.labels, block: placement.block,
            freeResources: Self.freeResources(node, used: used),
            shares: shares.map { s in
                s.keys.sorted().map { g in
                    SchedulingSnapshot.SharedGPU(gpu: g, org: s[g]!.org, tier: s[g]!.tier, freeMilli: 1000 - s[g]!.milli)
                }
            } ?? [])
    }

    /// Brings `view` (node `node`'s) up to date with its GPU table, shared GPUs and CPU
    /// and memory in use: what `nodeView` gives, changed in place.
    static func refresh(
        _ view: inout SchedulingSnapshot.NodeView, _ node: Node, holders: [JobID?], shares: [Int: GPUShare]?,
        used: NodeResources?
    ) {
        view.schedulable = node.isSchedulable
        view.freeGPUs.removeAll(keepingCapacity: true)
        for g in holders.indices where holders[g] == nil && shares?[g] == nil { view.freeGPUs.append(g) }
        if view.labels != node.labels { view.labels = node.labels }
        view.freeResources = freeResources(node, used: used)
        if let shares, !shares.isEmpty {
            view.shares = shares.keys.sorted().map { g in
                SchedulingSnapshot.SharedGPU(
                    gpu: g, org: shares[g]!.org, tier: shares[g]!.tier, freeMilli: 1000 - shares[g]!.milli)
            }
        } else if !view.shares.isEmpty {
            view.shares = []
        }
    }

    /// CPU and memory not yet taken on `node`; nil when it declares none (not limited).
    public func freeResources(_ node: Node) -> NodeResources? {
        Self.freeResources(node, used: resourcesInUse[node.id])
    }

    /// CPU and memory of `node` not in `used`; nil when it declares none.
    static func freeResources(_ node: Node, used: NodeResources?) -> NodeResources? {
        guard let total = node.resources else { return nil }
        let used = used ?? .zero
        return NodeResources(
            cpuMilli: max(0, total.cpuMilli - used.cpuMilli), memoryMiB: max(0, total.memoryMiB - used.memoryMiB))
    }

    /// The latest a job holding GPUs will have ended: its start (or placement) plus its
    /// max_duration, or its stop deadline; nil when nothing bounds it.
    static func expectedEnd(_ job: Job) -> Timestamp? {
        // One walk over the allocations, their fields read in place (no lists built).
        var deadline: Timestamp?
        var firstStart: Timestamp?
        for i in job.allocations.indices {
            if let d = job.allocations[i].stopDeadline { deadline = max(deadline ?? d, d) }
            if let s = job.allocations[i].startedAt { firstStart = min(firstStart ?? s, s) }
        }
        if let deadline { return deadline }
        guard let limit = job.spec.maxDurationSeconds else { return nil }
        return (firstStart ?? job.startedAt ?? job.placedAt ?? job.submittedAt).adding(seconds: limit)
    }

    /// GPUs held now per quota scope, for the scopes that have a rule.
    public func quotaUsage() -> [QuotaScope: Int] {
        guard !quotas.isEmpty else { return [:] }
        var used: [QuotaScope: Int] = [:]
        for (id, holders) in gpuHolders {
            let node = nodes[id]!
            let region = site(of: node)?.region.rawValue ?? ""
            var perJob: [JobID: Int] = [:]
            for case let job? in holders { perJob[job, default: 0] += 1 }
            // A job on a fraction of a GPU counts as one GPU against quotas.
            for share in gpuShares[id]?.values ?? [:].values {
                for job in share.jobs { perJob[job, default: 0] += 1 }
            }
            for (jobID, gpus) in perJob {
                guard let job = jobs[jobID], let project = projects[job.project] else { continue }
                for scope in QuotaScope.all(org: job.org, project: project.name, gpuModel: node.gpuModel, region: region)
                where quotas[scope] != nil {
                    used[scope, default: 0] += gpus
                }
            }
        }
        return used
    }

    /// How the scheduler sees a queued job (or a quoted spec).
    public static func pendingView(
        id: JobID, spec: JobSpec, org: OrgID, project: String, nominated: [NodeAssignment]? = nil
    ) -> SchedulingSnapshot.PendingJob {
        .init(
            id: id, tier: spec.tier, gpuModel: spec.gpuModel, gpusPerNode: spec.gpusPerNode, numNodes: spec.numNodes,
            topology: spec.topology, nominated: nominated, placement: spec.placement, org: org, project: project,
            maxDurationSeconds: spec.maxDurationSeconds, alternatives: spec.alternatives, reservation: spec.reservation,
            resources: spec.nodeResources ?? .zero, gpuShareMilli: spec.gpuShareMilli)
    }

    /// How the scheduler sees a job of this state: a job in a site-bound reservation may
    /// only run in that site.
    public func pendingView(
        id: JobID, _ spec: JobSpec, org: OrgID, project: String, nominated: [NodeAssignment]? = nil
    ) -> SchedulingSnapshot.PendingJob {
        var spec = spec
        if let id = spec.reservation, let site = reservations[id]?.site { spec.placement.sites = [site.rawValue] }
        if spec.tier == .spot, let bid = spec.maxPrice {
            let within = regionsWithin(maxPrice: bid, model: spec.gpuModel, org: org, allowed: spec.placement.regions)
            spec.placement.regions = within.isEmpty ? [Self.noRegionWithinBid] : within
        }
        return Self.pendingView(id: id, spec: spec, org: org, project: project, nominated: nominated)
    }

    /// GPUs each reservation's jobs hold, or have held for them ahead of its start.
    public func reservationUse() -> [ReservationID: Int] { reservationUse(currentCounters) }

    /// The same, from counters the caller already has.
    func reservationUse(_ counters: FleetCounters) -> [ReservationID: Int] {
        // Only queued jobs (their nominations) and jobs holding GPUs count: a walk over
        // the queue and the running jobs in blocks, not over every job or GPU.
        var used: [ReservationID: Int] = [:]
        for id in queue {
            guard let held = nominations[id], let r = jobs[id]?.spec.reservation else { continue }
            used[r, default: 0] += held.reduce(0) { $0 + $1.gpus.count }
        }
        // GPUs held: from the running table's jobs in blocks (a block's work holds whole GPUs).
        for (r, gpus) in counters.running.gpusByReservation() { used[r, default: 0] += gpus }
        return used
    }

    /// The site a node is in.
    public func site(of node: Node) -> Site? { racks[node.rack].flatMap { sites[$0.site] } }

    /// The region of node `id`'s site (nil: no such node, or it has no site); from the
    /// counters when they are built (one lookup instead of three).
    func region(ofNode id: NodeID) -> String? {
        if let k = counterPosition(id) { return counters.siteAt[k]?.region.rawValue }
        return nodes[id].flatMap { site(of: $0)?.region.rawValue }
    }

    /// Watts a GPU of `model` draws at the wall in a site with PUE `pueMilli`.
    static func wallWatts(model: String, gpus: Int, pueMilli: Int64) -> Int64 {
        Int64(gpus) * Int64(GPUCatalog.model(named: model)?.powerWatts ?? 0) * pueMilli / 1000
    }

    /// Power drawn by allocated GPUs per site (GPU power x PUE), in watts.
    public func usedWattsBySite() -> [SiteID: Int64] {
        currentCounters.wattsBySite.filter { $0.value != 0 }
    }

    /// Largest GPU count of any node of `model`, or nil when the fleet has none.
    func largestNode(of model: String) -> Int? { nodeSizes[model]?.keys.max() }

    /// Nodes of `model` with at least `gpus` GPUs within `placement` (and, asked for, that
    /// much CPU and memory in all; a node that declares none does not limit them).
    func nodeCount(
        of model: String, withAtLeast gpus: Int, within placement: PlacementConstraints = .anywhere,
        resources: NodeResources? = nil
    ) -> Int {
        if placement.isAnywhere, resources == nil {
            return nodeSizes[model]?.reduce(0) { $0 + ($1.key >= gpus ? $1.value : 0) } ?? 0
        }
        return nodeOrder.reduce(0) { n, id in
            let node = nodes[id]!
            guard node.gpuModel == model, node.gpuCount >= gpus else { return n }
            if let resources, let has = node.resources, !has.covers(resources) { return n }
            if !placement.isAnywhere {
                guard let site = site(of: node),
                    placement.allows(region: site.region.rawValue, site: site.id.rawValue), placement.matches(node.labels)
                else { return n }
            }
            return n + 1
        }
    }
}

/// One GPU shared by jobs that each take a fraction of it: all of one org and one tier,
/// together at most the whole GPU.
public struct GPUShare: Codable, Equatable, Sendable {
    public var org: OrgID
    public var tier: Tier
    /// Thousandths of the GPU taken.
    public var milli: Int
    /// The jobs sharing it, in the order they were placed.
    public var jobs: [JobID]

    public init(org: OrgID, tier: Tier, milli: Int, jobs: [JobID]) {
        self.org = org
        self.tier = tier
        self.milli = milli
        self.jobs = jobs
    }
}

extension State {
    /// Jobs holding GPUs of `node`, whole or a share, each once, in the order of their GPUs.
    public func jobs(on node: NodeID) -> [JobID] {
        var seen = Set<JobID>()
        var out: [JobID] = []
        for case let id? in gpuHolders[node] ?? [] where seen.insert(id).inserted { out.append(id) }
        if let shares = gpuShares[node] {
            for g in shares.keys.sorted() {
                for id in shares[g]!.jobs where seen.insert(id).inserted { out.append(id) }
            }
        }
        return out
    }

    /// GPUs of `node` in use, whole or shared.
    public func busyGPUs(_ node: NodeID) -> Int {
        (gpuHolders[node]?.reduce(0) { $0 + ($1 == nil ? 0 : 1) } ?? 0) + (gpuShares[node]?.count ?? 0)
    }

    /// Whether GPU `g` of `node` is free: no job holds it, whole or in part.
    public func isFree(_ node: NodeID, _ g: Int) -> Bool {
        guard let holders = gpuHolders[node], g >= 0, g < holders.count else { return false }
        return holders[g] == nil && gpuShares[node]?[g] == nil
    }

    /// Every job holding GPUs now (whole or a share).
    public func holdingJobs() -> Set<JobID> { counters.valid ? counters.holding : walkHoldingJobs() }

    func walkHoldingJobs() -> Set<JobID> {
        var holding = Set<JobID>()
        for holders in gpuHolders.values {
            for case let id? in holders { holding.insert(id) }
        }
        for shares in gpuShares.values {
            for share in shares.values { holding.formUnion(share.jobs) }
        }
        return holding
    }

    /// Live allocations on `node` that its agent must start, keep running or stop.
    public func assignments(for node: NodeID) -> [Assignment] {
        guard gpuHolders[node] != nil else { return [] }
        var out: [Assignment] = []
        for jobID in jobs(on: node) {
            guard let job = jobs[jobID], let alloc = job.allocations.first(where: { $0.node == node }),
                !alloc.isEnded
            else { continue }
            var a = Assignment(
                job: jobID, node: node, rank: alloc.rank, gpus: alloc.gpus, numNodes: job.spec.numNodes,
                run: job.spec.run, envs: job.spec.envs, maxDurationSeconds: job.spec.maxDurationSeconds,
                masterNode: job.allocations.first!.node, started: alloc.startedAt != nil,
                stopRequested: alloc.stopRequested, stopDeadline: alloc.stopDeadline,
                stopReason: job.preemptedBy.map { "preempted by \($0)" } ?? job.movedBy
                    ?? (job.cancelRequested
                        ? (job.reason?.hasPrefix("stopped: ") == true ? String(job.reason!.dropFirst(9)) : "cancelled")
                        : nil))
            a.attempt = job.attempt
            a.gpuShareMilli = job.spec.gpuShareMilli
            a.masterAddress = nodes[a.masterNode]?.agent?.address
            if let devices = nodes[node]?.agent?.gpus {
                a.gpuUuids = alloc.gpus.map { $0 < devices.count ? devices[$0].uuid : String($0) }
            }
            out.append(a)
        }
        return out.sorted { $0.job < $1.job }
    }
}
