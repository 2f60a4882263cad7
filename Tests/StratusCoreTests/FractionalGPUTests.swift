import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusSimulation
import StratusStore
import Testing

/// Jobs on a fraction of one GPU (`accelerators: H100:0.25`): they share a GPU only with
/// work of their own org and tier, never beyond the whole GPU, pay their share of the
/// time; a shared spot GPU is preempted as a unit, and on-demand fractions preempt spot.
@Suite struct FractionalGPUTests {
    typealias N = SchedulingSnapshot.NodeView
    typealias J = SchedulingSnapshot.PendingJob
    typealias R = SchedulingSnapshot.RunningJob
    let s = TieredScheduler(preemptionNoticeSeconds: 120)

    func job(_ id: String, _ milli: Int?, org: OrgID = "acme", tier: Tier = .onDemand, gpus: Int = 1) -> J {
        J(id: JobID(id), tier: tier, gpuModel: "H100", gpusPerNode: gpus, numNodes: 1, org: org, gpuShareMilli: milli)
    }

    // MARK: parsing

    func parse(_ accelerators: String, _ extra: [(String, SpecValue)] = []) throws(StratusError) -> JobSpec {
        try JobSpec.parse(
            .object(
                [
                    (key: "resources", value: .object([(key: "accelerators", value: .string(accelerators))])),
                    (key: "run", value: .string("x")),
                ] + extra.map { (key: $0.0, value: $0.1) }))
    }

