import StratusCore

/// The placement policy. `plan` is a pure function of its inputs: the same snapshot
/// and time always give the same plan.
public protocol Scheduler: Sendable {
    func plan(_ snapshot: SchedulingSnapshot, now: Timestamp) -> Plan
}

/// Tiers, gangs, topology and preemption.
///
/// - Jobs are considered by tier (internal > reserved > on-demand > spot), then by fair
///   share (the org with the least weighted, decayed GPU time first), then in submission
///   order. The first job that cannot start gets a backfill reservation at its earliest
///   start (from running work's time limits); jobs behind it may use those nodes only
///   if their `max_duration` ends before then (EASY backfill).
/// - Best fit: a single-node job takes the node with the fewest free GPUs that still fit
///   it, in the most used rack, so that whole nodes and racks stay free for gangs.
/// - A gang (`num_nodes > 1`) is all or nothing, inside one site, in the smallest rack
///   that fits it if there is one; `topology: rack` requires that, `topology: site`
///   allows spanning racks (using as few as it can).
/// - A job of a tier above spot that does not fit may preempt spot work: the fewest,
///   most recently started spot jobs that free a feasible placement, never more. The
///   victims get a notice; the freed GPUs are held (nominated) for the job until it runs.
public struct TieredScheduler: Scheduler {
    public var preemptionNoticeSeconds: Int64
    public var fairShare: FairShare

    /// How a project gets back quota that other projects' spot work borrowed.
    public enum QuotaReclaim: String, Sendable, CaseIterable {
        /// Preempt the borrowers (most recently started first), with notice.
        case preempt
        /// Wait for the borrowers to end.
        case wait
    }
    public var quotaReclaim: QuotaReclaim

    public init(
        preemptionNoticeSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds, fairShare: FairShare = FairShare(),
        quotaReclaim: QuotaReclaim = .preempt
    ) {
        self.preemptionNoticeSeconds = preemptionNoticeSeconds
        self.fairShare = fairShare
        self.quotaReclaim = quotaReclaim
    }

    public func plan(_ snapshot: SchedulingSnapshot, now: Timestamp) -> Plan {
        var round = Round(snapshot, now: now)
        round.noticeSeconds = preemptionNoticeSeconds
        var plan = Plan()
        // Tier first; within a tier the org with the lowest fair-share score; then FIFO.
        let rank = Dictionary(
            uniqueKeysWithValues: fairShare.standings(snapshot, now: now, only: Set(snapshot.pending.map(\.org)))
                .enumerated().map { ($1.org, $0) })
        var tierRank: [Tier: Int] = [:]
        for (i, tier) in snapshot.tiers.enumerated() { tierRank[tier] = i }
        let keys = snapshot.pending.enumerated().map { i, job in
            (tier: tierRank[job.tier] ?? Int.max, org: rank[job.org] ?? Int.max, i: i)
        }
        let ordered = keys.sorted { a, b in
            a.tier != b.tier ? a.tier < b.tier : a.org != b.org ? a.org < b.org : a.i < b.i
        }
        .prefix(Limits.maxJobsPerPlan)
        .map { snapshot.pending[$0.i] }

        // GPUs held for fractions whose victims are stopping, known before any job is
        // decided (a fraction ahead of its holder in the order waits for it too).
        for job in ordered {
            if let nominated = job.nominated { round.holdShare(for: job, nominated) }
        }
        // EASY backfill: the first job that cannot start gets a reservation at its earliest
        // start; jobs behind it may take those nodes only if they end before it starts.
        var reservation: (job: JobID, at: Timestamp, nodes: Set<Int>)?
        for job in ordered {
            if let r = reservation {
                let endsInTime = job.maxDurationSeconds.map { now.adding(seconds: $0) <= r.at } ?? false
                round.blocked = endsInTime ? [] : r.nodes
            }
            round.fence(for: job)
            if let id = job.reservation {
                // A block's capacity was promised when it was accepted: backfill holds do not apply.
                round.blocked = []
                if !gate(job, in: id, round: &round, plan: &plan, now: now) { continue }
            }
            if let nominated = job.nominated {
                // The choice whose GPU model the held nodes have.
                let heldModel = nominated.first.flatMap { round.index[$0.node] }.map { snapshot.nodes[$0].gpuModel }
                let job = job.choices.first { $0.gpuModel == heldModel } ?? job
                // Held GPUs already count against the job's reservation, or as work outside
                // reservations: forget that while checking and placing.
                round.unhold(nominated, for: job)
                let protection = round.protectionBlock(job, nominated)
                if round.allFree(nominated), round.powerAllows(nominated), round.resourcesAllow(nominated, for: job),
                    case .none = round.quotaBlock(job, nominated),
                    protection == nil
                {
                    round.take(nominated.map { (round.index[$0.node]!, $0.gpus) }, for: job)
                    round.releaseHeldShare(of: job.id)
                    plan.placements.append(Placement(job: job.id, nodes: nominated, reason: "on the GPUs its preemption freed"))
                } else {
                    round.unhold(nominated, for: job, undo: true)
                    if let blocked = round.quotaBlock(job, nominated) ?? protection {
                        plan.waits.append(Wait(job: job.id, reasons: [blocked]))
                    } else {
                        let nodes = nominated.map(\.node.rawValue).joined(separator: ", ")
                        plan.waits.append(
                            Wait(job: job.id, reasons: ["preemption: waiting for preempted work to stop on \(nodes)"]))
                    }
                }
                continue
            }
            // The first acceptable GPU model that fits now wins; if none does, the first
            // choice's reasons are the ones reported.
            var placed = false
            var firstFailure: Round.Failure?
            for choice in job.choices {
                switch round.fit(choice) {
                case .success(let c):
                    round.take(c.nodes, for: choice)
                    plan.placements.append(
                        Placement(
                            job: job.id, nodes: c.nodes.map { NodeAssignment(node: snapshot.nodes[$0.0].id, gpus: $0.1) },
                            reason: c.reason))
                    placed = true
                case .failure(let why):
                    firstFailure = firstFailure ?? why
                }
                if placed { break }
            }
            guard !placed, let why = firstFailure else { continue }
            if why.reasons.first?.hasPrefix("quota: org") == true, quotaReclaim == .preempt,
                let p = round.reclaim(for: job, noticeSeconds: preemptionNoticeSeconds)
            {
                plan.preemptions.append(p)
                plan.waits.append(Wait(job: job.id, reasons: [why.reasons[0], p.reason]))
                continue
            }
            // A fraction whose org and tier already have a GPU held for another fraction's
            // preemption, with room for it, waits to share that GPU.
            if let held = round.shareHeld(for: job) {
                plan.waits.append(Wait(job: job.id, reasons: [why.reasons[0], held]))
                continue
            }
            // Preemption mutates the round (victims taken, GPUs held): try it only here.
            var preemption: Preemption?
            // A fraction of a GPU preempts like a job of one GPU: the GPU its victims free is
            // held for it, and becomes a GPU it shares once they have stopped.
            if job.tier.rank < Tier.spot.rank {
                for choice in job.choices where preemption == nil {
                    preemption = round.preempt(for: choice, noticeSeconds: preemptionNoticeSeconds)
                }
            }
            if let p = preemption {
                round.holdShare(for: job, p.target)
                plan.preemptions.append(p)
                plan.waits.append(
                    Wait(
                        job: job.id,
                        reasons: ["preemption: stopping \(p.victims.count) spot job(s) with \(p.noticeSeconds) s notice"]))
                continue
            }
            var reasons = why.reasons
            if !job.alternatives.isEmpty {
                reasons.append("also tried: \(job.alternatives.map(\.description).joined(separator: ", "))")
            }
            if job.tier == .spot { reasons.append("tier: spot work never preempts") }
            if reservation == nil, let estimate = Self.earliestStart(job, from: round, now: now, failedNow: true) {
                let nodes = Set(estimate.nodes.compactMap { round.index[$0.node] })
                reservation = (job.id, estimate.at, nodes)
                reasons.append("backfill: holds \(nodes.count) node(s) to start by \(estimate.at)")
            }
            plan.waits.append(Wait(job: job.id, reasons: reasons))
        }
        // Work in a capacity block stops when the block ends (notice first), or soon after
        // the block is cancelled.
        for j in snapshot.table.inReservations {
            let r = snapshot.table[j]
            guard !r.stopping, let id = r.reservation else { continue }
            if let block = snapshot.reservations[id] {
                guard now >= block.end.adding(seconds: -preemptionNoticeSeconds) else { continue }
                plan.stops.append(
                    Stop(job: r.id, deadline: max(block.end, now), reason: "reservation \(id) ends at \(block.end)"))
            } else {
                plan.stops.append(
                    Stop(
                        job: r.id, deadline: now.adding(seconds: preemptionNoticeSeconds),
                        reason: "reservation \(id) was cancelled"))
            }
        }
        return plan
    }

