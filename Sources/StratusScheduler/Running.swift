import StratusCore

/// The work holding GPUs, as the scheduler sees it, with the indexes preemption,
/// backfill and fair share read: kept across rounds by the owner of the state (which
/// tells it each job whose view changes), so that a round costs what it touches, not
/// what runs. Jobs live in stable slots (a freed slot is reused); every order the
/// scheduler reads is by the jobs' own fields (start, end, ID), never by slot, so a
/// table built at once and one kept through a history give the same plans.
public struct RunningTable: Sendable {
    public typealias RunningJob = SchedulingSnapshot.RunningJob
    /// Running jobs by slot; nil: a free slot.
    public private(set) var slots: [RunningJob?] = []
    var freeSlots: [Int] = []
    var slotOf: [JobID: Int] = [:]
    /// Each slot's allocations by node index (nodes the index does not know are left out).
    var placedOn: [[(node: Int, gpus: [Int])]] = []
    /// Slots of spot work with an allocation on each node, by node index (a flat list:
    /// found by position, not by hashing; grown as nodes are named).
    var onNode: [[Int]] = []
    /// Spot jobs on whole GPUs not being stopped, by the model of their first node, most
    /// recently started first (ties: the larger ID).
    var spotByRecency: [String: [Int]] = [:]
    /// Jobs on whole GPUs with a known end, earliest first (ties: the smaller ID).
    var ends: [(job: Int, at: Timestamp)] = []
    /// Per org: GPUs held and the sum of GPUs x start time (ms), for fair share.
    var runningByOrg: [OrgID: (gpus: Int, gpuStartMs: Int64)] = [:]
    /// Slots of jobs in a capacity block, by job ID.
    var inReservations: [Int] = []
    /// Whole GPUs held by non-spot work outside any block, and by on-demand and reserved
    /// work, per model (key -1 fleet-wide, then per site); no zero entries.
    var outside: [String: [Int: Int]] = [:]
    var sold: [String: [Int: Int]] = [:]

    public init() {}

    /// A table of `running`, in slots 0..<count.
    public init(_ running: [RunningJob], nodes: [SchedulingSnapshot.NodeView], position: [NodeID: Int]) {
        for r in running { set(r.id, r, nodes: nodes, position: position) }
    }

    public var count: Int { slotOf.count }

    /// The running job in slot `j`.
    subscript(_ j: Int) -> RunningJob { slots[j]! }

    /// Occupied slots, in slot order.
    var occupied: [Int] { slots.indices.filter { slots[$0] != nil } }

    /// GPUs held by the jobs of each capacity block.
    public func gpusByReservation() -> [ReservationID: Int] {
        var used: [ReservationID: Int] = [:]
        for j in inReservations {
            let r = self[j]
            if let id = r.reservation { used[id, default: 0] += Self.gpus(r) }
        }
        return used
    }

    /// Job `id` now looks like `view` (nil: it holds no GPUs any more).
    public mutating func set(
        _ id: JobID, _ view: RunningJob?, nodes: [SchedulingSnapshot.NodeView], position: [NodeID: Int]
    ) {
        if let j = slotOf[id] {
            if let view, let old = slots[j] {
                if old == view { return }
                if shrink(j, old, to: view, nodes: nodes) { return }
            }
            remove(j, nodes: nodes)
            if let view {
                fill(j, view, nodes: nodes, position: position)
            } else {
                slots[j] = nil
                placedOn[j] = []
                slotOf[id] = nil
                freeSlots.append(j)
            }
        } else if let view {
            let j: Int
            if let reused = freeSlots.popLast() {
                j = reused
            } else {
                j = slots.count
                slots.append(nil)
                placedOn.append([])
            }
            slotOf[id] = j
            fill(j, view, nodes: nodes, position: position)
        }
    }

    static func gpus(_ r: RunningJob) -> Int { r.allocations.reduce(0) { $0 + $1.gpus.count } }

