import StratusCore
import StratusLedger
import StratusScheduler

extension KeyedDecodingContainer {
    /// Counters are never read from an encoding (older snapshots do not have them): a
    /// decoded state starts with empty, invalid counters and rebuilds them.
    public func decode(_ type: FleetCounters.Type, forKey key: Key) throws -> FleetCounters { FleetCounters() }
}

/// Power and spot supply per node, summed per site and per spot SKU, kept as commands
/// change the GPU table and node states, so that the scheduler's snapshot, plan checks and
/// the spot market read them without walking the fleet. Derived, so not part of the
/// state's value: encoded as nothing, always equal. `valid` is false after decoding;
/// `apply` rebuilds them first.
public struct FleetCounters: Codable, Equatable, Sendable {
    /// What one node adds to the totals: the places of its site, spot SKU and GPU model
    /// in the totals' lists (-1: none), and its parts. Plain numbers, so that a node's
    /// share is read, compared and written without retaining a string, and a total is
    /// found by its place, not by hashing its key (this runs for every allocation's
    /// start and end).
    struct NodeShare: Equatable, Sendable {
        var site: Int32 = -1
        var sku: Int32 = -1
        var model: Int32 = -1
        var watts: Int64 = 0
        var gpus = 0
        var committed = 0
        var internalUsed = 0
    }
    /// A node's share with the keys it is counted under (what `State.share(of:)` works
    /// out), before its keys are given places.
    struct KeyedShare: Equatable, Sendable {
        var site: SiteID?
        var sku: SKU?
        var model = ""
        var watts: Int64 = 0
        var gpus = 0
        var committed = 0
        var internalUsed = 0
    }
    var valid = false
    /// The scheduler's indexes of racks, sites and blocks, and each node's (in `nodeOrder`).
    var rackIndex: [RackID: Int] = [:]
    var siteIndex: [SiteID: Int] = [:]
    var placement: [(rack: Int, site: Int, block: Int)] = []
    /// Each node's site, in `nodeOrder` (sites and racks change only with the fleet,
    /// which rebuilds the counters).
    var siteAt: [Site?] = []
    /// How the scheduler sees each node, in `nodeOrder`, and each node's position there.
    var nodeViews: [SchedulingSnapshot.NodeView] = []
    var position: [NodeID: Int] = [:]
    /// The scheduler's capacity index over `nodeViews`.
    var capacity: KeptCapacity?
    /// Each node's part of the counters, by position (`byNode`: nodes without one).
    var shares: [NodeShare] = []
    var byNode: [NodeID: NodeShare] = [:]
    /// Jobs holding GPUs (whole or a share), and how the scheduler sees them.
    var holding = Set<JobID>()
    var running = RunningTable()
    /// Spot jobs holding GPUs with a `max_price`: what a new spot price may stop.
    var bidders = Set<JobID>()
    /// Positions (in `nodeOrder`) of nodes with GPUs shared on fractions.
    var sharedNodes = Set<Int>()
    /// The totals, by place: watts per site, spot supply per SKU, internal use per model,
    /// each key's place found through its dictionary (only when a share's keys change).
    private var sites = Places<SiteID>()
    private var siteWatts: [Int64] = []
    private var skus = Places<SKU>()
    private var skuSupply: [SpotMarket.Supply] = []
    private var models = Places<String>()
    private var modelInternal: [Int] = []

    /// Keys numbered in the order they are first seen.
    struct Places<Key: Hashable & Sendable>: Sendable {
        private(set) var keys: [Key] = []
        private var places: [Key: Int32] = [:]

        /// The key's place, and whether it was just given one.
        mutating func place(_ key: Key) -> (at: Int32, isNew: Bool) {
            if let at = places[key] { return (at, false) }
            let at = Int32(keys.count)
            places[key] = at
            keys.append(key)
            return (at, true)
        }

        func existing(_ key: Key) -> Int32? { places[key] }
    }

    /// Power drawn per site (sites that never drew any may be missing, or zero).
    var wattsBySite: [SiteID: Int64] { Dictionary(uniqueKeysWithValues: zip(sites.keys, siteWatts)) }
    /// GPUs in service and spoken for per spot SKU.
    var supply: [SKU: SpotMarket.Supply] { Dictionary(uniqueKeysWithValues: zip(skus.keys, skuSupply)) }
    /// Internal-tier GPUs in use per model.
    var internalUsed: [String: Int] { Dictionary(uniqueKeysWithValues: zip(models.keys, modelInternal)) }

    public init() {}

