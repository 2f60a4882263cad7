import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

@Suite struct FairShareTests {
    typealias J = SchedulingSnapshot.PendingJob
    let day: Int64 = 20_000  // days since the epoch
    var now: Timestamp { Timestamp(milliseconds: day * 86_400_000 + 43_200_000) }  // noon of that day

    func snapshot(
        _ pending: [J], usage: [OrgID: (weight: Int, ms: [Int64: Int64])], running: [SchedulingSnapshot.RunningJob] = []
    )
        -> SchedulingSnapshot
    {
        SchedulingSnapshot(
            nodes: [.init(id: "n", gpuModel: "H100", schedulable: true, freeGPUs: [0], gpuCount: 8)], pending: pending,
            running: running,
            tenants: usage.mapValues { .init(weight: $0.weight, dailyGPUMilliseconds: $0.ms) })
    }

    func job(_ id: String, org: OrgID, tier: Tier = .onDemand) -> J {
        J(id: JobID(id), tier: tier, gpuModel: "H100", gpusPerNode: 1, numNodes: 1, org: org)
    }

    @Test func theOrgWithLessRecentUsageGoesFirstWithinATier() {
        let usage: [OrgID: (weight: Int, ms: [Int64: Int64])] = [
            "heavy": (1, [day: 100 * 3_600_000]), "light": (1, [day: 3_600_000]),
        ]
        let plan = TieredScheduler().plan(snapshot([job("h1", org: "heavy"), job("l1", org: "light")], usage: usage), now: now)
        #expect(plan.placements.map(\.job) == ["l1"], "one free GPU goes to the lighter org, though it submitted later")
        // Tiers still come first.
        let tiered = TieredScheduler().plan(
            snapshot([job("l1", org: "light", tier: .spot), job("h1", org: "heavy")], usage: usage), now: now)
        #expect(tiered.placements.map(\.job) == ["h1"])
    }

    @Test func weightsScaleEntitlement() {
        // heavy used 100 GPU-hours with weight 200 (score 0.5); light used 1 with weight 1 (score 1).
        let usage: [OrgID: (weight: Int, ms: [Int64: Int64])] = [
            "heavy": (200, [day: 100 * 3_600_000]), "light": (1, [day: 3_600_000]),
        ]
        let plan = TieredScheduler().plan(snapshot([job("l1", org: "light"), job("h1", org: "heavy")], usage: usage), now: now)
        #expect(plan.placements.map(\.job) == ["h1"])
    }

    @Test func usageDecaysWithItsHalfLife() {
        let fs = FairShare(halfLifeSeconds: 7 * 86400)
        let old = fs.standings(snapshot([], usage: ["a": (1, [day - 14: 4 * 3_600_000])]), now: now)
        #expect(abs(old[0].usageGPUHours - 1.0) < 1e-9, "14 days at a 7-day half-life: a quarter remains")
        let fresh = fs.standings(snapshot([], usage: ["a": (1, [day: 4 * 3_600_000])]), now: now)
        #expect(abs(fresh[0].usageGPUHours - 4.0) < 1e-9)
        #expect(abs(fs.pow2(-0.5) - 0.707_106_781_186_547_6) < 1e-12)
        #expect(fs.pow2(-3) == 0.125)
    }

