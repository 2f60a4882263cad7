import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Internal demand comes first: on-demand sales leave the internal reserve free.
@Suite struct CapacityProtectionTests {
    typealias J = SchedulingSnapshot.PendingJob
    let all = Array(0..<8)
    let t = Timestamp(seconds: 1_000)

    func snapshot(_ pending: [J], reserves: [InternalReserve], running: [SchedulingSnapshot.RunningJob] = [])
        -> SchedulingSnapshot
    {
        SchedulingSnapshot(
            nodes: (0..<4).map {
                .init(
                    id: NodeID("n\($0)"), gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 0, site: $0 / 2)
            },
            pending: pending, running: running,
            sites: [
                .init(name: "a", region: "r", budgetWatts: 1 << 40, usedWatts: 0, pueMilli: 1000),
                .init(name: "b", region: "r", budgetWatts: 1 << 40, usedWatts: 0, pueMilli: 1000),
            ],
            reserves: reserves)
    }

    func job(_ id: String, _ gpus: Int = 8, tier: Tier = .onDemand) -> J {
        J(id: JobID(id), tier: tier, gpuModel: "H100", gpusPerNode: gpus, numNodes: 1, org: "acme", project: "default")
    }

    let fleetReserve = InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: 16)])

    @Test func onDemandLeavesTheReserveSpotAndInternalMayUseIt() {
        let plan = TieredScheduler().plan(
            snapshot(
                [job("od1"), job("od2"), job("od3"), job("spot", tier: .spot), job("int", tier: .internal)],
                reserves: [fleetReserve]),
            now: t)
        // 32 GPUs, 16 reserved: two 8-GPU on-demand jobs fit, the third waits; spot and internal take the rest.
        #expect(Set(plan.placements.map(\.job)) == ["od1", "od2", "spot", "int"])
        let reason = plan.waits.first { $0.job == "od3" }?.reasons.first
        #expect(
            reason
                == "capacity protection: 16 H100 held for internal demand in the fleet (on-demand and reserved hold 16 of 32; needs 8)"
        )
    }

    @Test func siteReservesProtectOnlyTheirSite() {
        let siteA = InternalReserve(gpuModel: "H100", site: "a", series: [.init(from: .zero, gpus: 16)])
        let plan = TieredScheduler().plan(snapshot([job("od1"), job("od2"), job("od3")], reserves: [siteA]), now: t)
        #expect(plan.placements.count == 2)
        #expect(plan.placements.allSatisfy { $0.nodes[0].node == "n2" || $0.nodes[0].node == "n3" }, "site a is held")
    }

    @Test func forecastSeriesStepsOverTime() {
        let forecast = InternalReserve(
            gpuModel: "H100", site: nil,
            series: [.init(from: Timestamp(seconds: 100), gpus: 32), .init(from: Timestamp(seconds: 0), gpus: 0)])
        #expect(forecast.series.map(\.gpus) == [0, 32], "sorted by time")
        #expect(forecast.gpus(at: Timestamp(seconds: 50)) == 0)
        #expect(forecast.gpus(at: Timestamp(seconds: 100)) == 32)
        #expect(
            TieredScheduler().plan(snapshot([job("od")], reserves: [forecast]), now: Timestamp(seconds: 50)).placements.count == 1
        )
        #expect(
            TieredScheduler().plan(snapshot([job("od")], reserves: [forecast]), now: Timestamp(seconds: 150)).placements.isEmpty)
    }

    @Test func onDemandDoesNotPreemptSpotIntoTheReserve() {
        let spot = (0..<4).map { i in
            SchedulingSnapshot.RunningJob(
                id: JobID("s\(i)"), tier: .spot, org: "x", project: "p", startedAt: Timestamp(seconds: Int64(i)),
                allocations: [NodeAssignment(node: NodeID("n\(i)"), gpus: all)], stopping: false)
        }
        var full = snapshot(
            [job("od")], reserves: [InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: 32)])],
            running: spot)
        full = SchedulingSnapshot(
            nodes: full.nodes.map {
                .init(id: $0.id, gpuModel: $0.gpuModel, schedulable: true, freeGPUs: [], gpuCount: 8, rack: 0, site: $0.site)
            },
            pending: full.pending, running: spot, sites: full.sites, reserves: full.reserves)
        #expect(TieredScheduler().plan(full, now: t).preemptions.isEmpty)
        let internalJob = SchedulingSnapshot(
            nodes: full.nodes, pending: [job("int", tier: .internal)], running: spot, sites: full.sites, reserves: full.reserves)
        #expect(
            TieredScheduler().plan(internalJob, now: t).preemptions.count == 1, "internal work reclaims the reserve from spot")
    }

    @Test func theStateMachineValidatesReserves() throws {
        var e = try Fixture.engine()
        for (r, message) in [
            (InternalReserve(gpuModel: "H900", site: nil, series: [.init(from: .zero, gpus: 1)]), "unknown GPU model"),
            (
                InternalReserve(gpuModel: "H100", site: "nowhere", series: [.init(from: .zero, gpus: 1)]),
                "site 'nowhere' not found"
            ),
            (InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: -1)]), "GPUs must be between"),
            (
                InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: 1), .init(from: .zero, gpus: 2)]),
                "two points"
            ),
        ] {
            let error = #expect(throws: StratusError.self) { try e.execute(.setInternalReserve(r), at: Fixture.t0) }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
        try e.execute(
            .setInternalReserve(InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: 56)])),
            at: Fixture.t0)
        _ = try Fixture.submit(&e, Fixture.spec(8))
        _ = try Fixture.submit(&e, Fixture.spec(8))
        #expect(try e.schedule(at: Fixture.t0).placements.count == 1, "64 GPUs, 56 held: one 8-GPU on-demand job")
        try e.execute(.setInternalReserve(InternalReserve(gpuModel: "H100", site: nil, series: [])), at: Fixture.t0)
        #expect(e.state.reserves.isEmpty)
        #expect(try e.schedule(at: Fixture.t0).placements.count == 1)
    }
}