    public init(from decoder: any Decoder) throws { self.init() }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encodeNil()
    }

    public static func == (a: FleetCounters, b: FleetCounters) -> Bool { true }

    /// `s` with its keys' places (given a place the first time each is seen).
    mutating func placed(_ s: KeyedShare) -> NodeShare {
        var out = NodeShare(watts: s.watts, gpus: s.gpus, committed: s.committed, internalUsed: s.internalUsed)
        if let site = s.site {
            let p = sites.place(site)
            if p.isNew { siteWatts.append(0) }
            out.site = p.at
        }
        if let sku = s.sku {
            let p = skus.place(sku)
            if p.isNew { skuSupply.append(.init(gpus: 0, committed: 0)) }
            out.sku = p.at
        }
        let p = models.place(s.model)
        if p.isNew { modelInternal.append(0) }
        out.model = p.at
        return out
    }

    /// `s` with the places its keys have now (nil when one has none yet): for checks.
    func existingPlaces(_ s: KeyedShare) -> NodeShare? {
        var out = NodeShare(watts: s.watts, gpus: s.gpus, committed: s.committed, internalUsed: s.internalUsed)
        if let site = s.site {
            guard let at = sites.existing(site) else { return nil }
            out.site = at
        }
        if let sku = s.sku {
            guard let at = skus.existing(sku) else { return nil }
            out.sku = at
        }
        guard let model = models.existing(s.model) else { return nil }
        out.model = model
        return out
    }

    mutating func remove(_ s: NodeShare) {
        if s.site >= 0 { siteWatts[Int(s.site)] -= s.watts }
        if s.sku >= 0 {
            skuSupply[Int(s.sku)].gpus -= s.gpus
            skuSupply[Int(s.sku)].committed -= s.committed
        }
        if s.model >= 0 { modelInternal[Int(s.model)] -= s.internalUsed }
    }

    /// `old` becomes `new`: for the same node (same site, SKU and model) only the parts
    /// that changed are counted again.
    mutating func replace(_ old: NodeShare, with new: NodeShare) {
        guard old.site == new.site, old.sku == new.sku, old.model == new.model else {
            remove(old)
            add(new)
            return
        }
        if new.site >= 0, new.watts != old.watts { siteWatts[Int(new.site)] += new.watts - old.watts }
        if new.sku >= 0, new.gpus != old.gpus || new.committed != old.committed {
            skuSupply[Int(new.sku)].gpus += new.gpus - old.gpus
            skuSupply[Int(new.sku)].committed += new.committed - old.committed
        }
        if new.model >= 0, new.internalUsed != old.internalUsed {
            modelInternal[Int(new.model)] += new.internalUsed - old.internalUsed
        }
    }

    mutating func add(_ s: NodeShare) {
        if s.site >= 0 { siteWatts[Int(s.site)] += s.watts }
        if s.sku >= 0 {
            skuSupply[Int(s.sku)].gpus += s.gpus
            skuSupply[Int(s.sku)].committed += s.committed
        }
        if s.model >= 0 { modelInternal[Int(s.model)] += s.internalUsed }
    }
}

extension State {
    /// What node `id` adds to the counters now.
    func share(of id: NodeID) -> FleetCounters.KeyedShare {
        guard let node = nodes[id] else { return .init() }
        return share(of: node, site: site(of: node), holders: gpuHolders[id], shares: gpuShares[id])
    }

    /// What `node` (in `site`, with GPU table `holders` and shared GPUs `shares`) adds to
    /// the counters.
    func share(of node: Node, site: Site?, holders: [JobID?]?, shares: [Int: GPUShare]?) -> FleetCounters.KeyedShare {
        var s = FleetCounters.KeyedShare(model: node.gpuModel)
        s.site = site?.id
        var held = shares?.count ?? 0
        for case .some in holders ?? [] { held += 1 }
        if let site, held > 0 { s.watts = Self.wallWatts(model: node.gpuModel, gpus: held, pueMilli: site.pueMilli) }
        guard node.isSchedulable, let region = site?.region.rawValue else { return s }
        s.sku = SKU(gpuModel: node.gpuModel, region: region, tier: .spot)
        s.gpus = node.gpuCount
        // A job usually holds neighbouring GPUs: look each holder up once.
        var last: (job: JobID, tier: Tier?)?
        for case let holder? in holders ?? [] {
            if last?.job != holder { last = (holder, jobs.all[holder]?.spec.tier) }
            guard let tier = last?.tier, tier != .spot else { continue }
            s.committed += 1
            if tier == .internal { s.internalUsed += 1 }
        }
        for share in shares?.values ?? [:].values where share.tier != .spot {
            s.committed += 1
            if share.tier == .internal { s.internalUsed += 1 }
        }
        return s
    }

