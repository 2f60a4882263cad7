import StratusCore

/// A set of GPU indices on one node, as bits (a node has at most 128 GPUs).
typealias GPUSet = UInt128

extension GPUSet {
    init(indices: some Sequence<Int>) {
        var set: GPUSet = 0
        for i in indices where i >= 0 && i < 128 { set |= 1 << i }
        self = set
    }

    /// The members, ascending.
    var indices: [Int] { lowest(nonzeroBitCount) }

    /// The `k` lowest members, ascending.
    func lowest(_ k: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(k)
        var rest = self
        while rest != 0, out.count < k {
            let i = rest.trailingZeroBitCount
            out.append(i)
            rest &= rest - 1
        }
        return out
    }
}

/// An array kept in chunks of 256, so that a copy that changes a few elements copies a
/// few small chunks rather than the whole fleet (a scheduling round changes a copy).
struct ChunkedArray<Element: Sendable & Equatable>: Sendable, Equatable {
    private var chunks: [[Element]]

    init(_ elements: [Element]) {
        chunks = stride(from: 0, to: elements.count, by: 256).map { Array(elements[$0..<min($0 + 256, elements.count)]) }
    }

    subscript(i: Int) -> Element {
        get { chunks[i >> 8][i & 255] }
        set { chunks[i >> 8][i & 255] = newValue }
    }
}

/// A sorted set of keys kept in chunks of at most `SortedKeys.chunkLimit`: an insert or
/// a removal shifts, and a copy that changes it copies, one small chunk, not the whole
/// list. Each chunk's last key is also kept in one flat list, so finding a key's chunk
/// reads that list only (not one chunk's buffer per step of the search).
struct SortedKeys: Sequence, Sendable, Equatable {
    static let chunkLimit = 128
    /// Non-empty chunks, each sorted, each chunk's keys below the next one's.
    private var chunks: [[UInt64]] = []
    /// The last (largest) key of each chunk.
    private var lasts: [UInt64] = []

    init(_ sorted: [UInt64]) {
        chunks = stride(from: 0, to: sorted.count, by: Self.chunkLimit / 2).map {
            Array(sorted[$0..<Swift.min($0 + Self.chunkLimit / 2, sorted.count)])
        }
        lasts = chunks.map { $0[$0.count - 1] }
    }

    var isEmpty: Bool { chunks.isEmpty }
    var count: Int { chunks.reduce(0) { $0 + $1.count } }

