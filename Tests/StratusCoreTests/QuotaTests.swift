import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

@Suite struct QuotaTests {
    typealias J = SchedulingSnapshot.PendingJob
    let all = Array(0..<8)

    func snapshot(
        _ pending: [J], quotas: [QuotaScope: Int], used: [QuotaScope: Int] = [:], running: [SchedulingSnapshot.RunningJob] = []
    )
        -> SchedulingSnapshot
    {
        SchedulingSnapshot(
            nodes: [
                .init(id: "eu-1", gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 0, site: 0),
                .init(id: "us-1", gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 1, site: 1),
            ],
            pending: pending, running: running,
            sites: [
                .init(name: "ams", region: "eu", budgetWatts: 1 << 40, usedWatts: 0, pueMilli: 1000),
                .init(name: "iad", region: "us", budgetWatts: 1 << 40, usedWatts: 0, pueMilli: 1000),
            ],
            quotas: quotas, quotaUsed: used)
    }

    func job(_ id: String, _ gpus: Int, project: String = "default", tier: Tier = .onDemand) -> J {
        J(id: JobID(id), tier: tier, gpuModel: "H100", gpusPerNode: gpus, numNodes: 1, org: "acme", project: project)
    }

    let org = QuotaScope(org: "acme")
    let project = QuotaScope(org: "acme", project: "default")
    let s = TieredScheduler()

    @Test func orgAndProjectQuotasAreNeverExceeded() {
        let plan = s.plan(snapshot([job("a", 4), job("b", 4), job("c", 4)], quotas: [org: 8]), now: .zero)
        #expect(plan.placements.map(\.job) == ["a", "b"])
        #expect(plan.waits.first?.reasons.first == "quota: org acme GPUs at 8/8 (needs 4)")
        let projectCapped = s.plan(snapshot([job("a", 6)], quotas: [project: 8], used: [project: 4]), now: .zero)
        #expect(projectCapped.placements.isEmpty)
        #expect(projectCapped.waits.first?.reasons.first == "quota: project acme/default GPUs at 4/8 (needs 6)")
    }

    @Test func modelAndRegionRulesApplyOnlyToTheirScope() {
        let euH100 = QuotaScope(org: "acme", gpuModel: "H100", region: "eu")
        let plan = s.plan(snapshot([job("a", 8), job("b", 8)], quotas: [euH100: 0]), now: .zero)
        #expect(plan.placements.map(\.job) == ["a"])
        #expect(plan.placements.first?.nodes.first?.node == "us-1", "eu is closed to acme's H100 work")
        let b200Only = QuotaScope(org: "acme", gpuModel: "B200")
        #expect(s.plan(snapshot([job("a", 8)], quotas: [b200Only: 0]), now: .zero).placements.count == 1)
    }

    @Test func spotBorrowsIdleProjectQuotaWithinTheOrg() {
        let quotas = [org: 16, project: 4]
        let plan = s.plan(snapshot([job("od", 8), job("spot", 8, tier: .spot)], quotas: quotas), now: .zero)
        #expect(plan.placements.map(\.job) == ["spot"], "on-demand may not exceed its project; spot borrows")
        // Not beyond the org's quota, even for spot.
        let capped = s.plan(snapshot([job("spot", 8, tier: .spot)], quotas: quotas, used: [org: 12]), now: .zero)
        #expect(capped.placements.isEmpty)
    }

    @Test func ownersReclaimBorrowedQuotaByPreemptingTheBorrowersSpotWork() throws {
        let research = QuotaScope(org: "acme", project: "research")
        let borrower = SchedulingSnapshot.RunningJob(
            id: "borrow", tier: .spot, org: "acme", project: "default", startedAt: Timestamp(seconds: 5),
            allocations: [NodeAssignment(node: "eu-1", gpus: all)], stopping: false)
        // default (quota 4) holds 8 by borrowing; research (quota 8) wants its 8; org quota 8 is full.
        let plan = s.plan(
            snapshot(
                [job("mine", 8, project: "research")], quotas: [org: 8, project: 4, research: 8],
                used: [org: 8, project: 8, research: 0],
                running: [borrower]),
            now: .zero)
        let p = try #require(plan.preemptions.first)
        #expect(p.victims == ["borrow"])
        #expect(p.target.isEmpty, "quota is what it lacked; GPUs are not held for it")
        #expect(plan.waits.first?.reasons == ["quota: org acme GPUs at 8/8 (needs 8)", p.reason])
        // A deployment that reclaims by waiting leaves the borrower running.
        let patient = TieredScheduler(quotaReclaim: .wait).plan(
            snapshot(
                [job("mine", 8, project: "research")], quotas: [org: 8, project: 4, research: 8],
                used: [org: 8, project: 8, research: 0], running: [borrower]),
            now: .zero)
        #expect(patient.preemptions.isEmpty)
        #expect(patient.waits.first?.reasons.first == "quota: org acme GPUs at 8/8 (needs 8)")
    }

    @Test func theStateMachineValidatesAndEnforcesQuotas() throws {
        var e = try Fixture.engine()
        for (scope, limit, message) in [
            (QuotaScope(org: "ghost"), 1, "org 'ghost' not found"),
            (QuotaScope(org: "acme", project: "nope"), 1, "project 'acme/nope' not found"),
            (QuotaScope(org: "acme", gpuModel: "H900"), 1, "unknown GPU model"),
            (QuotaScope(org: "acme", region: "mars"), 1, "unknown region"),
            (QuotaScope(org: "acme"), -1, "limit: must be between"),
        ] {
            let error = #expect(throws: StratusError.self) {
                try e.execute(.setQuota(SetQuota(scope: scope, limit: limit)), at: Fixture.t0)
            }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
        try e.execute(.setQuota(SetQuota(scope: QuotaScope(org: "acme"), limit: 8)), at: Fixture.t0)
        let a = try Fixture.submit(&e, Fixture.spec(8))
        let b = try Fixture.submit(&e, Fixture.spec(8))
        let overQuota = Plan(placements: [
            Placement(job: a, nodes: [NodeAssignment(node: "node-1", gpus: all)], reason: ""),
            Placement(job: b, nodes: [NodeAssignment(node: "node-2", gpus: all)], reason: ""),
        ])
        let error = #expect(throws: StratusError.self) { try e.execute(.applyPlan(overQuota), at: Fixture.t0) }
        #expect(error?.message.contains("would exceed the quota of org acme GPUs") == true)
        let plan = try e.schedule(at: Fixture.t0)
        #expect(plan.placements.map(\.job) == [a])
        #expect(e.state.quotaUsage()[QuotaScope(org: "acme")] == 8)
        try e.execute(.setQuota(SetQuota(scope: QuotaScope(org: "acme"), limit: nil)), at: Fixture.t0)
        #expect(e.state.quotas.isEmpty)
        #expect(try e.schedule(at: Fixture.t0).placements.map(\.job) == [b])
    }
}