    /// Takes slot `j`'s job out of every index (its slot stays).
    private mutating func remove(_ j: Int, nodes: [SchedulingSnapshot.NodeView]) {
        let r = slots[j]!
        let gpus = Self.gpus(r)
        if var o = runningByOrg[r.org] {
            o.gpus -= gpus
            o.gpuStartMs -= Int64(gpus) * r.startedAt.milliseconds
            runningByOrg[r.org] = o.gpus == 0 && o.gpuStartMs == 0 ? nil : o
        }
        let on = placedOn[j]
        if r.reservation != nil, let k = inReservations.firstIndex(of: j) { inReservations.remove(at: k) }
        if r.gpuShareMilli == nil {
            if r.expectedEnd != nil, let k = endPosition(j, r) { ends.remove(at: k) }
            if r.tier == .spot, !r.stopping, let first = on.first {
                let model = nodes[first.node].gpuModel
                if let k = spotPosition(j, r, model: model) { spotByRecency[model]!.remove(at: k) }
            }
            count(r, on, nodes: nodes, sign: -1)
        }
        if r.tier == .spot {
            for a in on {
                // One lookup of the node's list, changed in place.
                guard a.node < onNode.count, let x = onNode[a.node].firstIndex(of: j) else { continue }
                onNode[a.node].remove(at: x)
            }
        }
    }

    /// Puts `view` in slot `j` and into every index.
    private mutating func fill(
        _ j: Int, _ r: RunningJob, nodes: [SchedulingSnapshot.NodeView], position: [NodeID: Int]
    ) {
        slots[j] = r
        let on = r.allocations.compactMap { a in position[a.node].map { (node: $0, gpus: a.gpus) } }
        placedOn[j] = on
        let gpus = Self.gpus(r)
        var o = runningByOrg[r.org] ?? (0, 0)
        o.gpus += gpus
        o.gpuStartMs += Int64(gpus) * r.startedAt.milliseconds
        runningByOrg[r.org] = o.gpus == 0 && o.gpuStartMs == 0 ? nil : o
        if r.reservation != nil {
            let k = lowerBound(inReservations) { slots[$0]!.id < r.id }
            inReservations.insert(j, at: k)
        }
        if r.gpuShareMilli == nil {
            if let at = r.expectedEnd {
                let k = lowerBound(ends) { e in e.at != at ? e.at < at : slots[e.job]!.id < r.id }
                ends.insert((j, at), at: k)
            }
            if r.tier == .spot, !r.stopping, let first = on.first {
                let model = nodes[first.node].gpuModel
                // Found in the list as it stands, then inserted in place (taking the list
                // out and putting it back would copy every spot job's slot).
                let k = spotByRecency[model].map { list in lowerBound(list) { s in recent(s, before: r) } } ?? 0
                spotByRecency[model, default: []].insert(j, at: k)
            }
            count(r, on, nodes: nodes, sign: 1)
        }
        // Only spot work can be preempted: other work is not listed by node.
        if r.tier == .spot {
            for a in on {
                if a.node >= onNode.count { onNode += Array(repeating: [], count: a.node + 1 - onNode.count) }
                onNode[a.node].append(j)
            }
        }
    }

    /// Whether `a` comes before `b` in `spotByRecency`: started later, or at the same
    /// time with the larger ID.
    static func recent(_ a: RunningJob, before b: RunningJob) -> Bool {
        a.startedAt != b.startedAt ? a.startedAt > b.startedAt : a.id > b.id
    }

    /// `recent` for the job in slot `s`, its fields read in place (a copy of the view
    /// costs a retain and a release per field, on every probe of a search).
    private func recent(_ s: Int, before b: RunningJob) -> Bool {
        let at = slots[s]!.startedAt
        return at != b.startedAt ? at > b.startedAt : slots[s]!.id > b.id
    }

    private func endPosition(_ j: Int, _ r: RunningJob) -> Int? {
        guard let at = r.expectedEnd else { return nil }
        let k = lowerBound(ends) { e in e.at != at ? e.at < at : slots[e.job]!.id < r.id }
        return k < ends.count && ends[k].job == j ? k : nil
    }

    private func spotPosition(_ j: Int, _ r: RunningJob, model: String) -> Int? {
        guard let list = spotByRecency[model] else { return nil }
        let k = lowerBound(list) { s in recent(s, before: r) }
        return k < list.count && list[k] == j ? k : nil
    }