    /// A job in a capacity block: true when it may go on to placement now; otherwise its
    /// wait (or the hold taken for it) is in the plan. Within the preemption notice before
    /// the block starts, its GPUs are held (free ones, or spot work's after a notice that
    /// ends by the start), so that it starts on time.
    func gate(
        _ job: SchedulingSnapshot.PendingJob, in id: ReservationID, round: inout Round, plan: inout Plan, now: Timestamp
    ) -> Bool {
        func wait(_ reasons: [String]) -> Bool {
            plan.waits.append(Wait(job: job.id, reasons: reasons))
            return false
        }
        guard let r = round.snapshot.reservations[id] else { return wait(["reservation: \(id) was cancelled"]) }
        if now >= r.end { return wait(["reservation: \(id) ended at \(r.end)"]) }
        let need = job.gpusPerNode * job.numNodes
        let used = round.reservationUsed[id] ?? 0
        if job.nominated == nil, used + need > r.gpus {
            return wait(["reservation: \(id) has \(used) of its \(r.gpus) \(r.gpuModel) in use (needs \(need))"])
        }
        if now >= r.start { return true }
        if job.nominated != nil { return wait(["reservation: \(id) starts at \(r.start); its GPUs are held"]) }
        if now < r.holdFrom {
            return wait(["reservation: \(id) starts at \(r.start); the job starts then"])
        }
        switch round.fit(job) {
        case .success(let c):
            for (i, gpus) in c.nodes { round.capacity.hold(i, gpus, for: job.id) }
            round.reservationUsed[id, default: 0] += need
            plan.preemptions.append(
                Preemption(
                    job: job.id, victims: [],
                    target: c.nodes.map { NodeAssignment(node: round.snapshot.nodes[$0.0].id, gpus: $0.1) }, noticeSeconds: 0,
                    reason: "holding \(need) free \(r.gpuModel) for reservation \(id) from \(r.start)"))
            return wait(["reservation: \(id) starts at \(r.start); \(need) free GPUs held for it"])
        case .failure(let why):
            let untilStart = (now.milliseconds(until: r.start) + 999) / 1000
            if let p = round.preempt(for: job, noticeSeconds: min(preemptionNoticeSeconds, untilStart)) {
                round.reservationUsed[id, default: 0] += need
                plan.preemptions.append(p)
                return wait([
                    "reservation: \(id) starts at \(r.start); stopping \(p.victims.count) spot job(s) so that it starts on time"
                ])
            }
            return wait(["reservation: \(id) starts at \(r.start)"] + why.reasons)
        }
    }
}

/// The scheduler's working view during one round: free GPUs change as it places work.
/// It starts from the snapshot's prepared indexes; copying them is cheap, and each
/// change copies only the chunks and racks it touches.
struct Round {
    let snapshot: SchedulingSnapshot
    var capacity: CapacityIndex
    var victimTaken: Set<Int> = []
    /// For the job being decided: nodes in racks reserved for a block it is not in, and
    /// for a job in a block of whole racks, those racks.
    var fenced: Set<Int> = []
    var allowedRacks: Set<Int>?
    /// The deployment's preemption notice.
    var noticeSeconds: Int64 = 0
    /// Per GPU model and GPU count, how many of the most recent spot jobs are known to be
    /// taken or too small this round.
    var spotCursor: [SpotCursor: Int] = [:]
    struct SpotCursor: Hashable {
        let model: String
        let gpus: Int
    }
    /// Preemption searches that found nothing this round (see `preempt`).
    var fruitless: Set<SearchShape> = []
    struct SearchShape: Hashable {
        let model: String
        let gpus: Int
        let nodes: Int
        let topology: TopologyLevel?
        let pools: [Int]
    }
    /// Spot work each node could give up, worked out once per round (the running table
    /// does not change during one).
    var preemptibleOn: [Int: [(jobs: [Int], gpus: [Int])]] = [:]
    /// Nodes held for the backfill reservation: jobs that would not end in time skip them.
    var blocked: Set<Int> = []
    /// Watts each site may still draw.
    var powerLeft: [Int64]
    /// GPUs held per quota scope (only scopes with a rule).
    var quotaUsed: [QuotaScope: Int]
    /// Capacity protection: reserves in force now (by model, key -1 fleet-wide, then per
    /// site), and GPUs that on-demand and reserved work holds.
    var reserve: [String: [Int: Int]] = [:]
    var sold: [String: [Int: Int]]
    /// Reservations: GPUs held by non-spot work outside them (as `sold`), and GPUs each
    /// reservation's jobs hold (or are held for).
    var outside: [String: [Int: Int]]
    var reservationUsed: [ReservationID: Int] = [:]
    /// The round's time (injected, never read from a clock).
    let time: Timestamp
    /// Milliwatts per GPU of each pool.
    let poolMilliwatts: [Int64]
    /// CPU and memory this round's placements took, per node, and what is held there for
    /// jobs whose preemption is under way (`Prepared.heldResources`).
    var resourcesTaken: [Int: NodeResources] = [:]
    /// GPUs shared by jobs on fractions (now and after this round's placements), by model.
    var shares: [String: [ShareSlot: SchedulingSnapshot.SharedGPU]] = [:]
    struct ShareSlot: Hashable, Comparable {
        let node: Int
        let gpu: Int
        static func < (a: ShareSlot, b: ShareSlot) -> Bool { (a.node, a.gpu) < (b.node, b.gpu) }
    }
    /// GPUs held for a fraction's preemption (victims still stopping), by model: room
    /// there for the same org's and tier's other fractions, which wait to share the GPU
    /// rather than each preempt one.
    var heldShares: [String: [ShareSlot: HeldShare]] = [:]
    struct HeldShare {
        let job: JobID
        let org: OrgID
        let tier: Tier
        var freeMilli: Int
    }

    struct Failure: Error {
        let reasons: [String]
    }
    struct Choice {
        let nodes: [(Int, [Int])]
        let reason: String
    }

