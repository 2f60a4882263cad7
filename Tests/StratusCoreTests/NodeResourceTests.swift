import StratusControl
import StratusCore
import StratusScheduler
import StratusSimulation
import StratusStore
import Testing

/// CPU and memory as node resources: jobs ask for them per node, nodes declare them, the
/// scheduler never places work where they are short, and the state machine keeps the count.
@Suite struct NodeResourceTests {
    typealias N = SchedulingSnapshot.NodeView
    typealias J = SchedulingSnapshot.PendingJob
    typealias R = SchedulingSnapshot.RunningJob
    let s = TieredScheduler(preemptionNoticeSeconds: 120)
    let all = Array(0..<8)

    func r(_ cpus: Int, _ gib: Int) -> NodeResources { NodeResources(cpuMilli: cpus * 1000, memoryMiB: gib * 1024) }

    func node(_ id: String, free: [Int], resources: NodeResources?, rack: Int = 0) -> N {
        N(
            id: NodeID(id), gpuModel: "H100", schedulable: true, freeGPUs: free, gpuCount: 8, rack: rack,
            freeResources: resources)
    }

    func job(_ id: String, _ gpus: Int, nodes: Int = 1, tier: Tier = .onDemand, _ resources: NodeResources) -> J {
        J(id: JobID(id), tier: tier, gpuModel: "H100", gpusPerNode: gpus, numNodes: nodes, resources: resources)
    }

    // MARK: the scheduler

    /// Backfill's estimate frees what ending work holds: its CPU and memory too, so a job
    /// short of CPU (not of GPUs) gets an estimate and a hold.
    @Test func theStartEstimateFreesTheCPUAndMemoryOfEndingWork() throws {
        let now = Timestamp(seconds: 10_000)
        let snapshot = SchedulingSnapshot(
            nodes: [node("a", free: [4, 5, 6, 7], resources: r(8, 64))],
            pending: [],
            running: [
                .init(
                    id: "r", tier: .onDemand, startedAt: Timestamp(seconds: 9_000),
                    allocations: [NodeAssignment(node: "a", gpus: [0, 1, 2, 3])], stopping: false,
                    expectedEnd: now.adding(seconds: 600), resources: r(56, 448))
            ])
        // 4 GPUs are free now, 8 CPUs are not: it starts when r ends and frees its 56.
        let estimate = try #require(TieredScheduler().earliestStart(job("j", 2, r(16, 32)), in: snapshot, now: now))
        #expect(estimate.at == now.adding(seconds: 600))
        #expect(estimate.nodes.first?.node == "a")
    }

    /// A preemptor's held node keeps its CPU and memory for it too: work behind it does not
    /// take what the preemptor will need when its victims have stopped.
    @Test func aPreemptorsHeldNodeKeepsItsCPUAndMemory() {
        // On "a" the victim still holds GPUs 0-3 and 32 of the 64 CPUs; "p" is held GPUs 0-3
        // and needs 56 CPUs. "q" would fit on "a" now (4 GPUs, 32 CPUs free) but would leave
        // 48 for "p": it goes to "b".
        let p = J(
            id: "p", tier: .onDemand, gpuModel: "H100", gpusPerNode: 4, numNodes: 1,
            nominated: [NodeAssignment(node: "a", gpus: [0, 1, 2, 3])], resources: r(56, 64))
        let victim = R(
            id: "v", tier: .spot, startedAt: .zero, allocations: [NodeAssignment(node: "a", gpus: [0, 1, 2, 3])],
            stopping: true, resources: r(32, 64))
        let plan = TieredScheduler().plan(
            .init(
                nodes: [node("a", free: [4, 5, 6, 7], resources: r(32, 448)), node("b", free: all, resources: r(64, 512))],
                pending: [p, job("q", 2, r(16, 32))], running: [victim]),
            now: Timestamp(seconds: 60))
        #expect(plan.placements.map(\.job) == ["q"])
        #expect(plan.placements.first?.nodes.first?.node == "b")
        #expect(plan.waits.first { $0.job == "p" }?.reason.hasPrefix("preemption: waiting") == true)
    }

    @Test func bestFitSkipsNodesShortOfCPUOrMemory() {
        // "a" is the best fit by GPUs (2 free) but has 4 CPUs; "b" 16 GiB; "c" has enough.
        let nodes = [
            node("a", free: [6, 7], resources: r(4, 512)), node("b", free: [4, 5, 6, 7], resources: r(64, 16)),
            node("c", free: all, resources: r(64, 512)),
        ]
        let plan = s.plan(.init(nodes: nodes, pending: [job("j", 2, r(16, 64))]), now: .zero)
        #expect(plan.placements.first?.nodes.first?.node == "c")
        // Without the request, best fit takes "a" as before.
        let plain = s.plan(.init(nodes: nodes, pending: [job("j", 2, .zero)]), now: .zero)
        #expect(plain.placements.first?.nodes.first?.node == "a")
    }

