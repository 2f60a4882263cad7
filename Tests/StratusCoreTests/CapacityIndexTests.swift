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
            for list in x.buckets { #expect(list == list.sorted()) }
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
        var fleet = Self.randomFleet(&rng)
        var index = CapacityIndex(nodes: fleet.views(), held: [:])
        for step in 0..<300 {
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
            if step % 10 == 0 {
                Self.expectSame(
                    index, CapacityIndex(nodes: fleet.views(), held: fleet.held), nodes: fleet.nodes.count)
            }
        }
        Self.expectSame(index, CapacityIndex(nodes: fleet.views(), held: fleet.held), nodes: fleet.nodes.count)
    }
}