    init(_ s: SchedulingSnapshot, now: Timestamp = .zero) {
        snapshot = s
        capacity = s.prepared.capacity
        powerLeft = s.sites.map { $0.budgetWatts - $0.usedWatts }
        quotaUsed = s.quotaUsed
        resourcesTaken = s.prepared.heldResources
        sold = s.prepared.sold
        outside = s.prepared.outside
        time = now
        for (id, r) in s.reservations where r.used > 0 { reservationUsed[id] = r.used }
        for (model, list) in s.prepared.sharesByModel {
            for (i, share) in list { shares[model, default: [:]][ShareSlot(node: i, gpu: share.gpu)] = share }
        }
        poolMilliwatts = s.prepared.capacity.pools.map { Self.milliwatts(model: $0.model, site: $0.site, s) }
        if !s.reserves.isEmpty {
            var siteIndex: [String: Int] = [:]
            for (i, site) in s.sites.enumerated() { siteIndex[site.name] = i }
            for r in s.reserves {
                let key = r.site.flatMap { siteIndex[$0] } ?? -1
                if r.site == nil || key >= 0 { reserve[r.gpuModel, default: [:]][key] = r.gpus(at: now) }
            }
        }
    }

    var index: [NodeID: Int] { snapshot.prepared.index }

    /// CPU and memory free on node `i` now; nil when the node does not limit them.
    func freeResources(_ i: Int) -> NodeResources? {
        guard let free = snapshot.nodes[i].freeResources else { return nil }
        return resourcesTaken[i].map { free - $0 } ?? free
    }

    /// Whether node `i` has the CPU and memory `job` asks for (with `released` freed first).
    func resourcesFit(_ i: Int, _ job: SchedulingSnapshot.PendingJob, adding released: NodeResources = .zero) -> Bool {
        job.resources.isZero || (freeResources(i).map { ($0 + released).covers(job.resources) } ?? true)
    }

    func resourcesAllow(_ assignments: [NodeAssignment], for job: SchedulingSnapshot.PendingJob) -> Bool {
        job.resources.isZero || assignments.allSatisfy { a in index[a.node].map { resourcesFit($0, job) } ?? false }
    }

    /// GPUs of node `i` that `job` may take now: free and not held for another job.
    func available(_ i: Int, for job: JobID) -> [Int] { capacity.available(i, for: job).indices }

    /// Why placing the job on these GPUs would break a quota, or nil.
    func quotaBlock(_ job: SchedulingSnapshot.PendingJob, _ assignments: [NodeAssignment]) -> String? {
        guard !snapshot.quotas.isEmpty, let first = assignments.first, let i = index[first.node] else { return nil }
        let need = assignments.reduce(0) { $0 + $1.gpus.count }
        if case .blocked(let scope, let used, let limit) = quota(job, region: region(i), need: need) {
            return "quota: \(scope) at \(used)/\(limit) (needs \(need))"
        }
        return nil
    }

    func protectionBlock(_ job: SchedulingSnapshot.PendingJob, _ assignments: [NodeAssignment]) -> String? {
        guard !reserve.isEmpty || !snapshot.reservations.isEmpty, let first = assignments.first, let i = index[first.node] else {
            return nil
        }
        return protectionBlock(job, site: snapshot.nodes[i].site, need: assignments.reduce(0) { $0 + $1.gpus.count })
    }

    func powerAllows(_ assignments: [NodeAssignment]) -> Bool {
        var need: [Int: Int64] = [:]
        for a in assignments {
            guard let i = index[a.node] else { return false }
            need[snapshot.nodes[i].site, default: 0] += watts(i, gpus: a.gpus.count)
        }
        return need.allSatisfy { $0.key >= powerLeft.count || $0.value <= powerLeft[$0.key] }
    }

    func allFree(_ assignments: [NodeAssignment]) -> Bool {
        assignments.allSatisfy { a in
            guard let i = index[a.node], snapshot.nodes[i].schedulable else { return false }
            return capacity.isFree(i, a.gpus)
        }
    }

    /// Watts `gpus` GPUs of node `i` draw at the wall (GPU power x PUE).
    func watts(_ i: Int, gpus: Int) -> Int64 {
        if let p = capacity.pool(ofNode: i) { return Int64(gpus) * poolMilliwatts[p] / 1000 }
        return Int64(gpus) * Self.milliwatts(model: snapshot.nodes[i].gpuModel, site: snapshot.nodes[i].site, snapshot) / 1000
    }

    /// Milliwatts one GPU of `model` draws at the wall in `site` (GPU power x PUE).
    static func milliwatts(model: String, site: Int, _ snapshot: SchedulingSnapshot) -> Int64 {
        guard site < snapshot.sites.count else { return 0 }
        return Int64(GPUCatalog.model(named: model)?.powerWatts ?? 0) * snapshot.sites[site].pueMilli
    }

    func powerLeft(_ i: Int) -> Int64 {
        let site = capacity.pool(ofNode: i).map { capacity.pools[$0].site } ?? snapshot.nodes[i].site
        return site < powerLeft.count ? powerLeft[site] : .max
    }

    /// Whether the job's regions and sites allow site `site`.
    func locationAllows(_ site: Int, _ job: SchedulingSnapshot.PendingJob) -> Bool {
        guard site < snapshot.sites.count else { return true }
        return job.placement.allows(region: snapshot.sites[site].region, site: snapshot.sites[site].name)
    }

    func region(_ i: Int) -> String { region(site: snapshot.nodes[i].site) }

    func region(site: Int) -> String { site < snapshot.sites.count ? snapshot.sites[site].region : "" }

    enum QuotaVerdict: Equatable {
        case fits
        /// Over its project's quota but within the org's: spot work may borrow.
        case borrows
        case blocked(QuotaScope, used: Int, limit: Int)
    }

    /// Whether `need` more GPUs of the job in `region` stay within every quota rule.
    func quota(_ job: SchedulingSnapshot.PendingJob, region: String, need: Int) -> QuotaVerdict {
        guard !snapshot.quotas.isEmpty else { return .fits }
        var projectOver: (QuotaScope, Int, Int)?
        for scope in QuotaScope.all(org: job.org, project: job.project, gpuModel: job.gpuModel, region: region) {
            guard let limit = snapshot.quotas[scope] else { continue }
            let used = quotaUsed[scope] ?? 0
            guard used + need > limit else { continue }
            if scope.project == nil { return .blocked(scope, used: used, limit: limit) }
            if projectOver == nil { projectOver = (scope, used, limit) }
        }
        if let (scope, used, limit) = projectOver {
            return job.tier == .spot ? .borrows : .blocked(scope, used: used, limit: limit)
        }
        return .fits
    }

    /// Why selling `need` more GPUs of the job's model in `site` would eat into the
    /// internal reserve, or nil. Only on-demand and reserved work is held back.
    /// `delay`: how much later than now the job may start (a preemption's notice).
    func protectionBlock(_ job: SchedulingSnapshot.PendingJob, site: Int, need: Int, delay: Int64 = 0) -> String? {
        // A reservation's own jobs use what was set aside for it when it was accepted.
        guard job.reservation == nil else { return nil }
        if job.tier != .spot, !snapshot.reservations.isEmpty,
            let why = reservationBlock(job, site: site, need: need, delay: delay)
        {
            return why
        }
        guard job.tier == .onDemand || job.tier == .reserved, let reserves = reserve[job.gpuModel] else { return nil }
        for key in [-1, site] {
            guard let held = reserves[key], held > 0 else { continue }
            let total = snapshot.prepared.capacityByModel[job.gpuModel]?[key] ?? 0
            let used = sold[job.gpuModel]?[key] ?? 0
            if used + need > total - held {
                let scope = key < 0 ? "the fleet" : "site \(snapshot.sites[key].name)"
                return
                    "capacity protection: \(held) \(job.gpuModel) held for internal demand in \(scope) (on-demand and reserved hold \(used) of \(total); needs \(need))"
            }
        }
        return nil
    }

