import StratusCore
import StratusScheduler
import Testing

@Suite struct FirstFitSchedulerTests {
    typealias N = SchedulingSnapshot.NodeView
    typealias J = SchedulingSnapshot.PendingJob

    func node(_ id: String, free: [Int], model: String = "H100", ready: Bool = true) -> N {
        N(id: NodeID(id), gpuModel: model, schedulable: ready, freeGPUs: free, gpuCount: 8)
    }

    func job(_ id: String, _ gpus: Int, nodes: Int = 1, tier: Tier = .onDemand, model: String = "H100") -> J {
        J(id: JobID(id), tier: tier, gpuModel: model, gpusPerNode: gpus, numNodes: nodes)
    }

    let s = FirstFitScheduler()

    @Test func placesOnFirstNodeWithEnoughFreeGPUsLowestIndicesFirst() {
        let plan = s.plan(
            .init(nodes: [node("a", free: [5, 6, 7]), node("b", free: Array(0..<8))], pending: [job("j1", 4), job("j2", 2)]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["j1", "j2"])
        #expect(plan.placements[0].nodes == [NodeAssignment(node: "b", gpus: [0, 1, 2, 3])])
        #expect(plan.placements[1].nodes == [NodeAssignment(node: "a", gpus: [5, 6])])
        #expect(plan.waits.isEmpty)
    }

    @Test func gangIsAllOrNothing() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: Array(0..<8)), node("b", free: [0, 1])],
                pending: [job("big", 8, nodes: 2), job("small", 2)]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["small"])
        #expect(plan.placements[0].nodes[0].node == "a")
        #expect(plan.waits.map(\.job) == ["big"])
        #expect(plan.waits[0].reason.contains("needs 2 node(s) with 8 free H100"))
    }

    @Test func higherTiersGoFirstThenSubmissionOrder() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: Array(0..<8))],
                pending: [job("spot", 8, tier: .spot), job("od1", 4), job("int", 4, tier: .internal), job("od2", 4)]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["int", "od1"])
        #expect(Set(plan.waits.map(\.job)) == ["spot", "od2"])
    }

    @Test func skipsUnschedulableNodesAndOtherModels() {
        let plan = s.plan(
            .init(
                nodes: [node("a", free: Array(0..<8), ready: false), node("b", free: Array(0..<8), model: "B200")],
                pending: [job("j", 1), job("k", 1, model: "GB200")]),
            now: .zero)
        #expect(plan.placements.isEmpty)
        #expect(plan.waits.first { $0.job == "k" }?.reason == "capacity: no GB200 nodes in the fleet")
    }

    @Test func samePlanForSameInputs() {
        let snap = SchedulingSnapshot(
            nodes: (0..<20).map { node("n\($0)", free: Array(0..<($0 % 9))) },
            pending: (0..<30).map { job("j\($0)", 1 + $0 % 8, tier: $0 % 3 == 0 ? .spot : .onDemand) })
        #expect(s.plan(snap, now: .zero) == s.plan(snap, now: .zero))
    }
}
