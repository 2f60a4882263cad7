import StratusCore
import StratusScheduler
import Testing

/// One rule per test, on small fleets with readable expectations.
@Suite struct TieredSchedulerTests {
    typealias N = SchedulingSnapshot.NodeView
    typealias J = SchedulingSnapshot.PendingJob
    typealias R = SchedulingSnapshot.RunningJob

    func node(
        _ id: String, free: [Int], model: String = "H100", ready: Bool = true, rack: Int = 0, site: Int = 0, block: Int = -1
    ) -> N {
        N(
            id: NodeID(id), gpuModel: model, schedulable: ready, freeGPUs: free, gpuCount: 8, rack: rack, site: site,
            block: block)
    }

    func job(
        _ id: String, _ gpus: Int, nodes: Int = 1, tier: Tier = .onDemand, model: String = "H100",
        topology: TopologyLevel? = nil, nominated: [NodeAssignment]? = nil
    ) -> J {
        J(
            id: JobID(id), tier: tier, gpuModel: model, gpusPerNode: gpus, numNodes: nodes, topology: topology,
            nominated: nominated)
    }

    func spot(_ id: String, on node: String, gpus: [Int], started: Int64) -> R {
        R(
            id: JobID(id), tier: .spot, startedAt: Timestamp(seconds: started),
            allocations: [NodeAssignment(node: NodeID(node), gpus: gpus)], stopping: false)
    }

    let all = Array(0..<8)
    let s = TieredScheduler(preemptionNoticeSeconds: 120)