    /// The chunk that holds `key` or would: the first whose last key is not below it (the
    /// last chunk for a key above them all).
    private func chunk(for key: UInt64) -> Int {
        var lo = 0
        var hi = lasts.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if lasts[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func position(_ key: UInt64, in list: [UInt64]) -> Int {
        var lo = 0
        var hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    mutating func insert(_ key: UInt64) {
        guard !chunks.isEmpty else {
            chunks = [[key]]
            lasts = [key]
            return
        }
        let c = chunk(for: key)
        let at = Self.position(key, in: chunks[c])
        if at < chunks[c].count, chunks[c][at] == key { return }
        chunks[c].insert(key, at: at)
        if key > lasts[c] { lasts[c] = key }
        if chunks[c].count > Self.chunkLimit {
            let half = chunks[c].count / 2
            let upper = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(upper, at: c + 1)
            lasts.insert(upper[upper.count - 1], at: c + 1)
            lasts[c] = chunks[c][half - 1]
        }
    }

    mutating func remove(_ key: UInt64) {
        guard !chunks.isEmpty else { return }
        let c = chunk(for: key)
        let at = Self.position(key, in: chunks[c])
        guard at < chunks[c].count, chunks[c][at] == key else { return }
        if chunks[c].count == 1 {
            chunks.remove(at: c)
            lasts.remove(at: c)
        } else {
            chunks[c].remove(at: at)
            if at == chunks[c].count { lasts[c] = chunks[c][at - 1] }
        }
    }

    /// Replaces `old` (when there) by `new`.
    mutating func move(_ old: UInt64, to new: UInt64) {
        guard old != new else { return }
        remove(old)
        insert(new)
    }

    struct Iterator: IteratorProtocol {
        let chunks: [[UInt64]]
        var c = 0
        var i = 0
        mutating func next() -> UInt64? {
            while c < chunks.count {
                if i < chunks[c].count {
                    defer { i += 1 }
                    return chunks[c][i]
                }
                c += 1
                i = 0
            }
            return nil
        }
    }

    func makeIterator() -> Iterator { Iterator(chunks: chunks) }

    /// The same keys, however they are chunked.
    static func == (a: SortedKeys, b: SortedKeys) -> Bool { Array(a) == Array(b) }
}

/// Free capacity by GPU model and site, summarised per rack and per free-GPU count, so
/// that a decision looks at the few racks that could take it instead of the whole fleet.
///
/// A pool is the schedulable nodes of one GPU model in one site; a slot is one rack's
/// part of a pool. For each pool and each count `f`, `buckets[f]` lists the slots that
/// have a node with exactly `f` available GPUs, ordered by the slot's available GPUs
/// (most used rack first) and then by rack: best fit is the head of the first non-empty
/// bucket at or above the request. Updating a node touches its slot's entries only.
/// GPUs held for a preempting job (nominated) are not available to anyone else.
struct CapacityIndex: Sendable {
    struct Pool: Sendable {
        let model: String
        let site: Int
        /// Largest GPU count of a node in the pool.
        let maxGPUs: Int
        let slots: Range<Int>
        /// Schedulable nodes, in inventory order.
        let nodes: [Int]
        /// Nodes of the model in the site, schedulable or not.
        let total: Int
        let unschedulable: Int
        let allNodes: [Int]
        /// Most nodes in one slot.
        let maxSlotNodes: Int
        /// Slots by block (racks on one spine), for racks that are in one.
        let blocks: [(block: Int, slots: [Int])]
        /// Nodes with exactly f available GPUs, f in 0...maxGPUs.
        var hist: [Int]
        var available: Int
        /// f -> sorted keys (slot's available GPUs << 32 | slot) of slots with a node at f.
        var buckets: [SortedKeys]
        /// L -> the slots with exactly L nodes whose every GPU (`maxGPUs`) is available, L
        /// in 1...maxSlotNodes, as bits (slot - slots.lowerBound): whole-node gangs read
        /// racks from these, in rack order.
        var whole: [[UInt64]]

    }

    struct Slot: Sendable {
        let pool: Int
        let rack: Int
        /// The rack's block, or -1.
        let block: Int
        /// Schedulable nodes, ascending.
        let nodes: [Int]
        /// Where this slot's counts start in `slotHist` (length pool.maxGPUs + 1).
        let histBase: Int
    }

    private(set) var pools: [Pool]
    let slots: [Slot]
    /// Pools of each model, in site order.
    let poolsByModel: [String: [Int]]
    /// Per node: its slot (-1 when unschedulable), free GPUs and available count.
    let nodeSlot: [Int32]
    private(set) var free: ChunkedArray<GPUSet>
    private(set) var availableCount: ChunkedArray<UInt8>
    /// Available GPUs per slot and the slot histograms.
    private(set) var slotAvailable: ChunkedArray<Int32>
    private(set) var slotHist: ChunkedArray<UInt16>
    /// Flat copies of each slot's histogram start and its pool's largest node, for the hot loops.
    let slotHistBase: [Int32]
    let slotMaxGPUs: [UInt8]
    /// GPUs held for a job whose preemption is under way: node -> gpu -> job.
    private(set) var held: [Int: [Int: JobID]] = [:]

    init(nodes: [SchedulingSnapshot.NodeView], held: [Int: [Int: JobID]]) {
        var groups: [String: [Int: [Int: [Int]]]] = [:]  // model -> site -> rack -> nodes
        var all: [String: [Int: [Int]]] = [:]
        for (i, n) in nodes.enumerated() {
            all[n.gpuModel, default: [:]][n.site, default: []].append(i)
            if n.schedulable { groups[n.gpuModel, default: [:]][n.site, default: [:]][n.rack, default: []].append(i) }
        }
        let freeSets = nodes.map { GPUSet(indices: $0.freeGPUs) }
        var counts = [UInt8](repeating: 0, count: nodes.count)
        var nodeSlot = [Int32](repeating: -1, count: nodes.count)
        var pools: [Pool] = []
        var slots: [Slot] = []
        var poolsByModel: [String: [Int]] = [:]
        var slotAvailable: [Int32] = []
        var slotHist: [UInt16] = []
        for i in nodes.indices {
            var avail = freeSets[i]
            for (g, _) in held[i] ?? [:] where g < 128 { avail &= ~(1 << g) }
            counts[i] = UInt8(avail.nonzeroBitCount)
        }
        for model in all.keys.sorted() {
            for site in all[model]!.keys.sorted() {
                let everyNode = all[model]![site]!
                let racks = groups[model]?[site] ?? [:]
                let maxGPUs = everyNode.map { nodes[$0].gpuCount }.max() ?? 0
                let p = pools.count
                let firstSlot = slots.count
                var hist = [Int](repeating: 0, count: maxGPUs + 1)
                var available = 0
                var schedulable: [Int] = []
                for rack in racks.keys.sorted() {
                    let members = racks[rack]!
                    let s = slots.count
                    slots.append(
                        Slot(pool: p, rack: rack, block: nodes[members[0]].block, nodes: members, histBase: slotHist.count))
                    var h = [UInt16](repeating: 0, count: maxGPUs + 1)
                    var sum: Int32 = 0
                    for i in members {
                        nodeSlot[i] = Int32(s)
                        let c = Int(min(counts[i], UInt8(maxGPUs)))
                        h[c] += 1
                        hist[c] += 1
                        sum += Int32(c)
                        available += c
                    }
                    slotHist += h
                    slotAvailable.append(sum)
                    schedulable += members
                }
                var buckets = [[UInt64]](repeating: [], count: maxGPUs + 1)
                for s in firstSlot..<slots.count {
                    let base = slots[s].histBase
                    for f in 1...max(1, maxGPUs) where f <= maxGPUs && slotHist[base + f] > 0 {
                        buckets[f].append(Self.key(slotAvailable[s], s))
                    }
                }
                let maxSlotNodes = racks.values.map(\.count).max() ?? 0
                let words = (slots.count - firstSlot + 63) / 64
                var whole = [[UInt64]](repeating: [UInt64](repeating: 0, count: words), count: maxSlotNodes + 1)
                if maxGPUs > 0 {
                    for s in firstSlot..<slots.count {
                        let c = Int(slotHist[slots[s].histBase + maxGPUs])
                        if c > 0 { whole[c][(s - firstSlot) >> 6] |= 1 << UInt64((s - firstSlot) & 63) }
                    }
                }
                var blocks: [Int: [Int]] = [:]
                for s in firstSlot..<slots.count where slots[s].block >= 0 { blocks[slots[s].block, default: []].append(s) }
                pools.append(
                    Pool(
                        model: model, site: site, maxGPUs: maxGPUs, slots: firstSlot..<slots.count, nodes: schedulable.sorted(),
                        total: everyNode.count, unschedulable: everyNode.count - schedulable.count, allNodes: everyNode,
                        maxSlotNodes: maxSlotNodes,
                        blocks: blocks.keys.sorted().map { ($0, blocks[$0]!) }, hist: hist, available: available,
                        buckets: buckets.map { SortedKeys($0.sorted()) }, whole: whole))
                poolsByModel[model, default: []].append(p)
            }
        }
        // Unschedulable nodes keep their free GPUs (allocations may still end there).
        for i in nodes.indices where nodeSlot[i] < 0 { counts[i] = 0 }
        self.pools = pools
        self.slots = slots
        self.poolsByModel = poolsByModel
        self.nodeSlot = nodeSlot
        self.free = ChunkedArray(freeSets)
        self.availableCount = ChunkedArray(counts)
        self.slotAvailable = ChunkedArray(slotAvailable)
        self.slotHist = ChunkedArray(slotHist)
        self.slotHistBase = slots.map { Int32($0.histBase) }
        self.slotMaxGPUs = slots.map { UInt8(pools[$0.pool].maxGPUs) }
        self.held = held
    }

    static func key(_ available: Int32, _ slot: Int) -> UInt64 { UInt64(UInt32(max(0, available))) << 32 | UInt64(slot) }
    static func slot(of key: UInt64) -> Int { Int(key & 0xFFFF_FFFF) }

    func pool(ofNode i: Int) -> Int? {
        let s = nodeSlot[i]
        return s < 0 ? nil : slots[Int(s)].pool
    }

    /// Nodes of pool `p` with at least `g` available GPUs.
    func nodes(withAtLeast g: Int, in p: Int) -> Int {
        let pool = pools[p]
        guard g <= pool.maxGPUs else { return 0 }
        var n = 0
        for f in max(g, 1)...pool.maxGPUs { n += pool.hist[f] }
        return n
    }

    /// Nodes of slot `s` with at least `g` available GPUs.
    func nodes(withAtLeast g: Int, inSlot s: Int) -> Int {
        let base = Int(slotHistBase[s])
        let maxGPUs = Int(slotMaxGPUs[s])
        guard g <= maxGPUs else { return 0 }
        var n = 0
        for f in max(g, 1)...maxGPUs { n += Int(slotHist[base + f]) }
        return n
    }

    /// Available GPUs of node `i` for `job`: free and not held for another job.
    func available(_ i: Int, for job: JobID) -> GPUSet {
        var set = free[i]
        if let h = held[i] {
            for (g, owner) in h where owner != job && g < 128 { set &= ~(1 << g) }
        }
        return set
    }

    func isFree(_ i: Int, _ gpus: [Int]) -> Bool {
        let want = GPUSet(indices: gpus)
        return free[i] & want == want
    }

    mutating func take(_ i: Int, _ gpus: [Int]) {
        free[i] &= ~GPUSet(indices: gpus)
        if var h = held[i] {
            for g in gpus { h[g] = nil }
            held[i] = h.isEmpty ? nil : h
        }
        recount(i)
    }

    mutating func give(_ i: Int, _ gpus: [Int]) {
        free[i] |= GPUSet(indices: gpus)
        recount(i)
    }

    /// Sets node `i`'s free GPUs (the fleet changed) and moves it in its slot's summaries.
    mutating func setFree(_ i: Int, _ set: GPUSet) {
        free[i] = set
        recount(i)
    }

    /// How this index differs from `other` (empty when they describe the same capacity).
    func differences(from other: CapacityIndex, nodes: Int) -> [String] {
        var out: [String] = []
        if pools.map(\.hist) != other.pools.map(\.hist) || pools.map(\.available) != other.pools.map(\.available) {
            out.append("pool histograms")
        }
        if pools.map(\.buckets) != other.pools.map(\.buckets) { out.append("pool buckets") }
        if pools.map(\.whole) != other.pools.map(\.whole) { out.append("whole-node racks") }
        if slotAvailable != other.slotAvailable || slotHist != other.slotHist { out.append("slot summaries") }
        for i in 0..<nodes where free[i] != other.free[i] || availableCount[i] != other.availableCount[i] {
            out.append("node #\(i)")
            break
        }
        return out
    }

    mutating func hold(_ i: Int, _ gpus: [Int], for job: JobID) {
        var h = held[i] ?? [:]
        for g in gpus { h[g] = job }
        held[i] = h
        recount(i)
    }

    /// Recomputes node `i`'s available count and moves it in its slot's summaries.
    private mutating func recount(_ i: Int) {
        let s = Int(nodeSlot[i])
        guard s >= 0 else { return }
        var avail = free[i]
        if let h = held[i] { for (g, _) in h where g < 128 { avail &= ~(1 << g) } }
        let p = slots[s].pool
        let maxGPUs = pools[p].maxGPUs
        let new = min(avail.nonzeroBitCount, maxGPUs)
        let old = Int(availableCount[i])
        guard new != old else { return }
        availableCount[i] = UInt8(new)
        let base = slots[s].histBase
        let oldKey = Self.key(slotAvailable[s], s)
        let newAvailable = slotAvailable[s] + Int32(new - old)
        let newKey = Self.key(newAvailable, s)
        for f in 1...max(1, maxGPUs) where f <= maxGPUs {
            let before = slotHist[base + f] > 0
            let countAfter = Int(slotHist[base + f]) + (f == new ? 1 : 0) - (f == old ? 1 : 0)
            switch (before, countAfter > 0) {
            case (true, true): pools[p].buckets[f].move(oldKey, to: newKey)
            case (true, false): pools[p].buckets[f].remove(oldKey)
            case (false, true): pools[p].buckets[f].insert(newKey)
            case (false, false): break
            }
        }
        if maxGPUs > 0, old == maxGPUs || new == maxGPUs {
            let before = Int(slotHist[base + maxGPUs])
            let after = before + (new == maxGPUs ? 1 : 0) - (old == maxGPUs ? 1 : 0)
            let k = s - pools[p].slots.lowerBound
            let bit: UInt64 = 1 << UInt64(k & 63)
            if before > 0 { pools[p].whole[before][k >> 6] &= ~bit }
            if after > 0 { pools[p].whole[after][k >> 6] |= bit }
        }
        slotHist[base + old] -= 1
        slotHist[base + new] += 1
        slotAvailable[s] = newAvailable
        pools[p].hist[old] -= 1
        pools[p].hist[new] += 1
        pools[p].available += new - old
    }
}
