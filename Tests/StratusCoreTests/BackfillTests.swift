import StratusCore
import StratusScheduler
import Testing

@Suite struct BackfillTests {
    typealias J = SchedulingSnapshot.PendingJob
    let now = Timestamp(seconds: 10_000)

    /// Two nodes: n0 busy until now+600 s, n1 busy with unbounded work.
    func snapshot(_ pending: [J]) -> SchedulingSnapshot {
        SchedulingSnapshot(
            nodes: [
                .init(id: "n0", gpuModel: "H100", schedulable: true, freeGPUs: [4, 5, 6, 7], gpuCount: 8),
                .init(id: "n1", gpuModel: "H100", schedulable: true, freeGPUs: [6, 7], gpuCount: 8),
            ],
            pending: pending,
            running: [
                .init(
                    id: "r0", tier: .onDemand, startedAt: Timestamp(seconds: 9_000),
                    allocations: [NodeAssignment(node: "n0", gpus: [0, 1, 2, 3])],
                    stopping: false, expectedEnd: now.adding(seconds: 600)),
                .init(
                    id: "r1", tier: .onDemand, startedAt: Timestamp(seconds: 9_000),
                    allocations: [NodeAssignment(node: "n1", gpus: [0, 1, 2, 3, 4, 5])],
                    stopping: false),
            ])
    }

    func job(_ id: String, _ gpus: Int, maxDuration: Int64? = nil) -> J {
        J(id: JobID(id), tier: .onDemand, gpuModel: "H100", gpusPerNode: gpus, numNodes: 1, maxDurationSeconds: maxDuration)
    }

    @Test func estimatesTheEarliestStartFromTimeLimits() throws {
        let s = TieredScheduler()
        let big = try #require(s.earliestStart(job("big", 8), in: snapshot([]), now: now))
        #expect(big.at == now.adding(seconds: 600))
        #expect(big.nodes == [NodeAssignment(node: "n0", gpus: Array(0..<8))])
        #expect(s.earliestStart(job("small", 2), in: snapshot([]), now: now)?.at == now, "fits now")
        let n1Only = SchedulingSnapshot(nodes: [snapshot([]).nodes[1]], pending: [], running: [snapshot([]).running[1]])
        #expect(s.earliestStart(job("big", 8), in: n1Only, now: now) == nil, "unbounded work: no estimate")
    }

    @Test func smallJobsBackfillOnlyWhenTheyDoNotDelayTheBigOne() {
        let plan = TieredScheduler().plan(
            snapshot([job("big", 8), job("long", 4), job("short", 4, maxDuration: 300), job("elsewhere", 2)]), now: now)
        // big waits for n0 (in 600 s). long would hold n0's free GPUs past then: it waits.
        // short ends in 300 s: it may use n0. elsewhere fits on n1, which big does not need.
        #expect(Set(plan.placements.map(\.job)) == ["short", "elsewhere"])
        #expect(plan.placements.first { $0.job == "short" }?.nodes.first?.node == "n0")
        let big = plan.waits.first { $0.job == "big" }
        #expect(big?.reasons.last == "backfill: holds 1 node(s) to start by \(now.adding(seconds: 600))")
        let long = plan.waits.first { $0.job == "long" }
        #expect(
            long?.reasons.contains { $0.hasPrefix("backfill: 1 H100 nodes are held for a job ahead of it") } == true,
            "\(long?.reasons ?? [])")
    }
}
