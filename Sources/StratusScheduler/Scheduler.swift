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

    public init(
        preemptionNoticeSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds, fairShare: FairShare = FairShare()
    ) {
        self.preemptionNoticeSeconds = preemptionNoticeSeconds
        self.fairShare = fairShare
    }

    public func plan(_ snapshot: SchedulingSnapshot, now: Timestamp) -> Plan {
        var round = Round(snapshot, now: now)
        var plan = Plan()
        // Tier first; within a tier the org with the lowest fair-share score; then FIFO.
        let rank = Dictionary(
            uniqueKeysWithValues: fairShare.standings(snapshot, now: now).enumerated().map { ($1.org, $0) })
        let ordered = snapshot.pending.enumerated()
            .sorted { a, b in
                if a.element.tier.rank != b.element.tier.rank { return a.element.tier.rank < b.element.tier.rank }
                let ra = rank[a.element.org] ?? Int.max
                let rb = rank[b.element.org] ?? Int.max
                return ra != rb ? ra < rb : a.offset < b.offset
            }
            .prefix(Limits.maxJobsPerPlan)
            .map(\.element)

        // EASY backfill: the first job that cannot start gets a reservation at its earliest
        // start; jobs behind it may take those nodes only if they end before it starts.
        var reservation: (job: JobID, at: Timestamp, nodes: Set<Int>)?
        for job in ordered {
            if let r = reservation {
                let endsInTime = job.maxDurationSeconds.map { now.adding(seconds: $0) <= r.at } ?? false
                round.blocked = endsInTime ? [] : r.nodes
            }
            if let nominated = job.nominated {
                // The choice whose GPU model the held nodes have.
                let heldModel = nominated.first.flatMap { round.index[$0.node] }.map { snapshot.nodes[$0].gpuModel }
                let job = job.choices.first { $0.gpuModel == heldModel } ?? job
                if round.allFree(nominated), round.powerAllows(nominated), case .none = round.quotaBlock(job, nominated),
                    round.protectionBlock(job, nominated) == nil
                {
                    round.take(nominated.map { (round.index[$0.node]!, $0.gpus) }, for: job)
                    plan.placements.append(Placement(job: job.id, nodes: nominated, reason: "on the GPUs its preemption freed"))
                } else if let blocked = round.quotaBlock(job, nominated) {
                    plan.waits.append(Wait(job: job.id, reasons: [blocked]))
                } else {
                    let nodes = nominated.map(\.node.rawValue).joined(separator: ", ")
                    plan.waits.append(Wait(job: job.id, reasons: ["preemption: waiting for preempted work to stop on \(nodes)"]))
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
            if why.reasons.first?.hasPrefix("quota: org") == true,
                let p = round.reclaim(for: job, noticeSeconds: preemptionNoticeSeconds)
            {
                plan.preemptions.append(p)
                plan.waits.append(Wait(job: job.id, reasons: [why.reasons[0], p.reason]))
                continue
            }
            // Preemption mutates the round (victims taken, GPUs held): try it only here.
            var preemption: Preemption?
            if job.tier.rank < Tier.spot.rank {
                for choice in job.choices where preemption == nil {
                    preemption = round.preempt(for: choice, noticeSeconds: preemptionNoticeSeconds)
                }
            }
            if let p = preemption {
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
            if reservation == nil, let estimate = Self.earliestStart(job, from: round, now: now) {
                let nodes = Set(estimate.nodes.compactMap { round.index[$0.node] })
                reservation = (job.id, estimate.at, nodes)
                reasons.append("backfill: holds \(nodes.count) node(s) to start by \(estimate.at)")
            }
            plan.waits.append(Wait(job: job.id, reasons: reasons))
        }
        return plan
    }
}

/// The scheduler's working view during one round: free GPUs change as it places work.
struct Round {
    let snapshot: SchedulingSnapshot
    let index: [NodeID: Int]
    /// Free GPU indices per node (ascending).
    var free: [[Int]]
    /// GPUs held for a job whose preemption is under way: node -> gpu -> job.
    var nominated: [[Int: JobID]]
    /// Free GPUs per rack, for packing.
    var rackFree: [Int: Int]
    /// Spot work that may still be preempted: node -> [(job, GPUs on that node)].
    var preemptible: [[(job: Int, gpus: [Int])]]
    var victimTaken: Set<Int> = []
    /// Nodes held for the backfill reservation: jobs that would not end in time skip them.
    var blocked: Set<Int> = []
    /// Watts each site may still draw.
    var powerLeft: [Int64]
    /// GPUs held per quota scope (only scopes with a rule).
    var quotaUsed: [QuotaScope: Int]
    /// Capacity protection: reserves in force now, and GPUs of each model (fleet-wide, key
    /// site -1, and per site) that exist and that on-demand and reserved work holds.
    var reserve: [String: [Int: Int]] = [:]
    var capacity: [String: [Int: Int]] = [:]
    var sold: [String: [Int: Int]] = [:]

    struct Failure: Error {
        let reasons: [String]
    }
    struct Choice {
        let nodes: [(Int, [Int])]
        let reason: String
    }

    init(_ s: SchedulingSnapshot, now: Timestamp = .zero) {
        snapshot = s
        var index: [NodeID: Int] = [:]
        index.reserveCapacity(s.nodes.count)
        for (i, n) in s.nodes.enumerated() { index[n.id] = i }
        self.index = index
        free = s.nodes.map(\.freeGPUs)
        nominated = Array(repeating: [:], count: s.nodes.count)
        for job in s.pending {
            for a in job.nominated ?? [] {
                guard let i = index[a.node] else { continue }
                for g in a.gpus { nominated[i][g] = job.id }
            }
        }
        var rackFree: [Int: Int] = [:]
        for (i, n) in s.nodes.enumerated() where n.schedulable { rackFree[n.rack, default: 0] += free[i].count }
        self.rackFree = rackFree
        powerLeft = s.sites.map { $0.budgetWatts - $0.usedWatts }
        quotaUsed = s.quotaUsed
        if !s.reserves.isEmpty {
            let siteIndex = Dictionary(uniqueKeysWithValues: s.sites.enumerated().map { ($1.name, $0) })
            for r in s.reserves {
                let key = r.site.flatMap { siteIndex[$0] } ?? -1
                if r.site == nil || key >= 0 { reserve[r.gpuModel, default: [:]][key] = r.gpus(at: now) }
            }
            for n in s.nodes where reserve[n.gpuModel] != nil {
                capacity[n.gpuModel, default: [:]][-1, default: 0] += n.gpuCount
                capacity[n.gpuModel, default: [:]][n.site, default: 0] += n.gpuCount
            }
            for r in s.running where r.tier == .onDemand || r.tier == .reserved {
                for a in r.allocations {
                    guard let i = index[a.node] else { continue }
                    let n = s.nodes[i]
                    guard reserve[n.gpuModel] != nil else { continue }
                    sold[n.gpuModel, default: [:]][-1, default: 0] += a.gpus.count
                    sold[n.gpuModel, default: [:]][n.site, default: 0] += a.gpus.count
                }
            }
        }
        preemptible = Array(repeating: [], count: s.nodes.count)
        for (j, r) in s.running.enumerated() where r.tier == .spot && !r.stopping {
            for a in r.allocations {
                if let i = index[a.node] { preemptible[i].append((j, a.gpus)) }
            }
        }
    }

    /// GPUs of node `i` that `job` may take now: free and not held for another job.
    func available(_ i: Int, for job: JobID) -> [Int] {
        let held = nominated[i]
        if held.isEmpty { return free[i] }
        return free[i].filter { held[$0] == nil || held[$0] == job }
    }

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
        guard !reserve.isEmpty, let first = assignments.first, let i = index[first.node] else { return nil }
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
            return a.gpus.allSatisfy { free[i].contains($0) }
        }
    }

    /// Watts `gpus` GPUs of node `i` draw at the wall (GPU power x PUE).
    func watts(_ i: Int, gpus: Int) -> Int64 {
        let node = snapshot.nodes[i]
        guard node.site < snapshot.sites.count else { return 0 }
        let perGPU = Int64(GPUCatalog.model(named: node.gpuModel)?.powerWatts ?? 0)
        return Int64(gpus) * perGPU * snapshot.sites[node.site].pueMilli / 1000
    }

    func powerLeft(_ i: Int) -> Int64 {
        let site = snapshot.nodes[i].site
        return site < powerLeft.count ? powerLeft[site] : .max
    }

    /// Whether the job's location and label constraints allow node `i`.
    func allowed(_ i: Int, _ job: SchedulingSnapshot.PendingJob) -> (location: Bool, labels: Bool) {
        let node = snapshot.nodes[i]
        var location = true
        if node.site < snapshot.sites.count {
            let site = snapshot.sites[node.site]
            location = job.placement.allows(region: site.region, site: site.name)
        }
        return (location, job.placement.matches(node.labels))
    }

    func region(_ i: Int) -> String {
        let site = snapshot.nodes[i].site
        return site < snapshot.sites.count ? snapshot.sites[site].region : ""
    }

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
    func protectionBlock(_ job: SchedulingSnapshot.PendingJob, site: Int, need: Int) -> String? {
        guard job.tier == .onDemand || job.tier == .reserved, let reserves = reserve[job.gpuModel] else { return nil }
        for key in [-1, site] {
            guard let held = reserves[key], held > 0 else { continue }
            let total = capacity[job.gpuModel]?[key] ?? 0
            let used = sold[job.gpuModel]?[key] ?? 0
            if used + need > total - held {
                let scope = key < 0 ? "the fleet" : "site \(snapshot.sites[key].name)"
                return
                    "capacity protection: \(held) \(job.gpuModel) held for internal demand in \(scope) (on-demand and reserved hold \(used) of \(total); needs \(need))"
            }
        }
        return nil
    }

    mutating func take(_ nodes: [(Int, [Int])], for job: SchedulingSnapshot.PendingJob) {
        if job.tier == .onDemand || job.tier == .reserved, reserve[job.gpuModel] != nil {
            for (i, gpus) in nodes {
                sold[job.gpuModel, default: [:]][-1, default: 0] += gpus.count
                sold[job.gpuModel, default: [:]][snapshot.nodes[i].site, default: 0] += gpus.count
            }
        }
        if !snapshot.quotas.isEmpty {
            for (i, gpus) in nodes {
                for scope in QuotaScope.all(org: job.org, project: job.project, gpuModel: job.gpuModel, region: region(i))
                where snapshot.quotas[scope] != nil {
                    quotaUsed[scope, default: 0] += gpus.count
                }
            }
        }
        take(nodes)
    }

    mutating func take(_ nodes: [(Int, [Int])]) {
        for (i, gpus) in nodes {
            let site = snapshot.nodes[i].site
            if site < powerLeft.count { powerLeft[site] -= watts(i, gpus: gpus.count) }
            free[i].removeAll { gpus.contains($0) }
            for g in gpus { nominated[i][g] = nil }
            rackFree[snapshot.nodes[i].rack, default: 0] -= gpus.count
        }
    }

    /// Where the job fits now, or why not.
    func fit(_ job: SchedulingSnapshot.PendingJob) -> Result<Choice, Failure> {
        let g = job.gpusPerNode
        var candidates: [(i: Int, avail: [Int])] = []
        var ofModel = 0
        var unschedulable = 0
        var freeOfModel = 0
        var scanned = 0
        var outside = 0
        var unlabeled = 0
        var powerCapped = 0
        var cappedSites = Set<Int>()
        var quotaBlocked = 0
        var quotaReason: String?
        var protected = 0
        var protectionReason: String?
        var reservedForOther = 0
        var verdicts: [String: QuotaVerdict] = [:]
        let need = g * job.numNodes
        for (i, node) in snapshot.nodes.enumerated() where node.gpuModel == job.gpuModel {
            scanned += 1
            if scanned > Limits.maxNodesScannedPerJob { break }
            ofModel += 1
            if !job.placement.isAnywhere {
                let ok = allowed(i, job)
                guard ok.location else {
                    outside += 1
                    continue
                }
                guard ok.labels else {
                    unlabeled += 1
                    continue
                }
            }
            guard node.schedulable else {
                unschedulable += 1
                continue
            }
            if !blocked.isEmpty, blocked.contains(i) {
                reservedForOther += 1
                continue
            }
            let avail = available(i, for: job.id)
            guard avail.count >= g else {
                freeOfModel += avail.count
                continue
            }
            guard watts(i, gpus: g) <= powerLeft(i) else {
                powerCapped += 1
                cappedSites.insert(node.site)
                continue
            }
            if !reserve.isEmpty, let why = protectionBlock(job, site: node.site, need: need) {
                protected += 1
                protectionReason = protectionReason ?? why
                continue
            }
            if !snapshot.quotas.isEmpty {
                let r = region(i)
                let verdict = verdicts[r] ?? quota(job, region: r, need: need)
                verdicts[r] = verdict
                if case .blocked(let scope, let used, let limit) = verdict {
                    quotaBlocked += 1
                    quotaReason = quotaReason ?? "quota: \(scope) at \(used)/\(limit) (needs \(need))"
                    continue
                }
            }
            freeOfModel += avail.count
            candidates.append((i, avail))
        }
        func byPacking(_ a: (i: Int, avail: [Int]), _ b: (i: Int, avail: [Int])) -> Bool {
            if a.avail.count != b.avail.count { return a.avail.count < b.avail.count }
            let ra = rackFree[snapshot.nodes[a.i].rack] ?? 0
            let rb = rackFree[snapshot.nodes[b.i].rack] ?? 0
            return ra != rb ? ra < rb : a.i < b.i
        }
        func chosen(_ list: [(i: Int, avail: [Int])], _ reason: String) -> Choice {
            Choice(nodes: list.map { ($0.i, Array($0.avail.prefix(g))) }, reason: reason)
        }
        var reasons: [String] = []
        if ofModel == 0 { return .failure(Failure(reasons: ["capacity: no \(job.gpuModel) nodes in the fleet"])) }
        if unschedulable > 0 {
            reasons.append("nodes: \(unschedulable) of \(ofModel) \(job.gpuModel) nodes are cordoned or down")
        }
        if outside > 0 {
            let allowed = (job.placement.regions.map { "region \($0)" } + job.placement.sites.map { "site \($0)" })
                .joined(separator: ", ")
            reasons.append("placement: \(outside) of \(ofModel) \(job.gpuModel) nodes are outside \(allowed)")
        }
        if unlabeled > 0 {
            let selector = job.placement.nodeSelector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                .joined(separator: ",")
            reasons.append("labels: \(unlabeled) of \(ofModel) \(job.gpuModel) nodes lack \(selector)")
        }
        if quotaBlocked > 0, let quotaReason { reasons.insert(quotaReason, at: 0) }
        if protected > 0, let protectionReason { reasons.insert(protectionReason, at: 0) }
        if reservedForOther > 0 {
            reasons.append(
                "backfill: \(reservedForOther) \(job.gpuModel) nodes are held for a job ahead of it that this one would delay")
        }
        if powerCapped > 0 {
            let names = cappedSites.sorted().map { site -> String in
                let s = snapshot.sites[site]
                return
                    "\(s.name) at \(DecimalText.format((s.budgetWatts - powerLeft[site]) / 1000, scale: 1000))/\(DecimalText.format(s.budgetWatts / 1000, scale: 1000)) MW"
            }
            reasons.append(
                "power: \(powerCapped) \(job.gpuModel) nodes with free GPUs are in sites at their power cap (\(names.joined(separator: ", ")))"
            )
        }
        guard candidates.count >= job.numNodes else {
            // When a quota holds the job back, that is the first reason; capacity follows.
            reasons.insert(
                "capacity: needs \(job.numNodes) node(s) with \(g) free \(job.gpuModel); \(candidates.count) have that now (\(freeOfModel) \(job.gpuModel) free in all)",
                at: reasons.count > 0 && (quotaBlocked > 0 || protected > 0) ? 1 : 0)
            return .failure(Failure(reasons: reasons))
        }
        if job.numNodes == 1 {
            let best = candidates.min(by: byPacking)!
            return .success(chosen([best], "best fit: \(snapshot.nodes[best.i].id) has \(best.avail.count) free \(job.gpuModel)"))
        }
        // Gangs: the smallest rack that fits, unless the job allows spanning racks.
        if job.topology != .site {
            var byRack: [Int: [(i: Int, avail: [Int])]] = [:]
            for c in candidates { byRack[snapshot.nodes[c.i].rack, default: []].append(c) }
            let fitting = byRack.filter { rack in
                let site = snapshot.nodes[rack.value[0].i].site
                return rack.value.count >= job.numNodes
                    && (site >= powerLeft.count || Int64(job.numNodes) * watts(rack.value[0].i, gpus: g) <= powerLeft[site])
            }
            if let (rack, nodes) = fitting.min(by: { a, b in
                a.value.count != b.value.count ? a.value.count < b.value.count : a.key < b.key
            }) {
                let picked = Array(nodes.sorted(by: byPacking).prefix(job.numNodes))
                return .success(chosen(picked, "gang in one rack (rack #\(rack), \(nodes.count) nodes fit)"))
            }
            if job.topology == .rack {
                let most = byRack.values.map(\.count).max() ?? 0
                reasons.insert(
                    "topology: no rack with \(job.numNodes) nodes with \(g) free \(job.gpuModel) (at most \(most) in one rack)",
                    at: 0)
                return .failure(Failure(reasons: reasons))
            }
        }
        // Within one site, spanning as few racks as possible.
        var bySite: [Int: [(i: Int, avail: [Int])]] = [:]
        for c in candidates { bySite[snapshot.nodes[c.i].site, default: []].append(c) }
        guard
            let (_, nodes) = bySite.filter({ site in
                site.value.count >= job.numNodes
                    && (site.key >= powerLeft.count
                        || Int64(job.numNodes) * watts(site.value[0].i, gpus: g) <= powerLeft[site.key])
            }).min(by: { a, b in
                a.value.count != b.value.count ? a.value.count < b.value.count : a.key < b.key
            })
        else {
            let most = bySite.values.map(\.count).max() ?? 0
            reasons.insert(
                "topology: no site with \(job.numNodes) nodes with \(g) free \(job.gpuModel) (at most \(most) in one site)", at: 0
            )
            return .failure(Failure(reasons: reasons))
        }
        var byRack: [Int: [(i: Int, avail: [Int])]] = [:]
        for c in nodes { byRack[snapshot.nodes[c.i].rack, default: []].append(c) }
        var picked: [(i: Int, avail: [Int])] = []
        for (_, rackNodes) in byRack.sorted(by: { a, b in
            a.value.count != b.value.count ? a.value.count > b.value.count : a.key < b.key
        }) {
            for c in rackNodes.sorted(by: byPacking) where picked.count < job.numNodes { picked.append(c) }
        }
        return .success(chosen(picked, "gang across \(Set(picked.map { snapshot.nodes[$0.i].rack }).count) racks of one site"))
    }

    /// The fewest, most recently started spot jobs whose GPUs make the job fit, or nil.
    mutating func preempt(for job: SchedulingSnapshot.PendingJob, noticeSeconds: Int64) -> Preemption? {
        let g = job.gpusPerNode
        struct Option {
            let i: Int
            let victims: [Int]
            let target: [Int]
        }
        var options: [Option] = []
        for (i, node) in snapshot.nodes.enumerated() where node.gpuModel == job.gpuModel && node.schedulable {
            if !job.placement.isAnywhere {
                let ok = allowed(i, job)
                guard ok.location, ok.labels else { continue }
            }
            // Preempting for GPUs never helps a job its quota or the internal reserve holds back.
            if case .blocked = quota(job, region: region(i), need: g * job.numNodes) { continue }
            if protectionBlock(job, site: node.site, need: g * job.numNodes) != nil { continue }
            let avail = available(i, for: job.id)
            var pool = avail
            var victims: [Int] = []
            if pool.count < g {
                let candidates = preemptible[i].filter { !victimTaken.contains($0.job) }
                    .sorted { a, b in
                        let ra = snapshot.running[a.job]
                        let rb = snapshot.running[b.job]
                        return ra.startedAt != rb.startedAt ? ra.startedAt > rb.startedAt : ra.id > rb.id
                    }
                for c in candidates where pool.count < g {
                    victims.append(c.job)
                    // GPUs that were nominated to someone else stay theirs.
                    pool += c.gpus.filter { nominated[i][$0] == nil || nominated[i][$0] == job.id }
                }
            }
            if pool.count >= g { options.append(Option(i: i, victims: victims, target: Array(pool.sorted().prefix(g)))) }
        }
        func cheaper(_ a: Option, _ b: Option) -> Bool {
            if a.victims.count != b.victims.count { return a.victims.count < b.victims.count }
            let la = a.victims.map { snapshot.running[$0].startedAt }.max() ?? .zero
            let lb = b.victims.map { snapshot.running[$0].startedAt }.max() ?? .zero
            return la != lb ? la > lb : a.i < b.i
        }
        var chosen: [Option] = []
        if job.numNodes == 1 {
            guard let best = options.filter({ !$0.victims.isEmpty }).min(by: cheaper) else { return nil }
            chosen = [best]
        } else {
            // Group by the domain the gang must live in; pick the group with the fewest victims.
            var groups: [Int: [Option]] = [:]
            for o in options {
                let key = job.topology == .rack ? snapshot.nodes[o.i].rack : snapshot.nodes[o.i].site
                groups[key, default: []].append(o)
            }
            var best: (victims: Set<Int>, nodes: [Option], key: Int)?
            for (key, group) in groups where group.count >= job.numNodes {
                let nodes = Array(group.sorted(by: cheaper).prefix(job.numNodes))
                let victims = Set(nodes.flatMap(\.victims))
                if victims.isEmpty { continue }
                if best == nil || victims.count < best!.victims.count || (victims.count == best!.victims.count && key < best!.key)
                {
                    best = (victims, nodes, key)
                }
            }
            guard let best else { return nil }
            chosen = best.nodes
        }
        var victimIDs: [Int] = []
        for o in chosen { for v in o.victims where !victimIDs.contains(v) { victimIDs.append(v) } }
        for v in victimIDs { victimTaken.insert(v) }
        for o in chosen { for t in o.target { nominated[o.i][t] = job.id } }
        let ids = victimIDs.map { snapshot.running[$0].id }
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
        let candidates = snapshot.running.enumerated()
            .filter { _, r in
                r.tier == .spot && !r.stopping && r.org == job.org && r.project != job.project && borrowing(r)
                    && !victimTaken.contains(snapshot.running.firstIndex { $0.id == r.id }!)
            }
            .sorted { a, b in
                a.element.startedAt != b.element.startedAt
                    ? a.element.startedAt > b.element.startedAt : a.element.id > b.element.id
            }
        var freed = 0
        var victims: [Int] = []
        for (index, r) in candidates where freed < over {
            victims.append(index)
            freed += r.allocations.reduce(0) { $0 + $1.gpus.count }
        }
        guard freed >= over else { return nil }
        for v in victims { victimTaken.insert(v) }
        let ids = victims.map { snapshot.running[$0].id }
        return Preemption(
            job: job.id, victims: ids, target: [], noticeSeconds: noticeSeconds,
            reason: "quota: reclaiming \(freed) GPUs of org \(job.org) borrowed by \(ids.map(\.rawValue).joined(separator: ", "))"
        )
    }
}