    @Test func acceleratorsTakeAFractionOfOneGPU() throws {
        let spec = try parse("H100:0.25")
        #expect(spec.gpuShareMilli == 250 && spec.gpusPerNode == 1 && spec.gpuModel == "H100")
        #expect(try parse("h100:0.5").gpuShareMilli == 500)
        #expect(try parse("H100:1").gpuShareMilli == nil)
        for (text, extra, message) in [
            ("H100:1.5", [], "resources.accelerators: 'H100:1.5': a fraction of a GPU is 0.001 to 0.999"),
            ("H100:0.0", [], "resources.accelerators: 'H100:0.0': a fraction of a GPU is 0.001 to 0.999"),
            ("H100:0.5", [("num_nodes", SpecValue.int(2))], "num_nodes: a fraction of a GPU runs on one node, got 2"),
            ("H100:0.5", [("reservation", .string("res-1"))], "reservation: capacity blocks hold whole GPUs"),
        ] {
            #expect {
                try parse(text, extra)
            } throws: { ($0 as? StratusError)?.message.hasPrefix(message) == true }
        }
    }

    // MARK: the scheduler

    @Test func fractionsOfOneOrgAndTierShareAGPU() {
        let nodes = [N(id: "a", gpuModel: "H100", schedulable: true, freeGPUs: Array(0..<8), gpuCount: 8)]
        let plan = s.plan(
            .init(
                nodes: nodes,
                pending: [
                    job("a1", 500), job("a2", 300), job("b1", 500, org: "other"), job("a3", 300),
                    job("spot", 100, tier: .spot),
                ]),
            now: .zero)
        let on = Dictionary(uniqueKeysWithValues: plan.placements.map { ($0.job.rawValue, $0.nodes[0].gpus) })
        #expect(on["a1"] == [0] && on["a2"] == [0], "0.5 + 0.3 share GPU 0")
        #expect(on["b1"] == [1], "another org never shares acme's GPU")
        #expect(on["a3"] == [2], "0.5 + 0.3 + 0.3 is more than a GPU")
        #expect(on["spot"] == [3], "another tier never shares it either")
    }

    @Test func aSharedGPUIsTakenBestFitAndIsNotFreeForWholeWork() {
        let nodes = [
            N(
                id: "a", gpuModel: "H100", schedulable: true, freeGPUs: Array(2..<8), gpuCount: 8,
                shares: [
                    .init(gpu: 0, org: "acme", tier: .onDemand, freeMilli: 600),
                    .init(gpu: 1, org: "acme", tier: .onDemand, freeMilli: 300),
                ])
        ]
        let plan = s.plan(.init(nodes: nodes, pending: [job("q", 250), job("whole", nil, gpus: 7)]), now: .zero)
        #expect(plan.placements.first { $0.job == "q" }?.nodes[0].gpus == [1], "the share with the least room left")
        #expect(plan.placements.first { $0.job == "whole" } == nil, "6 GPUs are free, not 7")
    }

    @Test func aSharedSpotGPUIsPreemptedAsAUnit() {
        // GPUs 1-7 free; GPU 0 shared by two spot jobs: an 8-GPU on-demand job stops both.
        let nodes = [
            N(
                id: "a", gpuModel: "H100", schedulable: true, freeGPUs: Array(1..<8), gpuCount: 8,
                shares: [.init(gpu: 0, org: "lab", tier: .spot, freeMilli: 0)])
        ]
        let running = ["s1", "s2"].map { id in
            R(
                id: JobID(id), tier: .spot, org: "lab", startedAt: Timestamp(seconds: 5),
                allocations: [NodeAssignment(node: "a", gpus: [0])], stopping: false, gpuShareMilli: 500)
        }
        let plan = s.plan(
            .init(nodes: nodes, pending: [job("big", nil, gpus: 8)], running: running), now: Timestamp(seconds: 60))
        #expect(Set(plan.preemptions.first?.victims ?? []) == ["s1", "s2"])
        #expect(plan.preemptions.first?.target == [NodeAssignment(node: "a", gpus: Array(0..<8))])
    }

    // MARK: the state machine

    func spec(_ milli: Int, tier: Tier = .onDemand) -> JobSpec {
        var spec = Fixture.spec(1, tier: tier)
        spec.gpuShareMilli = milli
        return spec
    }

    @Test func sharesAreKeptPaidForAndReleased() throws {
        var e = try Fixture.engine()
        let a = try Fixture.submit(&e, spec(500))
        let b = try Fixture.submit(&e, spec(500))
        let plan = try e.schedule(at: Fixture.t0)
        #expect(plan.placements.count == 2)
        let node = plan.placements[0].nodes[0].node
        let g = plan.placements[0].nodes[0].gpus[0]
        #expect(plan.placements[1].nodes[0] == NodeAssignment(node: node, gpus: [g]))
        #expect(e.state.gpuShares[node]?[g] == GPUShare(org: "acme", tier: .onDemand, milli: 1000, jobs: [a, b]))
        #expect(e.state.gpuHolders[node]?[g] == nil)
        #expect(!e.state.isFree(node, g) && e.state.busyGPUs(node) == 1)
        #expect(e.state.assignments(for: node).map(\.gpuShareMilli) == [500, 500])
        // A whole-GPU plan on the shared GPU is refused.
        let c = try Fixture.submit(&e, Fixture.spec(1))
        #expect(throws: StratusError.self) {
            try e.execute(
                .applyPlan(
                    Plan(placements: [Placement(job: c, nodes: [NodeAssignment(node: node, gpus: [g])], reason: "t")])),
                at: Fixture.t0)
        }
        // a runs an hour: it pays for half a GPU-hour; the share shrinks to b's.
        for id in [a, b] { try e.execute(.allocationStarted(AllocationStarted(job: id, node: node)), at: Fixture.t0) }
        try e.execute(
            .allocationExited(AllocationExited(job: a, node: node, exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 3600))
        let record = e.state.usage.records.first { $0.job == a }
        #expect(record?.gpuShareMilli == 500 && record?.gpuMilliseconds == 1_800_000)
        #expect(e.state.gpuShares[node]?[g] == GPUShare(org: "acme", tier: .onDemand, milli: 500, jobs: [b]))
        try e.execute(
            .allocationExited(AllocationExited(job: b, node: node, exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 7200))
        #expect(e.state.gpuShares.isEmpty && e.state.isFree(node, g))
        #expect(Invariants.check(e.state, ran: nil, now: Fixture.t0).isEmpty)
        #expect(try Engine(store: e.store).state == e.state)
    }

    @Test func aLostNodeEndsEverySharer() throws {
        var e = try Fixture.engine()
        let jobs = try (0..<3).map { _ in try Fixture.submit(&e, spec(300)) }
        let plan = try e.schedule(at: Fixture.t0)
        let node = plan.placements[0].nodes[0].node
        #expect(e.state.jobs(on: node) == jobs)
        let token = try e.execute(
            .createAgentToken(CreateAgentToken(name: "a", node: nil, secretHash: Fixture.hash(9), hint: "")), at: Fixture.t0)
        let gpus = (0..<8).map { GPUDevice(index: $0, uuid: "gpu-\($0)", name: "H100", memoryMib: 81_920, powerLimitWatts: 700) }
        try e.execute(
            .registerNode(
                RegisterNode(
                    node: node, token: AgentTokenID(token.id), address: "10.0.0.1", rack: nil, labels: [:], gpuModel: "H100",
                    gpus: gpus, version: "test")), at: Fixture.t0)
        try e.execute(.nodeLost(NodeLost(node: node, lastSeen: Fixture.t0)), at: Fixture.t0.adding(seconds: 60))
        #expect(e.state.gpuShares.isEmpty)
        #expect(Invariants.check(e.state, ran: nil, now: Fixture.t0).isEmpty)
    }

    /// Fills the demo fleet (64 H100) with whole-GPU spot work, started at `Fixture.t0`.
    @discardableResult
    func fillWithStartedSpotWork(_ e: inout Engine) throws -> [JobID] {
        let spots = try (0..<8).map { _ in
            try Fixture.submit(&e, JobSpec(name: "s", gpuModel: "H100", gpusPerNode: 8, tier: .spot, run: "x"))
        }
        try e.schedule(at: Fixture.t0)
        for id in spots {
            try e.execute(
                .allocationStarted(AllocationStarted(job: id, node: e.state.jobs[id]!.allocations[0].node)), at: Fixture.t0)
        }
        return spots
    }

    /// On-demand work on a fraction preempts spot work like a job of one GPU: the GPU the
    /// victim frees is held for it, then becomes a GPU it shares (and its org's next
    /// fraction joins it there without preempting again).
    @Test func anOnDemandFractionPreemptsSpotThenSharesTheFreedGPU() throws {
        var e = try Fixture.engine()
        try fillWithStartedSpotWork(&e)
        let t1 = Fixture.t0.adding(seconds: 10)
        let quarter = try Fixture.submit(&e, spec(250), at: t1)
        let plan = try e.schedule(at: t1)
        let p = try #require(plan.preemptions.first { $0.job == quarter })
        #expect(p.victims.count == 1 && p.target.count == 1 && p.target[0].gpus.count == 1)
        let victim = p.victims[0]
        let node = p.target[0].node
        let g = p.target[0].gpus[0]
        #expect(e.state.jobs[victim]!.preemptedBy == quarter && e.state.nominations[quarter] == p.target)
        #expect(plan.waits.first { $0.job == quarter }?.reason.hasPrefix("preemption: stopping 1 spot job") == true)

        // The victim stops; the fraction takes the held GPU as a share.
        for a in e.state.jobs[victim]!.allocations {
            try e.execute(
                .allocationExited(AllocationExited(job: victim, node: a.node, exitCode: nil, reason: "stopped")),
                at: t1.adding(seconds: 30))
        }
        let placed = try e.schedule(at: t1.adding(seconds: 31))
        #expect(placed.placements.map(\.job) == [quarter])
        #expect(placed.placements.first?.nodes == p.target)
        #expect(e.state.nominations[quarter] == nil && e.state.gpuHolders[node]?[g] == nil)
        #expect(e.state.gpuShares[node]?[g] == GPUShare(org: "acme", tier: .onDemand, milli: 250, jobs: [quarter]))

        // The org's next fraction shares that GPU: no second preemption.
        let half = try Fixture.submit(&e, spec(500), at: t1.adding(seconds: 40))
        let next = try e.schedule(at: t1.adding(seconds: 40))
        #expect(next.preemptions.isEmpty)
        #expect(next.placements.first { $0.job == half }?.nodes == [NodeAssignment(node: node, gpus: [g])])
        #expect(e.state.gpuShares[node]?[g]?.milli == 750)
        #expect(Invariants.check(e.state, ran: nil, now: t1.adding(seconds: 40)).isEmpty)
        #expect(try Engine(store: e.store).state == e.state)
    }

    /// Two fractions of one org arrive together on a fleet full of spot work: the first
    /// preempts one GPU, the second waits to share it (no second victim); once the victim
    /// has stopped both run on that GPU.
    @Test func twoWaitingFractionsPreemptOneGPU() throws {
        var e = try Fixture.engine()
        let spots = try fillWithStartedSpotWork(&e)
        let t1 = Fixture.t0.adding(seconds: 10)
        let quarter = try Fixture.submit(&e, spec(250), at: t1)
        let half = try Fixture.submit(&e, spec(500), at: t1)
        let plan = try e.schedule(at: t1)
        #expect(plan.preemptions.count == 1)
        let p = try #require(plan.preemptions.first { $0.job == quarter })
        #expect(p.victims.count == 1 && p.target.count == 1 && p.target[0].gpus.count == 1)
        let node = p.target[0].node
        let g = p.target[0].gpus[0]
        let wait = try #require(plan.waits.first { $0.job == half })
        #expect(wait.reason.contains("preemption: waiting to share GPU \(g) of \(node), held for \(quarter)'s preemption"))
        #expect(e.state.nominations[half] == nil)

        // Still stopping a round later: the second still waits, and nothing more is preempted.
        let again = try e.schedule(at: t1.adding(seconds: 20))
        #expect(again.preemptions.isEmpty)
        #expect(again.waits.first { $0.job == half }?.reason.contains("waiting to share GPU") == true)

        let victim = p.victims[0]
        for a in e.state.jobs[victim]!.allocations {
            try e.execute(
                .allocationExited(AllocationExited(job: victim, node: a.node, exitCode: nil, reason: "stopped")),
                at: t1.adding(seconds: 30))
        }
        let placed = try e.schedule(at: t1.adding(seconds: 31))
        #expect(Set(placed.placements.map(\.job)) == [quarter, half])
        for id in [quarter, half] {
            #expect(placed.placements.first { $0.job == id }?.nodes == [NodeAssignment(node: node, gpus: [g])])
        }
        #expect(e.state.gpuShares[node]?[g]?.milli == 750)
        // One spot job was stopped (and requeued, or preempted for good); the rest run on.
        #expect(spots.filter { e.state.jobs[$0]!.state != .running } == [victim])
        #expect(Invariants.check(e.state, ran: nil, now: t1.adding(seconds: 31)).isEmpty)
        #expect(try Engine(store: e.store).state == e.state)
    }

    /// A fraction of another org does not wait on a GPU held for this org's fraction: it
    /// preempts its own.
    @Test func aHeldGPUWaitsOnlyForItsOwnOrgsFractions() throws {
        let nodes = (0..<2).map { i in
            N(id: NodeID("n\(i)"), gpuModel: "H100", schedulable: true, freeGPUs: [], gpuCount: 1, rack: i, site: 0)
        }
        let running = (0..<2).map { i in
            R(
                id: JobID("s\(i)"), tier: .spot, org: "spotco", startedAt: Timestamp(seconds: i),
                allocations: [NodeAssignment(node: NodeID("n\(i)"), gpus: [0])], stopping: false)
        }
        let pending = [job("a", 250), job("b", 250, org: "other"), job("c", 500)]
        let plan = s.plan(SchedulingSnapshot(nodes: nodes, pending: pending, running: running), now: Timestamp(seconds: 100))
        #expect(Set(plan.preemptions.map(\.job)) == ["a", "b"])
        #expect(plan.waits.first { $0.job == "c" }?.reason.contains("waiting to share GPU 0 of") == true)
    }

    // MARK: the simulator

    /// One node of 1 GPU; four pods of half a GPU for 1,000 s, all at once: two share the
    /// GPU at a time, so the run ends at 2,000 s with the GPU allocated throughout.
    @Test func simulatedPodsShareGPUs() throws {
        let start = Timestamp(seconds: 1_798_761_600)
        let rows = (0..<4).map { "p\($0),1000,1024,1,500,,LS,Succeeded,0,1000,0" }.joined(separator: "\n")
        let pods = try AlibabaTrace.parsePods(AlibabaTrace.podsHeader + "\n" + rows, start: start)
        #expect(pods.fractional == 4)
        let fleet = try AlibabaTrace.parseNodes("sn,cpu_milli,memory_mib,gpu,model\nn1,16000,65536,1,T4\n", model: "H100")
        var config = Simulation.Config(fleet: fleet, jobs: pods.jobs)
        config.chaos = true
        var sim = try Simulation(config)
        let summary = try sim.run()
        #expect(summary.completed == 4)
        #expect(summary.tiers[Tier.onDemand.rawValue]?.queueDelaySeconds.p99 == 1000)
        #expect(summary.end == start.adding(seconds: 2000).description)
        #expect(summary.utilizationBasisPoints == 10_000)
        #expect(summary.ledgerBalanced)
    }
}
