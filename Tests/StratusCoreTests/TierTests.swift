import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Deployments choose which tiers they offer and in what order.
@Suite struct TierTests {
    @Test func theTierListIsValidatedAndEnforced() throws {
        var e = try Fixture.engine()
        let t0 = Fixture.t0
        for bad in [[Tier.spot, .internal], [.onDemand, .spot], [.internal, .internal], []] {
            #expect(throws: StratusError.self) { try e.execute(.setTiers(SetTiers(tiers: bad)), at: t0) }
        }
        // A tier with live work cannot be dropped.
        let spot = try Fixture.submit(&e, Fixture.spec(8, tier: .spot))
        let error = #expect(throws: StratusError.self) {
            try e.execute(.setTiers(SetTiers(tiers: [.internal, .onDemand])), at: t0)
        }
        #expect(error?.message == "tiers: 1 spot jobs are queued or running")
        try e.execute(.cancelJob(CancelJob(job: spot, by: "key-1")), at: t0)
        try e.execute(.setTiers(SetTiers(tiers: [.internal, .onDemand, .reserved])), at: t0)
        #expect(e.state.tiers == [.internal, .onDemand, .reserved])
        let refused = #expect(throws: StratusError.self) { try Fixture.submit(&e, Fixture.spec(8, tier: .spot)) }
        #expect(refused?.message == "tier: spot is not offered here (tiers: internal, on-demand, reserved)")
        #expect(e.state.schedulingSnapshot().tiers == [.internal, .onDemand, .reserved])
    }

    @Test func theSchedulerFollowsTheConfiguredOrder() {
        let node = SchedulingSnapshot.NodeView(id: "n", gpuModel: "H100", schedulable: true, freeGPUs: Array(0..<8), gpuCount: 8)
        let pending: [SchedulingSnapshot.PendingJob] = [
            .init(id: "r", tier: .reserved, gpuModel: "H100", gpusPerNode: 8, numNodes: 1),
            .init(id: "o", tier: .onDemand, gpuModel: "H100", gpusPerNode: 8, numNodes: 1),
        ]
        let standard = TieredScheduler().plan(.init(nodes: [node], pending: pending), now: .zero)
        #expect(standard.placements.map(\.job) == ["r"])
        let custom = TieredScheduler().plan(
            .init(nodes: [node], pending: pending, tiers: [.internal, .onDemand, .reserved, .spot]), now: .zero)
        #expect(custom.placements.map(\.job) == ["o"])
    }
}