    /// After node `id` changed (its GPU table, state or loss): its part of the counters.
    mutating func recount(_ id: NodeID) {
        guard counters.valid else { return }
        recount(id, at: counterPosition(id))
    }

    /// Node `id`'s position in the counters' per-node tables (nil: none, or the counters
    /// are not built), for a caller that needs it more than once.
    @inline(__always)
    func counterPosition(_ id: NodeID) -> Int? {
        guard counters.valid, let k = counters.position[id], k < counters.placement.count, k < counters.shares.count,
            k < counters.siteAt.count
        else { return nil }
        return k
    }

    /// `recount` of node `id` at position `k` (from `counterPosition`).
    mutating func recount(_ id: NodeID, at k: Int?) {
        guard counters.valid else { return }
        recount(id, at: k, node: nodes[id, at: k], holders: gpuHolders[id, at: k])
    }

    /// `recount` given node `id`'s record and GPU table, which the caller has just read or
    /// changed (so they are not looked up again). With `delta`, the only change since the
    /// last recount is that a job of that tier took (positive) or freed (negative) that many
    /// whole GPUs: the node's part follows from its old one, without looking up the tier of
    /// every job on the node.
    mutating func recount(
        _ id: NodeID, at k: Int?, node: Node?, holders: [JobID?]?, delta: (gpus: Int, tier: Tier)? = nil
    ) {
        guard counters.valid else { return }
        // Every read before the first write (the state is then not copied for the reads),
        // and each of the node's tables looked up once.
        let shares = gpuShares[id, at: k]
        var new = FleetCounters.NodeShare()
        if let node, let k, let delta {
            new = counters.shares[k]
            var held = shares?.count ?? 0
            for case .some in holders ?? [] { held += 1 }
            new.watts = 0
            if let site = counters.siteAt[k], held > 0 {
                new.watts = Self.wallWatts(model: node.gpuModel, gpus: held, pueMilli: site.pueMilli)
            }
            if new.sku >= 0, delta.tier != .spot {
                new.committed += delta.gpus
                if delta.tier == .internal { new.internalUsed += delta.gpus }
            }
            assert(
                new == counters.existingPlaces(share(of: node, site: counters.siteAt[k], holders: holders, shares: shares)),
                "recount delta")
        } else if let node {
            // No closure here: one that reads `self` makes the optimizer copy the whole state.
            var site: Site?
            if let k { site = counters.siteAt[k] } else { site = self.site(of: node) }
            let keyed = share(of: node, site: site, holders: holders, shares: shares)
            new = counters.placed(keyed)
        }
        if let k {
            let old = counters.shares[k]
            if old != new {
                counters.replace(old, with: new)
                counters.shares[k] = new
            }
        } else {
            if let old = counters.byNode.updateValue(new, forKey: id) { counters.remove(old) }
            counters.add(new)
        }
        if let k, let node {
            // In place: the view's arrays are reused, not allocated anew.
            Self.refresh(&counters.nodeViews[k], node, holders: holders ?? [], shares: shares, used: resourcesInUse[id, at: k])
            if shares?.isEmpty ?? true {
                if !counters.sharedNodes.isEmpty { counters.sharedNodes.remove(k) }
            } else {
                counters.sharedNodes.insert(k)
            }
            // A node in or out of service moves between pools: rebuild the index then.
            if counters.capacity?.update(k, counters.nodeViews[k]) != true {
                counters.capacity = KeptCapacity(nodes: counters.nodeViews)
            }
        }
    }

    /// The counters; before the first command after decoding (when they are not built
    /// yet), what a rebuild gives: one way to count, whichever the caller.
    var currentCounters: FleetCounters {
        if counters.valid { return counters }
        var copy = self
        copy.rebuildCounters()
        return copy.counters
    }

