import StratusCore

/// The capacity index kept across rounds by the owner of the fleet (the state): built
/// once, then told each node's new view as it changes; a change of a node's
/// schedulability (which moves it in or out of its pool) needs a rebuild.
public struct KeptCapacity: Sendable {
    var index: CapacityIndex
    var schedulable: [Bool]

    public init(nodes: [SchedulingSnapshot.NodeView]) {
        index = CapacityIndex(nodes: nodes, held: [:])
        schedulable = nodes.map(\.schedulable)
    }

    /// Node `i` now looks like `view`; false when the index must be rebuilt instead.
    public mutating func update(_ i: Int, _ view: SchedulingSnapshot.NodeView) -> Bool {
        guard i < schedulable.count, schedulable[i] == view.schedulable else { return false }
        index.setFree(i, GPUSet(indices: view.freeGPUs))
        return true
    }

    /// How the kept index differs from one built from `nodes` (empty when it does not).
    public func differences(from nodes: [SchedulingSnapshot.NodeView]) -> [String] {
        guard nodes.count == schedulable.count else { return ["\(schedulable.count) nodes kept, \(nodes.count) in the fleet"] }
        return index.differences(from: CapacityIndex(nodes: nodes, held: [:]), nodes: nodes.count)
    }
}

/// What a snapshot precomputes once, so that each decision costs what it touches: the
/// capacity index, node lookup, spot work by node and by recency, running work's ends,
/// running GPU time per org and the GPUs sold under capacity protection.
struct Prepared: Sendable {
    let index: [NodeID: Int]
    let capacity: CapacityIndex
    /// Spot work that may be preempted: node -> [(running jobs, their GPUs there)]: one
    /// job with its GPUs, or every job sharing one GPU (they free it together).
    let preemptible: [Int: [(jobs: [Int], gpus: [Int])]]
    /// GPUs shared by jobs on fractions, by GPU model: (node index, share).
    let sharesByModel: [String: [(node: Int, share: SchedulingSnapshot.SharedGPU)]]
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
        reservedModels: Set<String> = [], rackBlocks: Set<Int> = [], nodeIndex: [NodeID: Int]? = nil,
        kept: KeptCapacity? = nil
    ) {
        var nodesInRackBlocks: [Int: [Int]] = [:]
        if !rackBlocks.isEmpty {
            for (i, n) in nodes.enumerated() where rackBlocks.contains(n.rack) {
                nodesInRackBlocks[n.rack, default: []].append(i)
            }
        }
        self.nodesInRackBlocks = nodesInRackBlocks
        // Node lookup: given (the state keeps it), or built.
        var index: [NodeID: Int] = nodeIndex ?? [:]
        if nodeIndex == nil {
            index.reserveCapacity(nodes.count)
            for (i, n) in nodes.enumerated() { index[n.id] = i }
        }
        var held: [Int: [Int: JobID]] = [:]
        for job in pending {
            for a in job.nominated ?? [] {
                guard let i = index[a.node] else { continue }
                for g in a.gpus { held[i, default: [:]][g] = job.id }
            }
        }
        if let kept, kept.schedulable.count == nodes.count {
            // The kept index, with this round's holds for preemptions under way.
            var c = kept.index
            for i in held.keys.sorted() {
                var byJob: [JobID: [Int]] = [:]
                for (g, job) in held[i]! { byJob[job, default: []].append(g) }
                for job in byJob.keys.sorted() { c.hold(i, byJob[job]!.sorted(), for: job) }
            }
            capacity = c
        } else {
            capacity = CapacityIndex(nodes: nodes, held: held)
        }
        var preemptible: [Int: [(jobs: [Int], gpus: [Int])]] = [:]
        // Spot jobs sharing a GPU: node -> gpu -> running jobs; a GPU with one sharer
        // stopping already is not offered.
        var sharedSpot: [Int: [Int: [Int]]] = [:]
        var sharedStopping: Set<[Int]> = []
        var spot: [String: [Int]] = [:]
        var placedOn: [[(node: Int, gpus: [Int])]] = []
        placedOn.reserveCapacity(running.count)
        var ends: [(job: Int, at: Timestamp)] = []
        var byOrg: [OrgID: (gpus: Int, gpuStartMs: Int64)] = [:]
        for (j, r) in running.enumerated() {
            let gpus = r.allocations.reduce(0) { $0 + $1.gpus.count }
            byOrg[r.org, default: (0, 0)].gpus += gpus
            byOrg[r.org, default: (0, 0)].gpuStartMs += Int64(gpus) * r.startedAt.milliseconds
            let on = r.allocations.compactMap { a in index[a.node].map { (node: $0, gpus: a.gpus) } }
            placedOn.append(on)
            if r.gpuShareMilli != nil {
                // Its GPU frees only when every sharer has ended: neither an end to wait
                // for nor a victim on its own.
                guard r.tier == .spot, let a = on.first, let g = a.gpus.first else { continue }
                if r.stopping { sharedStopping.insert([a.node, g]) }
                sharedSpot[a.node, default: [:]][g, default: []].append(j)
                continue
            }
            if let end = r.expectedEnd { ends.append((j, end)) }
            guard r.tier == .spot, !r.stopping, let first = on.first else { continue }
            spot[nodes[first.node].gpuModel, default: []].append(j)
            for a in on { preemptible[a.node, default: []].append(([j], a.gpus)) }
        }
        for node in sharedSpot.keys.sorted() {
            for (g, jobs) in sharedSpot[node]!.sorted(by: { $0.key < $1.key }) where !sharedStopping.contains([node, g]) {
                preemptible[node, default: []].append((jobs, [g]))
            }
        }
        var sharesByModel: [String: [(node: Int, share: SchedulingSnapshot.SharedGPU)]] = [:]
        for (i, n) in nodes.enumerated() where !n.shares.isEmpty {
            for share in n.shares { sharesByModel[n.gpuModel, default: []].append((i, share)) }
        }
        self.sharesByModel = sharesByModel
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
            guard !reservedModels.isEmpty, r.reservation == nil, r.tier != .spot, r.gpuShareMilli == nil else { continue }
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
        // A shared GPU counts once, by its sharers' tier.
        for (model, list) in sharesByModel where reservedModels.contains(model) {
            for (i, share) in list where share.tier != .spot { outside.add(1, model: model, site: nodes[i].site) }
        }
        self.outside = outside
        self.inReservations = inReservations
        if !counted.isEmpty {
            for n in nodes where counted.contains(n.gpuModel) {
                capacityByModel.add(n.gpuCount, model: n.gpuModel, site: n.site)
            }
            for (model, list) in sharesByModel where counted.contains(model) {
                for (i, share) in list where share.tier == .onDemand || share.tier == .reserved {
                    sold.add(1, model: model, site: nodes[i].site)
                }
            }
            for r in running where (r.tier == .onDemand || r.tier == .reserved) && r.gpuShareMilli == nil {
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
