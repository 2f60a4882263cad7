import StratusCore
import Testing

@testable import StratusScheduler

/// The capacity index is kept incrementally; after any sequence of takes, gives and
/// holds it must equal an index built from scratch from the same free GPUs.
@Suite struct CapacityIndexTests {
    struct Fleet {
        var nodes: [SchedulingSnapshot.NodeView]
        var free: [Set<Int>]
        var held: [Int: [Int: JobID]] = [:]

        func views() -> [SchedulingSnapshot.NodeView] {
            nodes.enumerated().map { i, n in
                .init(
                    id: n.id, gpuModel: n.gpuModel, schedulable: n.schedulable, freeGPUs: free[i].sorted(),
                    gpuCount: n.gpuCount, rack: n.rack, site: n.site)
            }
        }
    }

    static func randomFleet(_ rng: inout SeededRandom) -> Fleet {
        var nodes: [SchedulingSnapshot.NodeView] = []
        var free: [Set<Int>] = []
        for rack in 0..<Int.random(in: 1...6, using: &rng) {
            let model = Bool.random(using: &rng) ? "H100" : "GB200"
            let gpus = model == "H100" ? 8 : 4
            let site = Int.random(in: 0...1, using: &rng)
            for n in 0..<Int.random(in: 1...5, using: &rng) {
                let f = Set((0..<gpus).filter { _ in Bool.random(using: &rng) })
                nodes.append(
                    .init(
                        id: NodeID("r\(rack)n\(n)"), gpuModel: model, schedulable: Int.random(in: 0..<8, using: &rng) > 0,
                        freeGPUs: f.sorted(), gpuCount: gpus, rack: rack, site: site))
                free.append(f)
            }
        }
        return Fleet(nodes: nodes, free: free)
    }

    static func expectSame(_ a: CapacityIndex, _ b: CapacityIndex, nodes: Int) {
        #expect(a.pools.count == b.pools.count)
        for (x, y) in zip(a.pools, b.pools) {
            #expect(x.hist == y.hist, "hist of \(x.model)@\(x.site)")
            #expect(x.available == y.available)
            #expect(x.buckets == y.buckets, "buckets of \(x.model)@\(x.site)")
            for list in x.buckets { #expect(Array(list) == Array(list).sorted()) }
        }
        #expect(a.slotAvailable == b.slotAvailable)
        #expect(a.slotHist == b.slotHist)
        for i in 0..<nodes {
            #expect(a.availableCount[i] == b.availableCount[i])
            #expect(a.free[i] == b.free[i])
        }
    }

    @Test(arguments: 0..<25) func incrementalEqualsRebuilt(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        Self.checkIncremental(Self.randomFleet(&rng), steps: 300, &rng)
    }

    /// A fleet large enough that the node arrays span many chunks and a bucket many
    /// chunks of keys (which split and empty as racks move between buckets).
    @Test(arguments: 0..<2) func incrementalEqualsRebuiltOnAFleetOfManyChunks(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var nodes: [SchedulingSnapshot.NodeView] = []
        var free: [Set<Int>] = []
        for rack in 0..<1_500 {
            for n in 0..<2 {
                let f = Set((0..<8).filter { _ in Int.random(in: 0..<4, using: &rng) > 0 })
                nodes.append(
                    .init(
                        id: NodeID("r\(rack)n\(n)"), gpuModel: "H100", schedulable: true, freeGPUs: f.sorted(),
                        gpuCount: 8, rack: rack, site: 0))
                free.append(f)
            }
        }
        Self.checkIncremental(Fleet(nodes: nodes, free: free), steps: 3_000, &rng)
    }

    static func checkIncremental(_ start: Fleet, steps: Int, _ rng: inout SeededRandom) {
        var fleet = start
        var index = CapacityIndex(nodes: fleet.views(), held: [:])
        for step in 0..<steps {
            let i = Int.random(in: 0..<fleet.nodes.count, using: &rng)
            let all = Set(0..<fleet.nodes[i].gpuCount)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                let gpus = fleet.free[i].filter { _ in Bool.random(using: &rng) }.sorted()
                index.take(i, gpus)
                fleet.free[i].subtract(gpus)
                for g in gpus { fleet.held[i]?[g] = nil }
                if fleet.held[i]?.isEmpty == true { fleet.held[i] = nil }
            case 1:
                let gpus = all.subtracting(fleet.free[i]).filter { _ in Bool.random(using: &rng) }.sorted()
                index.give(i, gpus)
                fleet.free[i].formUnion(gpus)
            default:
                guard let g = fleet.free[i].randomElement(using: &rng) else { continue }
                let job = JobID("p\(step)")
                index.hold(i, [g], for: job)
                fleet.held[i, default: [:]][g] = job
            }
            if step % max(10, steps / 10) == 0 {
                Self.expectSame(
                    index, CapacityIndex(nodes: fleet.views(), held: fleet.held), nodes: fleet.nodes.count)
            }
        }
        Self.expectSame(index, CapacityIndex(nodes: fleet.views(), held: fleet.held), nodes: fleet.nodes.count)
    }

    /// The chunked sorted key list behaves as a sorted set through inserts, removals and
    /// moves that split chunks and empty them.
    @Test(arguments: 0..<4) func sortedKeysActAsASortedSet(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let start = (0..<3_000).map { _ in UInt64.random(in: 0..<20_000, using: &rng) }
        var reference = Set(start)
        var keys = SortedKeys(reference.sorted())
        #expect(Array(keys) == reference.sorted())
        for step in 0..<20_000 {
            let key = UInt64.random(in: 0..<20_000, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                keys.insert(key)
                reference.insert(key)
            case 1:
                keys.remove(key)
                reference.remove(key)
            default:
                guard let old = reference.randomElement(using: &rng) else { continue }
                keys.move(old, to: key)
                reference.remove(old)
                reference.insert(key)
            }
            if step % 1_000 == 0 { #expect(Array(keys) == reference.sorted(), "after step \(step)") }
        }
        #expect(Array(keys) == reference.sorted())
        #expect(keys.count == reference.count)
        for key in reference { keys.remove(key) }
        #expect(keys.isEmpty)
        #expect(Array(keys).isEmpty)
    }

    @Test func chunkedArrayReadsWhatWasWritten() {
        var rng = SeededRandom(seed: 7)
        var plain = (0..<1_000).map { _ in Int32.random(in: 0..<100, using: &rng) }
        var chunked = ChunkedArray(plain)
        for _ in 0..<5_000 {
            let i = Int.random(in: 0..<plain.count, using: &rng)
            let v = Int32.random(in: 0..<100, using: &rng)
            plain[i] = v
            chunked[i] = v
        }
        #expect(plain.indices.allSatisfy { chunked[$0] == plain[$0] })
        #expect(chunked == ChunkedArray(plain))
    }
}