    /// Why `need` more GPUs of non-spot work outside reservations, running from now until
    /// its time limit (or without end), would leave a reservation short at its start, or nil.
    func reservationBlock(_ job: SchedulingSnapshot.PendingJob, site: Int, need: Int, delay: Int64 = 0) -> String? {
        let until = job.maxDurationSeconds.map { time.adding(seconds: delay + $0) } ?? Timestamp(milliseconds: .max)
        for key in [-1, site] {
            var held = 0
            var first: Timestamp?
            for r in snapshot.reservations.values where r.gpuModel == job.gpuModel && r.holdFrom < until && time < r.end {
                guard key < 0 || r.site == key else { continue }
                held += r.gpus
                first = min(first ?? r.holdFrom, r.holdFrom)
            }
            guard held > 0, let first else { continue }
            let total = snapshot.prepared.capacityByModel[job.gpuModel]?[key] ?? 0
            let used = outside[job.gpuModel]?[key] ?? 0
            if used + need > total - held {
                let scope = key < 0 ? "the fleet" : "site \(snapshot.sites[key].name)"
                let when = first <= time ? "now" : "from \(first)"
                return
                    "reservations: \(held) \(job.gpuModel) reserved in \(scope) \(when), within this job's time limit (other non-spot work holds \(used) of \(total); needs \(need))"
            }
        }
        return nil
    }

    /// Sets the racks `job` may not use (those of blocks of whole racks it is not in,
    /// reserved during its time), or the only racks it may use (its own block's).
    mutating func fence(for job: SchedulingSnapshot.PendingJob) {
        allowedRacks = nil
        fenced = []
        guard !snapshot.prepared.nodesInRackBlocks.isEmpty else { return }
        if let id = job.reservation, let own = snapshot.reservations[id], !own.racks.isEmpty {
            allowedRacks = own.racks
            return
        }
        guard job.tier != .spot else { return }
        // The latest it could end: a preemption's notice, then its time limit.
        // (Work in a block ends with its block.)
        var until = job.maxDurationSeconds.map { time.adding(seconds: noticeSeconds + $0) }
        if let id = job.reservation, let own = snapshot.reservations[id] { until = min(until ?? own.end, own.end) }
        for r in snapshot.reservations.values where !r.racks.isEmpty && r.id != job.reservation {
            guard r.gpuModel == job.gpuModel, time < r.end, until.map({ r.holdFrom < $0 }) ?? true else { continue }
            for rack in r.racks { fenced.formUnion(snapshot.prepared.nodesInRackBlocks[rack] ?? []) }
        }
    }

    /// Forgets (or with `undo`, restores) the accounting of GPUs, CPU and memory held for `job`.
    mutating func unhold(_ held: [NodeAssignment], for job: SchedulingSnapshot.PendingJob, undo: Bool = false) {
        let sign = undo ? 1 : -1
        if !job.resources.isZero {
            for a in held {
                guard let i = index[a.node] else { continue }
                let taken = resourcesTaken[i, default: .zero]
                resourcesTaken[i] = undo ? taken + job.resources : taken - job.resources
            }
        }
        if let id = job.reservation {
            reservationUsed[id, default: 0] += sign * held.reduce(0) { $0 + $1.gpus.count }
        } else if job.tier != .spot, outside[job.gpuModel] != nil {
            for a in held {
                guard let i = index[a.node] else { continue }
                outside.add(sign * a.gpus.count, model: job.gpuModel, site: snapshot.nodes[i].site)
            }
        }
    }

    mutating func take(_ nodes: [(Int, [Int])], for job: SchedulingSnapshot.PendingJob) {
        if let milli = job.gpuShareMilli, let (i, gpus) = nodes.first, let g = gpus.first {
            let slot = ShareSlot(node: i, gpu: g)
            let free = shares[job.gpuModel]?[slot]?.freeMilli ?? 1000
            shares[job.gpuModel, default: [:]][slot] = SchedulingSnapshot.SharedGPU(
                gpu: g, org: job.org, tier: job.tier, freeMilli: free - milli)
            if free < 1000 {
                // A GPU already shared: only the job's own quota and resources are new.
                takeQuotaAndResources(nodes, for: job)
                return
            }
        }
        if let r = job.reservation {
            reservationUsed[r, default: 0] += nodes.reduce(0) { $0 + $1.1.count }
        } else if job.tier != .spot, snapshot.reservations.values.contains(where: { $0.gpuModel == job.gpuModel }) {
            for (i, gpus) in nodes {
                outside.add(gpus.count, model: job.gpuModel, site: snapshot.nodes[i].site)
            }
        }
        if job.tier == .onDemand || job.tier == .reserved, reserve[job.gpuModel] != nil {
            for (i, gpus) in nodes {
                sold.add(gpus.count, model: job.gpuModel, site: snapshot.nodes[i].site)
            }
        }
        takeQuotaAndResources(nodes, for: job)
        take(nodes)
    }

    mutating func takeQuotaAndResources(_ nodes: [(Int, [Int])], for job: SchedulingSnapshot.PendingJob) {
        if !snapshot.quotas.isEmpty {
            for (i, gpus) in nodes {
                for scope in QuotaScope.all(org: job.org, project: job.project, gpuModel: job.gpuModel, region: region(i))
                where snapshot.quotas[scope] != nil {
                    quotaUsed[scope, default: 0] += gpus.count
                }
            }
        }
        if !job.resources.isZero {
            for (i, _) in nodes { resourcesTaken[i] = resourcesTaken[i, default: .zero] + job.resources }
        }
    }

    /// Notes the GPU held for fraction `job`'s preemption (`target`: one node, one GPU)
    /// as room for its org's and tier's other fractions. Whole-GPU jobs hold nothing here.
    mutating func holdShare(for job: SchedulingSnapshot.PendingJob, _ target: [NodeAssignment]) {
        guard let milli = job.gpuShareMilli, target.count == 1, let g = target[0].gpus.first,
            let i = index[target[0].node]
        else { return }
        heldShares[snapshot.nodes[i].gpuModel, default: [:]][ShareSlot(node: i, gpu: g)] = HeldShare(
            job: job.id, org: job.org, tier: job.tier, freeMilli: 1000 - milli)
    }

    /// Fraction `job` was placed on its held GPU: the GPU is a share now (`shares`).
    mutating func releaseHeldShare(of job: JobID) {
        for (model, held) in heldShares {
            for (slot, h) in held where h.job == job { heldShares[model]![slot] = nil }
        }
    }

    /// For a fraction that does not fit: a GPU held for a fraction of its org and tier
    /// with room for it (the least room that fits, then the lowest node and GPU), which it
    /// then counts on; the wait's reason, or nil.
    mutating func shareHeld(for job: SchedulingSnapshot.PendingJob) -> String? {
        guard let milli = job.gpuShareMilli, !heldShares.isEmpty else { return nil }
        for choice in job.choices {
            var best: (room: Int, slot: ShareSlot)?
            for (slot, h) in heldShares[choice.gpuModel] ?? [:] {
                guard h.org == job.org, h.tier == job.tier, h.freeMilli >= milli else { continue }
                let room = h.freeMilli - milli
                if let b = best, (b.room, b.slot) <= (room, slot) { continue }
                guard locationAllows(snapshot.nodes[slot.node].site, choice), usable(slot.node, choice) else { continue }
                best = (room, slot)
            }
            guard let best else { continue }
            heldShares[choice.gpuModel]![best.slot]!.freeMilli -= milli
            let h = heldShares[choice.gpuModel]![best.slot]!
            return
                "preemption: waiting to share GPU \(best.slot.gpu) of \(snapshot.nodes[best.slot.node].id), held for \(h.job)'s preemption"
        }
        return nil
    }