    /// A year of daily usage: each day's decay applied to each org, summed oldest first, so
    /// the total does not depend on the order a dictionary keeps the days in; days older
    /// than the kept decay factors (`decayDaysKept`) count too.
    @Test func decayedUsageIsExactAndIndependentOfDictionaryOrder() {
        let fs = FairShare(halfLifeSeconds: 7 * 86400)
        let history: [(Int64, Int64)] =
            (0..<365).map { (day - Int64($0), Int64(1 + $0 % 7) * 3_600_000) } + [(day - 5000, 1_000_000_000)]
        var small: [Int64: Int64] = [:]
        var large: [Int64: Int64] = [:]
        large.reserveCapacity(100_000)  // another capacity: another iteration order
        for (d, ms) in history { small[d] = ms }
        for (d, ms) in history.reversed() { large[d] = ms }
        #expect(Array(small.keys) != Array(large.keys))
        let a = fs.standings(snapshot([], usage: ["a": (1, small), "b": (1, large)]), now: now)
        #expect(a.count == 2 && a[0].usageGPUHours == a[1].usageGPUHours)
        // The same as each day's term summed oldest first.
        var expected = 0.0
        for (d, ms) in history.sorted(by: { $0.0 < $1.0 }) {
            let age = Double(max(0, now.milliseconds - (d * 86_400_000 + 43_200_000)))
            expected += Double(ms) * fs.pow2(-age / Double(7 * 86_400_000))
        }
        #expect(a[0].usageGPUHours == expected / 3_600_000)
        #expect(a[0].usageGPUHours > 4 * 7 && a[0].usageGPUHours < 4 * 7 * 1.5)
    }

    @Test func runningWorkCountsInFull() {
        let running = SchedulingSnapshot.RunningJob(
            id: "r", tier: .onDemand, org: "busy", startedAt: Timestamp(milliseconds: now.milliseconds - 3_600_000),
            allocations: [NodeAssignment(node: "n", gpus: [0, 1])], stopping: false)
        let rows = FairShare().standings(snapshot([], usage: ["busy": (1, [:]), "idle": (1, [:])], running: [running]), now: now)
        #expect(rows.map(\.org) == ["idle", "busy"])
        #expect(abs(rows[1].usageGPUHours - 2) < 1e-9)
        #expect(rows[1].runningGPUs == 2)
        #expect(abs(rows[1].share - 1) < 1e-9)
    }

    @Test func fifoWithinATenant() {
        let plan = TieredScheduler().plan(
            SchedulingSnapshot(
                nodes: [.init(id: "n", gpuModel: "H100", schedulable: true, freeGPUs: [0, 1], gpuCount: 8)],
                pending: [job("a1", org: "a"), job("b1", org: "b"), job("a2", org: "a")],
                tenants: [
                    "a": .init(weight: 1, dailyGPUMilliseconds: [:]), "b": .init(weight: 1, dailyGPUMilliseconds: [day: 1]),
                ]),
            now: now)
        #expect(plan.placements.map(\.job) == ["a1", "a2"])
    }

    @Test func theStateKeepsExactDailyUsageAndPrunesOldDays() throws {
        var e = try Fixture.engine()
        let id = try Fixture.submit(&e, Fixture.spec(2))
        try e.schedule(at: Fixture.t0)
        try e.execute(.allocationStarted(AllocationStarted(job: id, node: "node-1")), at: Fixture.t0)
        try e.execute(
            .allocationExited(AllocationExited(job: id, node: "node-1", exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 30))
        let day = Fixture.t0.adding(seconds: 30).milliseconds / 86_400_000
        #expect(e.state.usageByOrgDay["acme"] == [day: 60_000])
        // 100 days later, the old day is dropped when new usage arrives.
        let later = Fixture.t0.adding(seconds: 100 * 86400)
        let next = try Fixture.submit(&e, Fixture.spec(1), at: later)
        try e.schedule(at: later)
        try e.execute(.allocationStarted(AllocationStarted(job: next, node: "node-1")), at: later)
        try e.execute(
            .allocationExited(AllocationExited(job: next, node: "node-1", exitCode: 0, reason: nil)), at: later.adding(seconds: 1)
        )
        #expect(e.state.usageByOrgDay["acme"]?.keys.contains(day) == false)
        #expect(e.state.usageByOrgDay["acme"]?.count == 1)
        // Weights are validated and updatable.
        #expect(throws: StratusError.self) { try e.execute(.updateOrg(UpdateOrg(id: "acme", weight: 0)), at: later) }
        try e.execute(.updateOrg(UpdateOrg(id: "acme", weight: 5)), at: later)
        #expect(e.state.orgs["acme"]?.weight == 5)
        #expect(try e.execute(.updateOrg(UpdateOrg(id: "acme", weight: 5)), at: later) == .unchanged("acme"))
    }
}