    /// The first position in sorted `list` whose element is not `before` the sought one.
    private func lowerBound<T>(_ list: [T], _ before: (T) -> Bool) -> Int {
        var lo = 0
        var hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if before(list[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Adds (or with `sign` -1 takes away) a whole-GPU job's part of `outside` and `sold`
    /// on nodes `on`.
    private mutating func count(
        _ r: RunningJob, _ on: [(node: Int, gpus: [Int])], nodes: [SchedulingSnapshot.NodeView], sign: Int
    ) {
        let isOutside = r.reservation == nil && r.tier != .spot
        let isSold = r.tier == .onDemand || r.tier == .reserved
        guard isOutside || isSold, r.gpuShareMilli == nil else { return }
        // GPUs per (model, site): a gang's nodes are almost always of one, summed without a
        // list (others, if any, in one); the nodes' fields read in place, not copied.
        guard let head = on.first else { return }
        let model = nodes[head.node].gpuModel
        let site = nodes[head.node].site
        var gpus = 0
        var others: [(model: String, site: Int, gpus: Int)] = []
        for a in on {
            if nodes[a.node].site == site, nodes[a.node].gpuModel == model {
                gpus += a.gpus.count
            } else if let k = others.firstIndex(where: { $0.site == nodes[a.node].site && $0.model == nodes[a.node].gpuModel }) {
                others[k].gpus += a.gpus.count
            } else {
                others.append((nodes[a.node].gpuModel, nodes[a.node].site, a.gpus.count))
            }
        }
        if isOutside { outside.adjust(sign * gpus, model: model, site: site) }
        if isSold { sold.adjust(sign * gpus, model: model, site: site) }
        for o in others {
            if isOutside { outside.adjust(sign * o.gpus, model: o.model, site: o.site) }
            if isSold { sold.adjust(sign * o.gpus, model: o.model, site: o.site) }
        }
    }

    /// Slot `j`'s job lost some allocations (they ended) and nothing else changed: takes
    /// out only those. False when the change is another kind (the caller redoes the slot).
    private mutating func shrink(_ j: Int, _ old: RunningJob, to new: RunningJob, nodes: [SchedulingSnapshot.NodeView]) -> Bool {
        guard old.startedAt == new.startedAt, old.stopping == new.stopping, old.expectedEnd == new.expectedEnd,
            old.tier == new.tier, old.org == new.org, old.reservation == new.reservation,
            old.gpuShareMilli == nil, new.gpuShareMilli == nil, new.allocations.count < old.allocations.count,
            !new.allocations.isEmpty
        else { return false }
        // The new allocations are the old ones less those that ended, in the same order:
        // one walk over both finds them (and refuses anything else).
        let before = placedOn[j]
        var after: [(node: Int, gpus: [Int])] = []
        var gone: [(node: Int, gpus: [Int])] = []
        after.reserveCapacity(new.allocations.count)
        var k = 0
        var p = 0
        for a in old.allocations {
            // `before` lists the allocations on nodes the index knows, in the same order.
            let placed: (node: Int, gpus: [Int])? = p < before.count && nodes[before[p].node].id == a.node ? before[p] : nil
            if placed != nil { p += 1 }
            if k < new.allocations.count, new.allocations[k] == a {
                k += 1
                if let placed { after.append(placed) }
            } else if let placed {
                gone.append(placed)
            }
        }
        guard k == new.allocations.count else { return false }
        // Spot work is listed by its first node's model: a new first node may move it.
        if old.tier == .spot, !old.stopping, before.first?.node != after.first?.node { return false }
        // Fair share counts every GPU, on nodes the index knows or not.
        let gpus = Self.gpus(old) - Self.gpus(new)
        if var o = runningByOrg[old.org] {
            o.gpus -= gpus
            o.gpuStartMs -= Int64(gpus) * old.startedAt.milliseconds
            runningByOrg[old.org] = o.gpus == 0 && o.gpuStartMs == 0 ? nil : o
        }
        count(old, gone, nodes: nodes, sign: -1)
        slots[j] = new
        placedOn[j] = after
        if old.tier == .spot {
            for a in gone {
                if a.node < onNode.count { onNode[a.node].removeAll { $0 == j } }
            }
        }
        return true
    }

    /// Spot work on node `i` that may be preempted, as (slots, their GPUs there): each spot
    /// job on whole GPUs not being stopped, by ID, then each GPU spot jobs share (in GPU
    /// order, every sharer: they free it together) unless one of its sharers is being
    /// stopped. Worked out when a preemption looks at the node (rare), not kept for every
    /// node as work starts and ends.
    public func preemptible(on i: Int) -> [(jobs: [Int], gpus: [Int])] {
        let listed = i < onNode.count ? onNode[i] : []
        let here = listed.count < 2 ? listed : listed.sorted { slots[$0]!.id < slots[$1]!.id }
        var entries: [(jobs: [Int], gpus: [Int])] = []
        var shared: [Int: [Int]] = [:]
        var stopping = Set<Int>()
        for j in here {
            // The job's fields read in place (a copy of its view costs a retain per field).
            guard slots[j]!.tier == .spot, let a = placedOn[j].firstIndex(where: { $0.node == i }) else { continue }
            if slots[j]!.gpuShareMilli != nil {
                // Sharers are keyed by their first node only (they have one).
                guard a == 0, let g = placedOn[j][a].gpus.first else { continue }
                if slots[j]!.stopping { stopping.insert(g) }
                shared[g, default: []].append(j)
            } else if !slots[j]!.stopping {
                entries.append(([j], placedOn[j][a].gpus))
            }
        }
        for g in shared.keys.sorted() where !stopping.contains(g) { entries.append((shared[g]!, [g])) }
        return entries
    }

    /// How this table differs from `other` (empty when they hold the same jobs and give
    /// the same indexes): for invariant checks.
    public func differences(from other: RunningTable) -> [String] {
        var problems: [String] = []
        let mine = Dictionary(uniqueKeysWithValues: slotOf.map { ($0.key, self[$0.value]) })
        let theirs = Dictionary(uniqueKeysWithValues: other.slotOf.map { ($0.key, other[$0.value]) })
        if mine.keys.sorted() != theirs.keys.sorted() {
            problems.append("running jobs \(mine.count) kept, \(theirs.count) holding GPUs")
            return problems
        }
        for (id, r) in mine where r != theirs[id]! {
            problems.append("the scheduler's view of running job \(id) is stale")
            break
        }
        func ids(_ slots: [Int], _ t: RunningTable) -> [JobID] { slots.map { t[$0].id } }
        if ends.map({ "\(self[$0.job].id)@\($0.at)" }) != other.ends.map({ "\(other[$0.job].id)@\($0.at)" }) {
            problems.append("running work's ends differ")
        }
        if spotByRecency.filter({ !$0.value.isEmpty }).mapValues({ ids($0, self) })
            != other.spotByRecency.filter({ !$0.value.isEmpty }).mapValues({ ids($0, other) })
        {
            problems.append("spot work by recency differs")
        }
        if ids(inReservations, self) != ids(other.inReservations, other) {
            problems.append("work in capacity blocks differs")
        }
        if runningByOrg.mapValues({ [Int64($0.gpus), $0.gpuStartMs] })
            != other.runningByOrg.mapValues({ [Int64($0.gpus), $0.gpuStartMs] })
        {
            problems.append("running GPUs per org differ")
        }
        if outside != other.outside || sold != other.sold { problems.append("GPUs outside blocks or sold differ") }
        let nodesWith = Set(onNode.indices.filter { !onNode[$0].isEmpty }).union(
            other.onNode.indices.filter { !other.onNode[$0].isEmpty })
        for i in nodesWith.sorted() {
            let a = preemptible(on: i).map { e in "\(e.jobs.map { self[$0].id })\(e.gpus)" }
            let b = other.preemptible(on: i).map { e in "\(e.jobs.map { other[$0].id })\(e.gpus)" }
            if a != b {
                problems.append("preemptible work on node \(i) differs")
                break
            }
        }
        return problems
    }
}

extension Dictionary where Key == String, Value == [Int: Int] {
    /// Adds `n` (which may be negative) to the model's fleet-wide (-1) and site counts,
    /// dropping entries that reach zero.
    mutating func adjust(_ n: Int, model: String, site: Int) {
        guard n != 0 else { return }
        // The model's counts changed in place (one lookup), then dropped if left empty.
        if Self.adjust(&self[model, default: [:]], n, site: site) { self[model] = nil }
    }

    /// Adds `n` to `counts` at -1 and at `site`; whether `counts` is left empty.
    private static func adjust(_ counts: inout [Int: Int], _ n: Int, site: Int) -> Bool {
        counts[-1, default: 0] += n
        if counts[-1] == 0 { counts[-1] = nil }
        counts[site, default: 0] += n
        if counts[site] == 0 { counts[site] = nil }
        return counts.isEmpty
    }
}