    /// For a job on a fraction of a GPU: the GPU shared by its org and tier with the least
    /// room that still fits it (then the lowest node and GPU), or nil.
    func fitShare(_ job: SchedulingSnapshot.PendingJob, milli: Int) -> Choice? {
        var best: (room: Int, slot: ShareSlot)?
        for (slot, share) in shares[job.gpuModel] ?? [:] {
            guard share.org == job.org, share.tier == job.tier, share.freeMilli >= milli else { continue }
            let room = share.freeMilli - milli
            if let b = best, (b.room, b.slot) <= (room, slot) { continue }
            let node = snapshot.nodes[slot.node]
            guard node.schedulable, locationAllows(node.site, job), usable(slot.node, job) else { continue }
            if !snapshot.quotas.isEmpty, case .blocked = quota(job, region: region(slot.node), need: 1) { continue }
            best = (room, slot)
        }
        guard let best else { return nil }
        return Choice(
            nodes: [(best.slot.node, [best.slot.gpu])],
            reason:
                "shares GPU \(best.slot.gpu) of \(snapshot.nodes[best.slot.node].id) with \(job.org)'s \(job.tier.rawValue) work")
    }

    mutating func take(_ nodes: [(Int, [Int])]) {
        for (i, gpus) in nodes {
            let site = capacity.pool(ofNode: i).map { capacity.pools[$0].site } ?? snapshot.nodes[i].site
            if site < powerLeft.count { powerLeft[site] -= watts(i, gpus: gpus.count) }
            capacity.take(i, gpus)
        }
    }