    @Test func singleNodeJobsPackOntoTheFullestNodeThatFits() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: all), node("b", free: [4, 5, 6, 7]), node("c", free: [6, 7])], pending: [job("j", 2)]),
            now: .zero)
        #expect(plan.placements.first?.nodes == [NodeAssignment(node: "c", gpus: [6, 7])])
    }

    @Test func tiesGoToTheMostUsedRack() {
        let plan = s.plan(
            .init(
                nodes: [
                    node("a1", free: all, rack: 0), node("a2", free: all, rack: 0), node("b1", free: all, rack: 1),
                    node("b2", free: [0, 1, 2, 3, 4, 5, 6, 7], rack: 1), node("b3", free: [], rack: 1),
                ],
                pending: [job("j", 8)]),
            now: .zero)
        // Rack 0 has 16 free, rack 1 has 16 free too; fall back to inventory order.
        #expect(plan.placements.first?.nodes.first?.node == "a1")
        let packed = s.plan(
            .init(
                nodes: [node("a1", free: all, rack: 0), node("a2", free: all, rack: 0), node("b1", free: all, rack: 1)],
                pending: [job("j", 8)]),
            now: .zero)
        #expect(packed.placements.first?.nodes.first?.node == "b1", "rack 1 is fuller, so the job keeps rack 0 whole")
    }

    @Test func gangsAreAllOrNothing() {
        let plan = s.plan(
            .init(nodes: [node("a", free: all), node("b", free: [0, 1])], pending: [job("big", 8, nodes: 2), job("small", 2)]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["small"])
        #expect(plan.waits.map(\.job) == ["big"])
        #expect(plan.waits[0].reason.contains("needs 2 node(s) with 8 free H100; 1 have that now"))
    }

    @Test func gangsGoIntoTheSmallestRackThatFits() {
        let nodes = [
            node("a1", free: all, rack: 0), node("a2", free: all, rack: 0), node("a3", free: all, rack: 0),
            node("b1", free: all, rack: 1), node("b2", free: all, rack: 1),
        ]
        let plan = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 2)]), now: .zero)
        #expect(plan.placements.first?.nodes.map(\.node) == ["b1", "b2"], "rack 1 fits exactly; rack 0 stays whole")
    }

    @Test func gangsTooBigForARackGoIntoTheSmallestBlockThatFits() {
        // Block 0: racks 0 and 1 (2 + 2 nodes); block 1: racks 2, 3 and 4 (2 + 2 + 2); rack 5 in no block.
        var nodes: [N] = []
        for (rack, block) in [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1), (5, -1)] {
            for k in 0..<2 { nodes.append(node("r\(rack)n\(k)", free: all, rack: rack, block: block)) }
        }
        let four = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 4)]), now: .zero)
        #expect(four.placements.first?.nodes.map(\.node) == ["r0n0", "r0n1", "r1n0", "r1n1"])
        #expect(four.placements.first?.reason.hasPrefix("gang in one block (block #0") == true)
        let five = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 5)]), now: .zero)
        #expect(Set(five.placements.first?.nodes.map { String($0.node.rawValue.prefix(2)) } ?? []) == ["r2", "r3", "r4"])
        // `topology: block` requires one block; a plain gang may span the site.
        let seven = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 7, topology: .block)]), now: .zero)
        #expect(seven.placements.isEmpty)
        #expect(seven.waits.first?.reasons.first == "topology: no block with 7 nodes with 8 free H100 (at most 6 in one block)")
        let spanning = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 7)]), now: .zero)
        #expect(spanning.placements.first?.nodes.count == 7)
    }

    @Test func rackTopologyIsARequirementSiteAllowsSpanning() {
        let nodes = [node("a1", free: all, rack: 0), node("a2", free: all, rack: 0), node("b1", free: all, rack: 1)]
        let required = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 3, topology: .rack)]), now: .zero)
        #expect(required.placements.isEmpty)
        #expect(required.waits.first?.reasons.first == "topology: no rack with 3 nodes with 8 free H100 (at most 2 in one rack)")
        let spanning = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 3)]), now: .zero)
        #expect(spanning.placements.first?.nodes.count == 3)
    }

    @Test func gangsNeverSpanSites() {
        let nodes = [node("a", free: all, rack: 0, site: 0), node("b", free: all, rack: 1, site: 1)]
        let plan = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 2)]), now: .zero)
        #expect(plan.placements.isEmpty)
        #expect(plan.waits.first?.reasons.first?.hasPrefix("topology: no site with 2 nodes") == true)
    }

    @Test func higherTiersGoFirstThenSubmissionOrder() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: all)],
                pending: [job("spot", 8, tier: .spot), job("od1", 4), job("int", 4, tier: .internal), job("od2", 4)]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["int", "od1"])
        #expect(Set(plan.waits.map(\.job)) == ["spot", "od2"])
        #expect(plan.waits.first { $0.job == "spot" }?.reasons.last == "tier: spot work never preempts")
    }

    @Test func unschedulableNodesAndMissingModelsAreReasons() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: all, ready: false), node("b", free: all, model: "B200")],
                pending: [job("j", 1), job("k", 1, model: "GB200")]),
            now: .zero)
        #expect(plan.placements.isEmpty)
        #expect(plan.waits.first { $0.job == "k" }?.reason == "capacity: no GB200 nodes in the fleet")
        #expect(plan.waits.first { $0.job == "j" }?.reasons.contains("nodes: 1 of 1 H100 nodes are cordoned or down") == true)
    }

    @Test func preemptsTheFewestMostRecentlyStartedSpotJobs() throws {
        let nodes = [node("a", free: [], rack: 0), node("b", free: [], rack: 0)]
        let running = [
            spot("old-a", on: "a", gpus: [0, 1, 2, 3], started: 100), spot("new-a", on: "a", gpus: [4, 5, 6, 7], started: 300),
            spot("b1", on: "b", gpus: [0, 1], started: 200), spot("b2", on: "b", gpus: [2, 3, 4, 5, 6, 7], started: 250),
        ]
        let plan = s.plan(.init(nodes: nodes, pending: [job("od", 4)], running: running), now: .zero)
        #expect(plan.placements.isEmpty)
        let p = try #require(plan.preemptions.first)
        #expect(p.victims == ["new-a"], "one victim suffices; of the single victims, the most recently started")
        #expect(p.target == [NodeAssignment(node: "a", gpus: [4, 5, 6, 7])])
        #expect(p.noticeSeconds == 120)
        #expect(plan.waits.first?.reasons.first?.hasPrefix("preemption: stopping 1 spot job(s)") == true)
    }

    @Test func neverPreemptsMoreThanNeededAndUsesFreeGPUsFirst() {
        let nodes = [node("a", free: [0, 1, 2], rack: 0)]
        let running = [spot("s1", on: "a", gpus: [3, 4], started: 1), spot("s2", on: "a", gpus: [5, 6, 7], started: 2)]
        let plan = s.plan(.init(nodes: nodes, pending: [job("od", 5)], running: running), now: .zero)
        #expect(plan.preemptions.first?.victims == ["s2"])
        #expect(plan.preemptions.first?.target.first?.gpus == [0, 1, 2, 5, 6])
    }

    @Test func nothingPreemptsOnDemandOrInternalWorkAndSpotNeverPreempts() {
        let nodes = [node("a", free: [])]
        let onDemand = R(
            id: "od", tier: .onDemand, startedAt: .zero, allocations: [NodeAssignment(node: "a", gpus: all)], stopping: false)
        let plan = s.plan(.init(nodes: nodes, pending: [job("int", 8, tier: .internal)], running: [onDemand]), now: .zero)
        #expect(plan.preemptions.isEmpty)
        let spotRunning = [spot("s", on: "a", gpus: all, started: 1)]
        let bySpot = s.plan(.init(nodes: nodes, pending: [job("s2", 8, tier: .spot)], running: spotRunning), now: .zero)
        #expect(bySpot.preemptions.isEmpty)
    }

    @Test func oneVictimIsNotPreemptedTwiceInARound() {
        let nodes = [node("a", free: [])]
        let plan = s.plan(
            .init(nodes: nodes, pending: [job("od1", 8), job("od2", 8)], running: [spot("s", on: "a", gpus: all, started: 1)]),
            now: .zero)
        #expect(plan.preemptions.map(\.job) == ["od1"])
        #expect(plan.waits.first { $0.job == "od2" } != nil)
    }

    @Test func gangPreemptionFreesWholeNodesInOneDomain() throws {
        let nodes = [node("a", free: [], rack: 0), node("b", free: all, rack: 0), node("c", free: [], rack: 1)]
        let running = [spot("sa", on: "a", gpus: all, started: 5), spot("sc", on: "c", gpus: all, started: 9)]
        let plan = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 2, topology: .rack)], running: running), now: .zero)
        let p = try #require(plan.preemptions.first)
        #expect(p.victims == ["sa"], "only rack 0 can hold the gang with one victim and a free node")
        #expect(Set(p.target.map(\.node)) == ["a", "b"])
    }

    @Test func nominatedGPUsWaitForTheirJobAndNobodyElseTakesThem() {
        let nominated = [NodeAssignment(node: "a", gpus: [0, 1, 2, 3])]
        // Victims still stopping: GPUs 0-3 not yet free; 4-7 free but other jobs may use them.
        let waiting = s.plan(
            .init(nodes: [node("a", free: [4, 5, 6, 7])], pending: [job("od", 4, nominated: nominated), job("other", 4)]),
            now: .zero)
        #expect(waiting.placements.map(\.job) == ["other"])
        #expect(waiting.placements.first?.nodes.first?.gpus == [4, 5, 6, 7])
        // Freed: a lower-priority job submitted earlier still cannot take the nominated GPUs.
        let freed = s.plan(
            .init(
                nodes: [node("a", free: [0, 1, 2, 3])],
                pending: [job("spot", 4, tier: .spot), job("od", 4, nominated: nominated)]),
            now: .zero)
        #expect(freed.placements.map(\.job) == ["od"])
        #expect(freed.waits.map(\.job) == ["spot"])
    }

    @Test func samePlanForSameInputs() {
        let snap = SchedulingSnapshot(
            nodes: (0..<20).map { node("n\($0)", free: Array(0..<($0 % 9)), rack: $0 / 4) },
            pending: (0..<30).map { job("j\($0)", 1 + $0 % 8, nodes: 1 + $0 % 3, tier: $0 % 3 == 0 ? .spot : .onDemand) },
            running: (0..<5).map { spot("s\($0)", on: "n\($0 * 4)", gpus: [7], started: Int64($0)) })
        #expect(s.plan(snap, now: .zero) == s.plan(snap, now: .zero))
    }
}