    @Test func oneRoundNeverOvercommitsANode() {
        // One node with 8 free GPUs and 64 CPUs: two jobs of 40 CPUs cannot both go there.
        let plan = s.plan(
            .init(
                nodes: [node("a", free: all, resources: r(64, 512))],
                pending: [job("first", 1, r(40, 8)), job("second", 1, r(40, 8)), job("small", 1, r(24, 8))]),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["first", "small"])
        let wait = plan.waits.first { $0.job == "second" }
        #expect(
            wait?.reasons.contains("resources: 1 H100 nodes with 1 free GPUs lack 40 CPUs, 8 GiB free") == true,
            "\(wait?.reasons ?? [])")
    }

    @Test func nodesThatDeclareNothingDoNotLimit() {
        let plan = s.plan(
            .init(nodes: [node("a", free: all, resources: nil)], pending: [job("j", 8, r(1000, 4096))]), now: .zero)
        #expect(plan.placements.map(\.job) == ["j"])
    }

    @Test func gangsNeedTheResourcesOnEveryNode() {
        let nodes = [
            node("a", free: all, resources: r(64, 512)), node("b", free: all, resources: r(8, 512)),
            node("c", free: all, resources: r(64, 512), rack: 1),
        ]
        let plan = s.plan(.init(nodes: nodes, pending: [job("g", 8, nodes: 2, r(32, 256))]), now: .zero)
        #expect(Set(plan.placements.first?.nodes.map(\.node) ?? []) == ["a", "c"])
    }

    @Test func preemptionFreesCPUNotOnlyGPUs() {
        // The node has 4 free GPUs but a spot job holds 56 of its 64 CPUs: an on-demand
        // job that needs 32 CPUs preempts it, although GPUs alone would not require it.
        let spot = R(
            id: "spot-1", tier: .spot, startedAt: Timestamp(seconds: 10),
            allocations: [NodeAssignment(node: "a", gpus: [0, 1, 2, 3])], stopping: false, resources: r(56, 64))
        let plan = s.plan(
            .init(
                nodes: [node("a", free: [4, 5, 6, 7], resources: r(8, 448))], pending: [job("od", 4, r(32, 64))],
                running: [spot]),
            now: Timestamp(seconds: 100))
        #expect(plan.placements.isEmpty)
        #expect(plan.preemptions.first?.victims == ["spot-1"])
        #expect(plan.preemptions.first?.target.map(\.node) == ["a"])
    }

    // MARK: parsing

    /// A job document with `resources: {accelerators: H100, <extra>}`.
    func parse(_ extra: [(String, SpecValue)]) throws(StratusError) -> JobSpec {
        try JobSpec.parse(
            .object([
                (
                    key: "resources",
                    value: .object([(key: "accelerators", value: .string("H100"))] + extra.map { (key: $0.0, value: $0.1) })
                ),
                (key: "run", value: .string("x")),
            ]))
    }

    @Test func jobSpecsReadCPUsAndMemory() throws {
        #expect(try parse([("cpus", .int(64)), ("memory", .string("512Gi"))]).nodeResources == r(64, 512))
        #expect(
            try parse([("cpus", .double(0.5)), ("memory", .string("512Mi"))]).nodeResources
                == NodeResources(cpuMilli: 500, memoryMiB: 512))
        #expect(
            try parse([("cpus", .string("250m")), ("memory", .double(1.5))]).nodeResources
                == NodeResources(cpuMilli: 250, memoryMiB: 1536))
        #expect(try parse([("memory", .string("1Ti"))]).nodeResources == NodeResources(cpuMilli: 0, memoryMiB: 1 << 20))
        #expect(try parse([]).nodeResources == nil)
        let bad: [(String, SpecValue)] = [
            ("cpus", .int(0)), ("cpus", .int(-1)), ("cpus", .int(5000)), ("memory", .string("64GB")), ("memory", .int(0)),
            ("cpus", .array([.int(1)])),
        ]
        for (field, value) in bad {
            #expect {
                try parse([(field, value)])
            } throws: { ($0 as? StratusError)?.message.hasPrefix("resources.\(field):") == true }
        }
    }

    @Test func fleetFilesDeclareNodeResources() throws {
        func node(_ fields: [(String, SpecValue)]) -> SpecValue { .object(fields.map { (key: $0.0, value: $0.1) }) }
        let rack = node([
            ("name", .string("k")),
            (
                "nodes",
                .array([
                    node([
                        ("name", .string("n")), ("gpu", .string("H100")), ("count", .int(2)), ("cpus", .int(192)),
                        ("memory", .string("2048Gi")),
                    ]),
                    node([("name", .string("m")), ("gpu", .string("H100"))]),
                ])
            ),
        ])
        let site = node([("name", .string("s")), ("power_mw", .int(1)), ("racks", .array([rack]))])
        let fleet = try FleetSpec.parse(
            node([("regions", .array([node([("name", .string("r")), ("sites", .array([site]))])]))]))
        #expect(fleet.nodes.map(\.resources) == [r(192, 2048), r(192, 2048), nil])
    }

    // MARK: the state machine

    /// The demo fleet with node-1..8 declaring 32 CPUs and 256 GiB.
    func engine() throws -> Engine {
        var e = try Fixture.engine()
        var fleet = FleetSpec.demo
        for i in fleet.nodes.indices { fleet.nodes[i].resources = r(32, 256) }
        try e.execute(.applyFleet(fleet), at: Fixture.t0)
        return e
    }

    func spec(_ gpus: Int, _ resources: NodeResources) -> JobSpec {
        var spec = Fixture.spec(gpus)
        spec.nodeResources = resources
        return spec
    }

    @Test func submitRefusesWhatNoNodeHas() throws {
        var e = try engine()
        #expect {
            try Fixture.submit(&e, spec(1, r(64, 8)))
        } throws: { ($0 as? StratusError)?.message.hasPrefix("resources: 1 H100 nodes with 64 CPUs, 8 GiB each") == true }
        #expect(e.state.queue.isEmpty)
    }

    @Test func placementsCountResourcesUntilTheyEnd() throws {
        var e = try engine()
        let jobs = try (0..<5).map { _ in try Fixture.submit(&e, spec(1, r(20, 100))) }
        let plan = try e.schedule(at: Fixture.t0)
        // 20 of 32 CPUs each: one job per node, five nodes.
        #expect(plan.placements.count == 5)
        #expect(Set(plan.placements.map { $0.nodes[0].node }).count == 5)
        let first = plan.placements[0].nodes[0].node
        #expect(e.state.resourcesInUse[first] == r(20, 100))
        #expect(e.state.freeResources(e.state.nodes[first]!) == r(12, 156))
        try e.execute(.allocationStarted(AllocationStarted(job: jobs[0], node: first)), at: Fixture.t0)
        try e.execute(
            .allocationExited(AllocationExited(job: jobs[0], node: first, exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 60))
        #expect(e.state.resourcesInUse[first] == nil)
        #expect(Invariants.check(e.state, ran: nil, now: Fixture.t0).isEmpty)
        // The same log rebuilds the same state.
        #expect(try Engine(store: e.store).state == e.state)
    }

    @Test func aPlanThatOvercommitsIsRefusedAndChangesNothing() throws {
        var e = try engine()
        let a = try Fixture.submit(&e, spec(1, r(20, 8)))
        let b = try Fixture.submit(&e, spec(1, r(20, 8)))
        let before = e.state
        let plan = Plan(placements: [
            Placement(job: a, nodes: [NodeAssignment(node: "node-1", gpus: [0])], reason: "test"),
            Placement(job: b, nodes: [NodeAssignment(node: "node-1", gpus: [1])], reason: "test"),
        ])
        #expect {
            try e.execute(.applyPlan(plan), at: Fixture.t0)
        } throws: { ($0 as? StratusError)?.message.contains("node-1 has 32 CPUs, 256 GiB free; job \(b) needs") == true }
        #expect(e.state == before)
    }

    // MARK: the simulator

    /// One node of 8 GPUs and 16 CPUs; four pods of 1 GPU and 8 CPUs for 1,000 s, all at
    /// once: two run at a time, so the last two start at 1,000 s and the run ends at 2,000 s.
    @Test func simulatedTracesRespectCPU() throws {
        let start = Timestamp(seconds: 1_798_761_600)
        let pods = try AlibabaTrace.parsePods(
            """
            name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
            p0,8000,1024,1,1000,,LS,Succeeded,0,1000,0
            p1,8000,1024,1,1000,,LS,Succeeded,0,1000,0
            p2,8000,1024,1,1000,,LS,Succeeded,0,1000,0
            p3,8000,1024,1,1000,,LS,Succeeded,0,1000,0
            """, start: start)
        #expect(pods.jobs.map(\.resources) == Array(repeating: NodeResources(cpuMilli: 8000, memoryMiB: 1024), count: 4))
        let fleet = try AlibabaTrace.parseNodes(
            "sn,cpu_milli,memory_mib,gpu,model\nn1,16000,65536,8,V100M32\n", model: "H100")
        #expect(fleet.nodes.map(\.resources) == [NodeResources(cpuMilli: 16000, memoryMiB: 65536)])
        var config = Simulation.Config(fleet: fleet, jobs: pods.jobs)
        config.chaos = true
        var sim = try Simulation(config)
        let summary = try sim.run()
        let od = summary.tiers[Tier.onDemand.rawValue]
        #expect(summary.completed == 4)
        #expect(od?.queueDelaySeconds.p99 == 1000, "\(String(describing: od))")
        #expect(summary.end == start.adding(seconds: 2000).description)
    }
}