    /// Rebuilds the counters from the whole fleet (after decoding, or a fleet change).
    mutating func rebuildCounters() {
        // The node tables in `nodeOrder`'s slots (decoded ones are in ID order).
        if !nodes.isSlotted(nodeOrder) { nodes = NodeTable(nodes.dictionary, order: nodeOrder) }
        if !gpuHolders.isSlotted(nodeOrder) { gpuHolders = NodeTable(gpuHolders.dictionary, order: nodeOrder) }
        if !gpuShares.isSlotted(nodeOrder) { gpuShares = NodeTable(gpuShares.dictionary, order: nodeOrder) }
        if !resourcesInUse.isSlotted(nodeOrder) {
            resourcesInUse = NodeTable(resourcesInUse.dictionary, order: nodeOrder)
        }
        var c = FleetCounters()
        for id in nodeOrder {
            let s = c.placed(share(of: id))
            c.add(s)
            c.shares.append(s)
        }
        c.holding = walkHoldingJobs()
        let index = schedulerIndex()
        c.rackIndex = index.racks
        c.siteIndex = index.sites
        c.placement = index.placement
        c.siteAt = nodeOrder.map { nodes[$0].flatMap { site(of: $0) } }
        c.nodeViews = nodeOrder.enumerated().map { k, id in nodeView(id, index.placement[k]) }
        c.position = Dictionary(uniqueKeysWithValues: nodeOrder.enumerated().map { ($1, $0) })
        c.capacity = KeptCapacity(nodes: c.nodeViews)
        c.sharedNodes = Set(c.nodeViews.indices.filter { !c.nodeViews[$0].shares.isEmpty })
        c.running = RunningTable(
            c.holding.sorted().compactMap { runningView($0) }, nodes: c.nodeViews, position: c.position)
        c.bidders = c.holding.filter(isBidder)
        c.valid = true
        counters = c
        _ = jobs.takeTouched()
    }

    /// After a command: the scheduler's view of each job it changed.
    mutating func syncRunning() {
        var touched = jobs.takeTouched()
        defer { jobs.recycle(&touched) }
        guard counters.valid, !touched.isEmpty else { return }
        for id in touched {
            let view = counters.holding.contains(id) ? runningView(id) : nil
            counters.running.set(id, view, nodes: counters.nodeViews, position: counters.position)
            if view?.tier == .spot, isBidder(id) {
                counters.bidders.insert(id)
            } else {
                counters.bidders.remove(id)
            }
        }
    }

    /// Whether job `id` is spot work with a `max_price` (a new spot price may stop it).
    func isBidder(_ id: JobID) -> Bool {
        guard let job = jobs.all[id] else { return false }
        return job.spec.tier == .spot && job.spec.maxPrice != nil
    }
}

extension State {
    /// Differences between the kept counters and counters rebuilt from scratch (empty when
    /// they agree, or when they are not built yet): for invariant checks.
    public func counterProblems() -> [String] {
        guard counters.valid else { return [] }
        var fresh = self
        fresh.rebuildCounters()
        var problems: [String] = []
        let kept = counters.wattsBySite.filter { $0.value != 0 }
        let rebuilt = fresh.counters.wattsBySite.filter { $0.value != 0 }
        if kept != rebuilt { problems.append("power counters \(kept) differ from the fleet's \(rebuilt)") }
        let keptSupply = counters.supply.filter { $0.value.gpus != 0 || $0.value.committed != 0 }
        let freshSupply = fresh.counters.supply.filter { $0.value.gpus != 0 || $0.value.committed != 0 }
        if keptSupply.mapValues({ [$0.gpus, $0.committed] }) != freshSupply.mapValues({ [$0.gpus, $0.committed] }) {
            problems.append("spot supply counters differ from the fleet's")
        }
        if counters.siteAt != fresh.counters.siteAt { problems.append("nodes' sites differ from the fleet's") }
        for (k, view) in counters.nodeViews.enumerated() where k < fresh.counters.nodeViews.count {
            let other = fresh.counters.nodeViews[k]
            if view.id != other.id || view.freeGPUs != other.freeGPUs || view.schedulable != other.schedulable
                || view.shares != other.shares || view.freeResources != other.freeResources || view.labels != other.labels
            {
                problems.append("the scheduler's view of \(view.id) differs from the node's")
                break
            }
        }
        if let kept = counters.capacity {
            let diff = kept.differences(from: fresh.counters.nodeViews)
            if !diff.isEmpty { problems.append("the kept capacity index differs from the fleet's: \(diff)") }
        }
        if counters.holding != fresh.counters.holding { problems.append("the jobs holding GPUs differ from the GPU table's") }
        problems += counters.running.differences(from: fresh.counters.running)
        if counters.sharedNodes != fresh.counters.sharedNodes { problems.append("the nodes with shared GPUs differ") }
        if counters.bidders != fresh.counters.bidders { problems.append("the spot jobs with a max price differ") }
        if counters.internalUsed.filter({ $0.value != 0 }) != fresh.counters.internalUsed.filter({ $0.value != 0 }) {
            problems.append("internal use counters differ from the fleet's")
        }
        return problems
    }
}
