import StratusCore

/// What a snapshot precomputes once, so that each decision costs what it touches: the
/// capacity index, node lookup, spot work by node and by recency, running work's ends,
/// running GPU time per org and the GPUs sold under capacity protection.
struct Prepared: Sendable {
    let index: [NodeID: Int]
    let capacity: CapacityIndex
    /// Spot work that may be preempted: node -> [(running job, its GPUs there)].
    let preemptible: [Int: [(job: Int, gpus: [Int])]]
    /// Spot jobs not being stopped, by the GPU model they hold, most recently started first.
    let spotByRecency: [String: [Int]]
    /// Each running job's allocations by node index.
    let placedOn: [[(node: Int, gpus: [Int])]]
    /// Running jobs with a known end, earliest first.
    let ends: [(job: Int, at: Timestamp)]
    /// Per org: GPUs held now and the sum of GPUs x start time (ms), for fair share.
    let runningByOrg: [OrgID: (gpus: Int, gpuStartMs: Int64)]
    /// For models with an internal reserve: GPUs that exist (key -1 fleet-wide, then per
    /// site) and GPUs that on-demand and reserved work holds.
    let capacityByModel: [String: [Int: Int]]
    let sold: [String: [Int: Int]]
    /// For models with reservations: GPUs held by non-spot work outside any reservation
    /// (key -1 fleet-wide, then per site).
    let outside: [String: [Int: Int]]
    /// Running jobs in a reservation.
    let inReservations: [Int]
    /// Nodes of each rack held by a block of whole racks.
    let nodesInRackBlocks: [Int: [Int]]

    init(
        nodes: [SchedulingSnapshot.NodeView], pending: [SchedulingSnapshot.PendingJob],
        running: [SchedulingSnapshot.RunningJob], reserves: [InternalReserve],
        reservedModels: Set<String> = [], rackBlocks: Set<Int> = []
    ) {
        var nodesInRackBlocks: [Int: [Int]] = [:]
        if !rackBlocks.isEmpty {
            for (i, n) in nodes.enumerated() where rackBlocks.contains(n.rack) {
                nodesInRackBlocks[n.rack, default: []].append(i)
            }
        }
        self.nodesInRackBlocks = nodesInRackBlocks
        var index: [NodeID: Int] = [:]
        index.reserveCapacity(nodes.count)
        for (i, n) in nodes.enumerated() { index[n.id] = i }
        var held: [Int: [Int: JobID]] = [:]
        for job in pending {
            for a in job.nominated ?? [] {
                guard let i = index[a.node] else { continue }
                for g in a.gpus { held[i, default: [:]][g] = job.id }
            }
        }
        capacity = CapacityIndex(nodes: nodes, held: held)
        var preemptible: [Int: [(job: Int, gpus: [Int])]] = [:]
        var spot: [String: [Int]] = [:]
        var placedOn: [[(node: Int, gpus: [Int])]] = []
        placedOn.reserveCapacity(running.count)
        var ends: [(job: Int, at: Timestamp)] = []
        var byOrg: [OrgID: (gpus: Int, gpuStartMs: Int64)] = [:]
        for (j, r) in running.enumerated() {
            let gpus = r.allocations.reduce(0) { $0 + $1.gpus.count }
            byOrg[r.org, default: (0, 0)].gpus += gpus
            byOrg[r.org, default: (0, 0)].gpuStartMs += Int64(gpus) * r.startedAt.milliseconds
            if let end = r.expectedEnd { ends.append((j, end)) }
            let on = r.allocations.compactMap { a in index[a.node].map { (node: $0, gpus: a.gpus) } }
            placedOn.append(on)
            guard r.tier == .spot, !r.stopping, let first = on.first else { continue }
            spot[nodes[first.node].gpuModel, default: []].append(j)
            for a in on { preemptible[a.node, default: []].append((j, a.gpus)) }
        }
        for model in spot.keys {
            spot[model]!.sort { a, b in
                let ra = running[a]
                let rb = running[b]
                return ra.startedAt != rb.startedAt ? ra.startedAt > rb.startedAt : ra.id > rb.id
            }
        }
        ends.sort { $0.at != $1.at ? $0.at < $1.at : $0.job < $1.job }
        var capacityByModel: [String: [Int: Int]] = [:]
        var sold: [String: [Int: Int]] = [:]
        let reserved = Set(reserves.map(\.gpuModel))
        let counted = reserved.union(reservedModels)
        var outside: [String: [Int: Int]] = [:]
        var inReservations: [Int] = []
        for (j, r) in running.enumerated() {
            if r.reservation != nil { inReservations.append(j) }
            guard !reservedModels.isEmpty, r.reservation == nil, r.tier != .spot else { continue }
            for a in r.allocations {
                guard let i = index[a.node], reservedModels.contains(nodes[i].gpuModel) else { continue }
                outside.add(a.gpus.count, model: nodes[i].gpuModel, site: nodes[i].site)
            }
        }
        // GPUs held for queued non-spot work whose preemption is under way count as theirs.
        for job in pending where job.reservation == nil && job.tier != .spot && !reservedModels.isEmpty {
            for a in job.nominated ?? [] {
                guard let i = index[a.node], reservedModels.contains(nodes[i].gpuModel) else { continue }
                outside.add(a.gpus.count, model: nodes[i].gpuModel, site: nodes[i].site)
            }
        }
        self.outside = outside
        self.inReservations = inReservations
        if !counted.isEmpty {
            for n in nodes where counted.contains(n.gpuModel) {
                capacityByModel.add(n.gpuCount, model: n.gpuModel, site: n.site)
            }
            for r in running where r.tier == .onDemand || r.tier == .reserved {
                for a in r.allocations {
                    guard let i = index[a.node], counted.contains(nodes[i].gpuModel) else { continue }
                    sold.add(a.gpus.count, model: nodes[i].gpuModel, site: nodes[i].site)
                }
            }
        }
        self.index = index
        self.preemptible = preemptible
        self.spotByRecency = spot
        self.placedOn = placedOn
        self.ends = ends
        self.runningByOrg = byOrg
        self.capacityByModel = capacityByModel
        self.sold = sold
    }
}

extension Dictionary where Key == String, Value == [Int: Int] {
    /// GPU counts by model, fleet-wide (key -1) and per site: adds `n` to both.
    mutating func add(_ n: Int, model: String, site: Int) {
        var counts = self[model] ?? [:]
        counts[-1, default: 0] += n
        counts[site, default: 0] += n
        self[model] = counts
    }
}
