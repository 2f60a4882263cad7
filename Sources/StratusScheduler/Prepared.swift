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
/// capacity index, node lookup, GPUs shared on fractions, and the GPUs sold under
/// capacity protection. Running work's indexes come from the `RunningTable`.
struct Prepared: Sendable {
    let index: [NodeID: Int]
    let capacity: CapacityIndex
    /// GPUs shared by jobs on fractions, by GPU model: (node index, share).
    let sharesByModel: [String: [(node: Int, share: SchedulingSnapshot.SharedGPU)]]
    /// For models with an internal reserve: GPUs that exist (key -1 fleet-wide, then per
    /// site) and GPUs that on-demand and reserved work holds.
    let capacityByModel: [String: [Int: Int]]
    let sold: [String: [Int: Int]]
    /// For models with reservations: GPUs held by non-spot work outside any reservation
    /// (key -1 fleet-wide, then per site).
    let outside: [String: [Int: Int]]
    /// Nodes of each rack held by a block of whole racks.
    let nodesInRackBlocks: [Int: [Int]]
    /// CPU and memory held for jobs whose preemption is under way, on the nodes whose GPUs
    /// are held for them (as if taken: nobody else's placement takes them meanwhile).
    let heldResources: [Int: NodeResources]

    init(
        nodes: [SchedulingSnapshot.NodeView], pending: [SchedulingSnapshot.PendingJob],
        running: RunningTable, reserves: [InternalReserve],
        reservedModels: Set<String> = [], rackBlocks: Set<Int> = [], index: [NodeID: Int],
        kept: KeptCapacity? = nil, sharedNodes: [Int]? = nil
    ) {
        var nodesInRackBlocks: [Int: [Int]] = [:]
        if !rackBlocks.isEmpty {
            for (i, n) in nodes.enumerated() where rackBlocks.contains(n.rack) {
                nodesInRackBlocks[n.rack, default: []].append(i)
            }
        }
        self.nodesInRackBlocks = nodesInRackBlocks
        var held: [Int: [Int: JobID]] = [:]
        var heldResources: [Int: NodeResources] = [:]
        for job in pending {
            for a in job.nominated ?? [] {
                guard let i = index[a.node] else { continue }
                for g in a.gpus { held[i, default: [:]][g] = job.id }
                if !job.resources.isZero { heldResources[i] = heldResources[i, default: .zero] + job.resources }
            }
        }
        self.heldResources = heldResources
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
        var sharesByModel: [String: [(node: Int, share: SchedulingSnapshot.SharedGPU)]] = [:]
        for i in sharedNodes ?? Array(nodes.indices) where !nodes[i].shares.isEmpty {
            for share in nodes[i].shares { sharesByModel[nodes[i].gpuModel, default: []].append((i, share)) }
        }
        self.sharesByModel = sharesByModel
        var capacityByModel: [String: [Int: Int]] = [:]
        var sold: [String: [Int: Int]] = [:]
        let reserved = Set(reserves.map(\.gpuModel))
        let counted = reserved.union(reservedModels)
        var outside: [String: [Int: Int]] = [:]
        if !reservedModels.isEmpty {
            for model in reservedModels { outside[model] = running.outside[model] }
            // GPUs held for queued non-spot work whose preemption is under way count as theirs.
            for job in pending where job.reservation == nil && job.tier != .spot {
                for a in job.nominated ?? [] {
                    guard let i = index[a.node], reservedModels.contains(nodes[i].gpuModel) else { continue }
                    outside.add(a.gpus.count, model: nodes[i].gpuModel, site: nodes[i].site)
                }
            }
            // A shared GPU counts once, by its sharers' tier.
            for (model, list) in sharesByModel where reservedModels.contains(model) {
                for (i, share) in list where share.tier != .spot { outside.add(1, model: model, site: nodes[i].site) }
            }
        }
        self.outside = outside
        if !counted.isEmpty {
            for n in nodes where counted.contains(n.gpuModel) {
                capacityByModel.add(n.gpuCount, model: n.gpuModel, site: n.site)
            }
            for model in counted { sold[model] = running.sold[model] }
            for (model, list) in sharesByModel where counted.contains(model) {
                for (i, share) in list where share.tier == .onDemand || share.tier == .reserved {
                    sold.add(1, model: model, site: nodes[i].site)
                }
            }
        }
        self.index = index
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