    /// Where the job fits now, or why not.
    ///
    /// Constraints that hold per site (location, power, capacity protection, quota by
    /// region) are checked once per pool; per-node checks (labels, backfill holds) only
    /// when the job has them. Best fit for one node is the head of the first non-empty
    /// free-count bucket; a gang takes the smallest rack that fits, or one site.
    func fit(_ job: SchedulingSnapshot.PendingJob) -> Result<Choice, Failure> {
        // A fraction of a GPU: a GPU its org and tier already share, else a free one.
        if let milli = job.gpuShareMilli, let choice = fitShare(job, milli: milli) { return .success(choice) }
        let g = job.gpusPerNode
        let n = job.numNodes
        let need = g * n
        let model = job.gpuModel
        guard let pools = capacity.poolsByModel[model] else {
            return .failure(Failure(reasons: ["capacity: no \(model) nodes in the fleet"]))
        }
        let labels = job.placement.selectsLabels
        let asks = !job.resources.isZero
        // Node labels, CPU and memory, and a block's own racks need a scan to count;
        // backfill holds and racks fenced for blocks are few nodes, counted from their lists.
        let selector = labels || allowedRacks != nil || asks
        let filtered = selector || !blocked.isEmpty || !fenced.isEmpty
        var ofModel = 0
        var unschedulable = 0
        var outside = 0
        var unlabeled = 0
        var freeOfModel = 0
        var powerCapped = 0
        var cappedSites = Set<Int>()
        var quotaBlocked = 0
        var quotaReason: String?
        var protected = 0
        var protectionReason: String?
        var reservedForOther = 0
        var fencedNodes = 0
        var short = 0
        var verdicts: [String: QuotaVerdict] = [:]
        var open: [(pool: Int, fitting: Int)] = []
        var scanned = 0
        // Backfill holds, counted per pool and per slot (they are few), so that the
        // counts stay summaries rather than scans.
        var heldNodes: [Int: Int] = [:]
        var fencedInPool: [Int: Int] = [:]
        var heldFitting: [Int: Int] = [:]
        var heldFittingInSlot: [Int: Int] = [:]
        if !selector {
            for i in fenced.isEmpty ? blocked : blocked.union(fenced) {
                let s = Int(capacity.nodeSlot[i])
                guard s >= 0, snapshot.nodes[i].gpuModel == model else { continue }
                let p = capacity.slots[s].pool
                if blocked.contains(i) { heldNodes[p, default: 0] += 1 } else { fencedInPool[p, default: 0] += 1 }
                if Int(capacity.availableCount[i]) >= g {
                    heldFitting[p, default: 0] += 1
                    heldFittingInSlot[s, default: 0] += 1
                }
            }
        }
        for p in pools {
            let pool = capacity.pools[p]
            ofModel += pool.total
            guard locationAllows(pool.site, job) else {
                outside += pool.total
                continue
            }
            var fitting = 0
            if selector {
                for i in pool.allNodes {
                    scanned += 1
                    if scanned > Limits.maxNodesScannedPerJob { break }
                    if let allowedRacks, !allowedRacks.contains(snapshot.nodes[i].rack) { continue }
                    if labels, !job.placement.matches(snapshot.nodes[i].labels) {
                        unlabeled += 1
                        continue
                    }
                    guard snapshot.nodes[i].schedulable else {
                        unschedulable += 1
                        continue
                    }
                    if blocked.contains(i) {
                        reservedForOther += 1
                        continue
                    }
                    if fenced.contains(i) {
                        fencedNodes += 1
                        continue
                    }
                    let a = Int(capacity.availableCount[i])
                    freeOfModel += a
                    guard a >= g else { continue }
                    if asks, !resourcesFit(i, job) {
                        short += 1
                        continue
                    }
                    fitting += 1
                }
            } else {
                unschedulable += pool.unschedulable
                freeOfModel += pool.available
                reservedForOther += heldNodes[p] ?? 0
                fencedNodes += fencedInPool[p] ?? 0
                fitting = capacity.nodes(withAtLeast: g, in: p) - (heldFitting[p] ?? 0)
            }
            guard fitting > 0, let probe = pool.allNodes.first else { continue }
            if watts(probe, gpus: g) > powerLeft(probe) {
                powerCapped += fitting
                cappedSites.insert(pool.site)
                continue
            }
            if !reserve.isEmpty || !snapshot.reservations.isEmpty, let why = protectionBlock(job, site: pool.site, need: need) {
                protected += fitting
                protectionReason = protectionReason ?? why
                continue
            }
            if !snapshot.quotas.isEmpty {
                let r = region(site: pool.site)
                let verdict = verdicts[r] ?? quota(job, region: r, need: need)
                verdicts[r] = verdict
                if case .blocked(let scope, let used, let limit) = verdict {
                    quotaBlocked += fitting
                    quotaReason = quotaReason ?? "quota: \(scope) at \(used)/\(limit) (needs \(need))"
                    continue
                }
            }
            open.append((p, fitting))
        }
        var reasons: [String] = []
        if unschedulable > 0 {
            reasons.append("nodes: \(unschedulable) of \(ofModel) \(model) nodes are cordoned or down")
        }
        if outside > 0 {
            let allowed = (job.placement.regions.map { "region \($0)" } + job.placement.sites.map { "site \($0)" })
                .joined(separator: ", ")
            reasons.append("placement: \(outside) of \(ofModel) \(model) nodes are outside \(allowed)")
        }
        if unlabeled > 0 {
            let selector = job.placement.labelsDescription
            reasons.append("labels: \(unlabeled) of \(ofModel) \(model) nodes lack \(selector)")
        }
        if quotaBlocked > 0, let quotaReason { reasons.insert(quotaReason, at: 0) }
        if protected > 0, let protectionReason { reasons.insert(protectionReason, at: 0) }
        if short > 0 {
            reasons.append("resources: \(short) \(model) nodes with \(g) free GPUs lack \(job.resources) free")
        }
        if fencedNodes > 0 {
            reasons.append("reservations: \(fencedNodes) \(model) nodes are in racks reserved for a block during this job's time")
        }
        if reservedForOther > 0 {
            reasons.append(
                "backfill: \(reservedForOther) \(model) nodes are held for a job ahead of it that this one would delay")
        }
        if powerCapped > 0 {
            let names = cappedSites.sorted().map { site -> String in
                let s = snapshot.sites[site]
                return
                    "\(s.name) at \(DecimalText.format((s.budgetWatts - powerLeft[site]) / 1000, scale: 1000))/\(DecimalText.format(s.budgetWatts / 1000, scale: 1000)) MW"
            }
            reasons.append(
                "power: \(powerCapped) \(model) nodes with free GPUs are in sites at their power cap (\(names.joined(separator: ", ")))"
            )
        }
        let candidates = open.reduce(0) { $0 + $1.fitting }
        guard candidates >= n else {
            // When a quota holds the job back, that is the first reason; capacity follows.
            reasons.insert(
                "capacity: needs \(n) node(s) with \(g) free \(model); \(candidates) have that now (\(freeOfModel) \(model) free in all)",
                at: reasons.count > 0 && (quotaBlocked > 0 || protected > 0) ? 1 : 0)
            return .failure(Failure(reasons: reasons))
        }
        let check: SchedulingSnapshot.PendingJob? = filtered ? job : nil
        let heldInSlot = heldFittingInSlot
        // (No local functions or closures that read `self` here: each would copy the whole
        // round, every table of it retained, on each call of `fit`.)
        let slotCheck: SchedulingSnapshot.PendingJob? = selector ? job : nil
        if n == 1 {
            // Best fit: the fewest free GPUs that fit, in the most used rack.
            var largest = 0
            for (p, _) in open { largest = max(largest, capacity.pools[p].maxGPUs) }
            for f in g...max(g, largest) {
                var best: (key: UInt64, node: Int)?
                for (p, _) in open where f <= capacity.pools[p].maxGPUs {
                    var looked = 0
                    for key in capacity.pools[p].buckets[f] {
                        if let b = best, key >= b.key { break }
                        looked += 1
                        if looked > Limits.maxNodesScannedPerJob { break }
                        let s = CapacityIndex.slot(of: key)
                        if let i = firstNode(inSlot: s, withExactly: f, check: check) {
                            best = (key, i)
                            break
                        }
                    }
                }
                if let best {
                    return .success(
                        choice([best.node], g: g, for: job, "best fit: \(snapshot.nodes[best.node].id) has \(f) free \(model)"))
                }
            }
            return .failure(Failure(reasons: ["capacity: no node with \(g) free \(model) passed every check"]))
        }
        // Gangs: the smallest rack that fits, unless the job allows spanning racks.
        if job.topology != .site {
            var best: (q: Int, slot: Int)?
            search: for (p, _) in open {
                let pool = capacity.pools[p]
                guard n <= pool.maxSlotNodes, let probe = pool.allNodes.first,
                    Int64(n) * watts(probe, gpus: g) <= powerLeft(probe)
                else { continue }
                for s in pool.slots {
                    let q = fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot)
                    if q >= n, best == nil || q < best!.q {
                        best = (q, s)
                        if q == n { break search }
                    }
                }
            }
            if let best {
                return .success(
                    choice(
                        Array(packed(best.slot, g: g, check: check).prefix(n)), g: g, for: job,
                        "gang in one rack (rack #\(capacity.slots[best.slot].rack), \(best.q) nodes fit)"))
            }
            if job.topology == .rack {
                var most = 0
                for (p, _) in open {
                    for s in capacity.pools[p].slots {
                        most = max(most, fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot))
                    }
                }
                reasons.insert(
                    "topology: no rack with \(n) nodes with \(g) free \(model) (at most \(most) in one rack)", at: 0)
                return .failure(Failure(reasons: reasons))
            }
            // Then the smallest block (racks on one spine) that fits.
            var bestBlock: (q: Int, block: Int, pool: Int, slots: [Int])?
            var mostInBlock = 0
            blocks: for (p, _) in open {
                let pool = capacity.pools[p]
                guard let probe = pool.allNodes.first, Int64(n) * watts(probe, gpus: g) <= powerLeft(probe) else { continue }
                for (block, slots) in pool.blocks {
                    var q = 0
                    for s in slots { q += fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot) }
                    mostInBlock = max(mostInBlock, q)
                    if q >= n, bestBlock == nil || q < bestBlock!.q {
                        bestBlock = (q, block, p, slots)
                        // None can fit more tightly (and an earlier one would have been this tight).
                        if q == n { break blocks }
                    }
                }
            }
            if let b = bestBlock {
                var counts: [(slot: Int, q: Int)] = []
                for s in b.slots {
                    let q = fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot)
                    if q > 0 { counts.append((s, q)) }
                }
                let (picked, racks) = spread(
                    counts, n: n, g: g, check: check, maxPerSlot: capacity.pools[b.pool].maxSlotNodes)
                return .success(
                    choice(picked, g: g, for: job, "gang in one block (block #\(b.block), across \(racks) racks)"))
            }
            if job.topology == .block {
                reasons.insert(
                    "topology: no block with \(n) nodes with \(g) free \(model) (at most \(mostInBlock) in one block)", at: 0)
                return .failure(Failure(reasons: reasons))
            }
        }
        // Within one site (the one with the fewest nodes that fit), spanning as few racks as possible.
        var site: (fitting: Int, pool: Int)?
        for (p, fitting) in open where fitting >= n {
            guard let probe = capacity.pools[p].allNodes.first, Int64(n) * watts(probe, gpus: g) <= powerLeft(probe)
            else { continue }
            if site == nil || fitting < site!.fitting { site = (fitting, p) }
        }
        guard let site else {
            let most = open.map(\.fitting).max() ?? 0
            reasons.insert(
                "topology: no site with \(n) nodes with \(g) free \(model) (at most \(most) in one site)", at: 0)
            return .failure(Failure(reasons: reasons))
        }
        let pool = capacity.pools[site.pool]
        if g == pool.maxGPUs, check == nil, heldInSlot.isEmpty {
            // Whole nodes: the index lists the racks by how many whole nodes they have free,
            // each list in rack order, which is the order `spread` takes them in.
            var picked: [Int] = []
            picked.reserveCapacity(n)
            var inRack: [Int] = []
            var racks = 0
            levels: for level in stride(from: pool.maxSlotNodes, through: 1, by: -1) {
                for (w, word) in pool.whole[level].enumerated() where word != 0 {
                    var rest = word
                    while rest != 0 {
                        let s = pool.slots.lowerBound + w * 64 + rest.trailingZeroBitCount
                        rest &= rest - 1
                        racks += 1
                        packed(s, g: g, check: nil, into: &inRack)
                        for i in inRack {
                            picked.append(i)
                            if picked.count == n { break levels }
                        }
                    }
                }
            }
            return .success(choice(picked, g: g, for: job, "gang across \(racks) racks of one site"))
        }
        var counts: [(slot: Int, q: Int)] = []
        if g == pool.maxGPUs, check == nil {
            // Whole nodes: the slots that have one are exactly bucket g.
            for key in pool.buckets[g] {
                let s = CapacityIndex.slot(of: key)
                let q = fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot)
                if q > 0 { counts.append((s, q)) }
            }
            counts.sort { $0.slot < $1.slot }
        } else {
            for s in pool.slots {
                let q = fittingCount(inSlot: s, g: g, check: slotCheck, heldInSlot: heldInSlot)
                if q > 0 { counts.append((s, q)) }
            }
        }
        let (picked, racks) = spread(counts, n: n, g: g, check: check, maxPerSlot: pool.maxSlotNodes)
        return .success(choice(picked, g: g, for: job, "gang across \(racks) racks of one site"))
    }

    /// The placement of `job` on `nodes`: on each, the `g` lowest GPUs free for it.
    func choice(_ nodes: [Int], g: Int, for job: SchedulingSnapshot.PendingJob, _ reason: String) -> Choice {
        var placed: [(Int, [Int])] = []
        placed.reserveCapacity(nodes.count)
        for i in nodes { placed.append((i, capacity.available(i, for: job.id).lowest(g))) }
        return Choice(nodes: placed, reason: reason)
    }

    /// `n` nodes from the given slots, taking the slots with the most fitting nodes first
    /// (as few racks as possible), and within a slot the fullest nodes first.
    func spread(
        _ counts: [(slot: Int, q: Int)], n: Int, g: Int, check: SchedulingSnapshot.PendingJob?, maxPerSlot: Int
    ) -> (nodes: [Int], racks: Int) {
        var picked: [Int] = []
        picked.reserveCapacity(n)
        var inRack: [Int] = []
        var racks = 0
        for level in stride(from: maxPerSlot, through: 1, by: -1) {
            for (s, q) in counts where q == level {
                racks += 1
                packed(s, g: g, check: check, into: &inRack)
                for i in inRack {
                    picked.append(i)
                    if picked.count == n { return (picked, racks) }
                }
            }
        }
        return (picked, racks)
    }

    /// Whether node `i` passes the job's per-node checks: node labels and backfill holds.
    func usable(_ i: Int, _ job: SchedulingSnapshot.PendingJob) -> Bool {
        (!job.placement.selectsLabels || job.placement.matches(snapshot.nodes[i].labels)) && !blocked.contains(i)
            && !fenced.contains(i) && (allowedRacks?.contains(snapshot.nodes[i].rack) ?? true) && resourcesFit(i, job)
    }

    /// Nodes of slot `s` that can take `g` GPUs (and pass `check`'s per-node checks),
    /// fewest available first, then in inventory order.
    func packed(_ s: Int, g: Int, check: SchedulingSnapshot.PendingJob?) -> [Int] {
        var out: [Int] = []
        packed(s, g: g, check: check, into: &out)
        return out
    }

    /// `packed`, written into `out` (emptied first): a gang across racks reuses one list
    /// for all of them.
    func packed(_ s: Int, g: Int, check: SchedulingSnapshot.PendingJob?, into out: inout [Int]) {
        out.removeAll(keepingCapacity: true)
        for i in capacity.slots[s].nodes {
            let a = capacity.availableCount[i]
            guard Int(a) >= g else { continue }
            if let check, !usable(i, check) { continue }
            out.append(i)
            var k = out.count - 1
            while k > 0, capacity.availableCount[out[k - 1]] > a {
                out[k] = out[k - 1]
                k -= 1
            }
            out[k] = i
        }
    }

    func firstNode(inSlot s: Int, withExactly f: Int, check: SchedulingSnapshot.PendingJob?) -> Int? {
        for i in capacity.slots[s].nodes where Int(capacity.availableCount[i]) == f {
            if let check, !usable(i, check) { continue }
            return i
        }
        return nil
    }

    /// Nodes of slot `s` with `g` available GPUs; with a node selector, counted one by one.
    func fittingCount(inSlot s: Int, g: Int, check: SchedulingSnapshot.PendingJob?, heldInSlot: [Int: Int]) -> Int {
        if let check { return packed(s, g: g, check: check).count }
        let q = capacity.nodes(withAtLeast: g, inSlot: s)
        return heldInSlot.isEmpty || q == 0 ? q : q - (heldInSlot[s] ?? 0)
    }

    /// Of running jobs `jobs`, the one started last (ties: the larger ID).
    func latest(_ jobs: [Int]) -> Int {
        jobs.max { a, b in
            let ra = snapshot.table[a]
            let rb = snapshot.table[b]
            return ra.startedAt != rb.startedAt ? ra.startedAt < rb.startedAt : ra.id < rb.id
        }!
    }

    /// The fewest, most recently started spot jobs whose GPUs make the job fit, or nil.
    mutating func preempt(for job: SchedulingSnapshot.PendingJob, noticeSeconds: Int64) -> Preemption? {
        let g = job.gpusPerNode
        guard let pools = capacity.poolsByModel[job.gpuModel] else { return nil }
        // Preempting for GPUs never helps a job its location, quota or the internal reserve holds back.
        var eligible = Set<Int>()
        eligible.reserveCapacity(pools.count)
        for p in pools {
            let site = capacity.pools[p].site
            guard locationAllows(site, job) else { continue }
            if case .blocked = quota(job, region: region(site: site), need: g * job.numNodes) { continue }
            if protectionBlock(job, site: site, need: g * job.numNodes, delay: noticeSeconds) != nil { continue }
            eligible.insert(p)
        }
        // Within a round GPUs only get scarcer and victims only get taken: a search that
        // found nothing finds nothing again for a job of the same shape, in the same pools,
        // with no per-node constraint and no GPUs held for it. On a full cloud most queued
        // jobs are a few shapes, and each would otherwise scan the nodes again.
        let shape: SearchShape? =
            !job.placement.selectsLabels && fenced.isEmpty && allowedRacks == nil && job.resources.isZero
                && job.nominated == nil
            ? SearchShape(model: job.gpuModel, gpus: g, nodes: job.numNodes, topology: job.topology, pools: eligible.sorted())
            : nil
        if let shape, fruitless.contains(shape) { return nil }
        let found = findVictims(for: job, noticeSeconds: noticeSeconds, eligible: eligible, pools: pools)
        if found == nil, let shape { fruitless.insert(shape) }
        return found
    }

    /// `preempt` once the pools it may use are known.
    private mutating func findVictims(
        for job: SchedulingSnapshot.PendingJob, noticeSeconds: Int64, eligible: Set<Int>, pools: [Int]
    ) -> Preemption? {
        let g = job.gpusPerNode
        let selector = job.placement.selectsLabels
        func nodeOK(_ i: Int) -> Bool {
            guard let p = capacity.pool(ofNode: i), eligible.contains(p) else { return false }
            if !fenced.isEmpty, fenced.contains(i) { return false }
            if let allowedRacks, !allowedRacks.contains(snapshot.nodes[i].rack) { return false }
            return !selector || job.placement.matches(snapshot.nodes[i].labels)
        }
        /// Free GPUs plus the victims' GPUs, less GPUs held for someone else.
        func pool(_ i: Int, adding gpus: [Int]) -> [Int] {
            let others = capacity.held[i] ?? [:]
            return available(i, for: job.id) + gpus.filter { others[$0] == nil || others[$0] == job.id }
        }
        struct Option {
            let i: Int
            let victims: [Int]
            let target: [Int]
        }
        var chosen: [Option] = []
        var scanned = 0
        if job.numNodes == 1 {
            // One victim is the fewest: the most recently started spot job whose GPUs are enough alone.
            let spot = snapshot.table.spotByRecency[job.gpuModel] ?? []
            // Within a round GPUs only get scarcer, so a spot job that was taken, or whose
            // GPUs were not enough for `g`, stays so: unconstrained jobs resume after them.
            let unconstrained = !selector && eligible.count == pools.count && fenced.isEmpty && allowedRacks == nil
            let key = SpotCursor(model: job.gpuModel, gpus: g)
            var k = unconstrained ? spotCursor[key] ?? 0 : 0
            while k < spot.count {
                let j = spot[k]
                k += 1
                if !victimTaken.contains(j) {
                    scanned += 1
                    if scanned > Limits.maxNodesScannedPerJob { break }
                    var best: Option?
                    for a in snapshot.table.placedOn[j] {
                        let i = a.node
                        guard nodeOK(i), best == nil || i < best!.i else { continue }
                        let room = pool(i, adding: a.gpus)
                        if room.count >= g, resourcesFit(i, job, adding: snapshot.table[j].resources) {
                            best = Option(i: i, victims: [j], target: Array(room.sorted().prefix(g)))
                        }
                    }
                    if let best {
                        chosen = [best]
                        break
                    }
                }
                if unconstrained { spotCursor[key] = k }
            }
        }
        if chosen.isEmpty {
            var options: [Option] = []
            scanned = 0
            for p in pools where eligible.contains(p) {
                for i in capacity.pools[p].nodes {
                    scanned += 1
                    if scanned > Limits.maxNodesScannedPerJob { break }
                    if !nodeOK(i) { continue }
                    var room = available(i, for: job.id)
                    var victims: [Int] = []
                    var released = NodeResources.zero
                    if room.count < g || !resourcesFit(i, job) {
                        let others = capacity.held[i] ?? [:]
                        // Most recently started first (a shared GPU by its latest sharer).
                        if preemptibleOn[i] == nil { preemptibleOn[i] = snapshot.table.preemptible(on: i) }
                        let candidates = preemptibleOn[i]!
                            .filter { !$0.jobs.contains(where: victimTaken.contains) }
                            .map { (c: $0, latest: snapshot.table[latest($0.jobs)]) }
                            .sorted { a, b in
                                a.latest.startedAt != b.latest.startedAt
                                    ? a.latest.startedAt > b.latest.startedAt : a.latest.id > b.latest.id
                            }
                            .map(\.c)
                        for c in candidates where room.count < g || !resourcesFit(i, job, adding: released) {
                            victims += c.jobs
                            room += c.gpus.filter { others[$0] == nil || others[$0] == job.id }
                            for v in c.jobs { released = released + snapshot.table[v].resources }
                        }
                    }
                    if room.count >= g, resourcesFit(i, job, adding: released) {
                        options.append(Option(i: i, victims: victims, target: Array(room.sorted().prefix(g))))
                    }
                }
            }
            func cheaper(_ a: Option, _ b: Option) -> Bool {
                if a.victims.count != b.victims.count { return a.victims.count < b.victims.count }
                let la = a.victims.map { snapshot.table[$0].startedAt }.max() ?? .zero
                let lb = b.victims.map { snapshot.table[$0].startedAt }.max() ?? .zero
                return la != lb ? la > lb : a.i < b.i
            }
            if job.numNodes == 1 {
                guard let best = options.filter({ !$0.victims.isEmpty }).min(by: cheaper) else { return nil }
                chosen = [best]
            } else {
                // Group by the domain the gang must live in; pick the group with the fewest victims.
                var groups: [Int: [Option]] = [:]
                for o in options {
                    let node = snapshot.nodes[o.i]
                    let key =
                        switch job.topology {
                        case .rack: node.rack
                        case .block: node.block >= 0 ? node.block : -2 - node.rack
                        default: node.site
                        }
                    groups[key, default: []].append(o)
                }
                var best: (victims: Set<Int>, nodes: [Option], key: Int)?
                for (key, group) in groups where group.count >= job.numNodes {
                    let nodes = Array(group.sorted(by: cheaper).prefix(job.numNodes))
                    let victims = Set(nodes.flatMap(\.victims))
                    if victims.isEmpty { continue }
                    if best == nil || victims.count < best!.victims.count
                        || (victims.count == best!.victims.count && key < best!.key)
                    {
                        best = (victims, nodes, key)
                    }
                }
                guard let best else { return nil }
                chosen = best.nodes
            }
        }
        var victimIDs: [Int] = []
        for o in chosen { for v in o.victims where !victimIDs.contains(v) { victimIDs.append(v) } }
        for v in victimIDs { victimTaken.insert(v) }
        for o in chosen { capacity.hold(o.i, o.target, for: job.id) }
        let ids = victimIDs.map { snapshot.table[$0].id }
        return Preemption(
            job: job.id, victims: ids,
            target: chosen.map { NodeAssignment(node: snapshot.nodes[$0.i].id, gpus: $0.target) },
            noticeSeconds: noticeSeconds,
            reason:
                "\(job.tier.rawValue) job needs \(job.numNodes)x\(g) \(job.gpuModel): preempting spot \(ids.map(\.rawValue).joined(separator: ", "))"
        )
    }

    /// Org quota taken by other projects' borrowed spot work: stop the most recently
    /// started borrowers until the job fits under the org's quota again. Only jobs within
    /// their own project's quota reclaim. The freed GPUs are not held for the job: quota
    /// is what it lacked, and it competes for GPUs as usual.
    mutating func reclaim(for job: SchedulingSnapshot.PendingJob, noticeSeconds: Int64) -> Preemption? {
        let need = job.gpusPerNode * job.numNodes
        // The job's own project must have room (else it is not borrowed quota it lacks).
        for scope in QuotaScope.all(org: job.org, project: job.project, gpuModel: job.gpuModel, region: "")
        where scope.project != nil && scope.region == nil {
            if let limit = snapshot.quotas[scope], (quotaUsed[scope] ?? 0) + need > limit { return nil }
        }
        // How far over the org's rules the job would be (model-wide and total).
        var over = 0
        for scope in [QuotaScope(org: job.org), QuotaScope(org: job.org, gpuModel: job.gpuModel)] {
            if let limit = snapshot.quotas[scope] { over = max(over, (quotaUsed[scope] ?? 0) + need - limit) }
        }
        guard over > 0 else { return nil }
        // Borrowers: spot jobs of other projects of the org whose project is over its quota.
        func borrowing(_ r: SchedulingSnapshot.RunningJob) -> Bool {
            let scope = QuotaScope(org: r.org, project: r.project)
            let model = QuotaScope(org: r.org, project: r.project, gpuModel: job.gpuModel)
            return [scope, model].contains { s in snapshot.quotas[s].map { (quotaUsed[s] ?? 0) > $0 } ?? false }
        }
        let candidates = snapshot.table.occupied.map { (offset: $0, element: snapshot.table[$0]) }
            .filter { j, r in
                !victimTaken.contains(j) && r.tier == .spot && !r.stopping && r.org == job.org && r.project != job.project
                    && borrowing(r)
            }
            .sorted { a, b in RunningTable.recent(a.element, before: b.element) }
        var freed = 0
        var victims: [Int] = []
        for (index, r) in candidates where freed < over {
            victims.append(index)
            freed += r.allocations.reduce(0) { $0 + $1.gpus.count }
        }
        guard freed >= over else { return nil }
        for v in victims { victimTaken.insert(v) }
        let ids = victims.map { snapshot.table[$0].id }
        return Preemption(
            job: job.id, victims: ids, target: [], noticeSeconds: noticeSeconds,
            reason: "quota: reclaiming \(freed) GPUs of org \(job.org) borrowed by \(ids.map(\.rawValue).joined(separator: ", "))"
        )
    }
}
