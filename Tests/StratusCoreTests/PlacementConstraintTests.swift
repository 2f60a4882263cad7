import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Data residency, node labels and site power caps.
@Suite struct PlacementConstraintTests {
    typealias N = SchedulingSnapshot.NodeView
    typealias J = SchedulingSnapshot.PendingJob
    let s = TieredScheduler()
    let all = Array(0..<8)

    /// Two sites: "ams" (eu) and "iad" (us), one node each; H100 at PUE 1.25 draws 875 W a GPU.
    func snapshot(_ jobs: [J], iadBudget: Int64 = 1_000_000, iadUsed: Int64 = 0, labels: [String: String] = [:])
        -> SchedulingSnapshot
    {
        SchedulingSnapshot(
            nodes: [
                N(id: "ams-1", gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 0, site: 0),
                N(id: "iad-1", gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 1, site: 1, labels: labels),
                N(id: "iad-2", gpuModel: "H100", schedulable: true, freeGPUs: all, gpuCount: 8, rack: 1, site: 1, labels: labels),
            ],
            pending: jobs,
            sites: [
                .init(name: "ams", region: "eu", budgetWatts: 1_000_000, usedWatts: 0, pueMilli: 1250),
                .init(name: "iad", region: "us", budgetWatts: iadBudget, usedWatts: iadUsed, pueMilli: 1250),
            ])
    }

    func job(_ id: String, _ gpus: Int = 8, nodes: Int = 1, where placement: PlacementConstraints) -> J {
        J(id: JobID(id), tier: .onDemand, gpuModel: "H100", gpusPerNode: gpus, numNodes: nodes, placement: placement)
    }

    @Test func regionsAndSitesKeepJobsWhereTheyMayRun() {
        let plan = s.plan(
            snapshot([
                job("us", where: .init(regions: ["us"])), job("eu", where: .init(sites: ["ams"])),
                job("eu2", where: .init(regions: ["eu"])),
            ]),
            now: .zero)
        #expect(plan.placements.first { $0.job == "us" }?.nodes.first?.node.rawValue.hasPrefix("iad") == true)
        #expect(plan.placements.first { $0.job == "eu" }?.nodes.first?.node == "ams-1")
        let waiting = plan.waits.first { $0.job == "eu2" }
        #expect(
            waiting?.reasons.contains("placement: 2 of 3 H100 nodes are outside region eu") == true, "\(waiting?.reasons ?? [])")
    }

    @Test func nodeSelectorsMatchLabels() {
        let plan = s.plan(
            snapshot([job("ib", nodes: 2, where: .init(nodeSelector: ["fabric": "ib"]))], labels: ["fabric": "ib"]), now: .zero)
        #expect(Set(plan.placements.first?.nodes.map(\.node) ?? []) == ["iad-1", "iad-2"])
        let none = s.plan(snapshot([job("ib", where: .init(nodeSelector: ["fabric": "ib"]))]), now: .zero)
        #expect(none.waits.first?.reasons.contains("labels: 3 of 3 H100 nodes lack fabric=ib") == true)
    }

    /// A label with a list of values accepts any of them (like Kubernetes' `In`): Alibaba
    /// pods that accept V100M32 or T4 run on either type, never on an A10.
    @Test func nodeSelectorsAcceptAnyOfSeveralValues() throws {
        let types = ["ams-1": "A10", "iad-1": "V100M32", "iad-2": "T4"]
        let base = snapshot([])
        let nodes = base.nodes.map { n in
            N(
                id: n.id, gpuModel: n.gpuModel, schedulable: true, freeGPUs: all, gpuCount: 8, rack: n.rack, site: n.site,
                labels: ["gpu": types[n.id.rawValue]!])
        }
        let either = PlacementConstraints(nodeSelectorAnyOf: ["gpu": ["V100M32", "T4"]])
        let plan = s.plan(
            SchedulingSnapshot(
                nodes: nodes, pending: [job("a", where: either), job("b", where: either), job("c", where: either)],
                sites: base.sites), now: .zero)
        #expect(Set(plan.placements.flatMap { $0.nodes.map(\.node) }) == ["iad-1", "iad-2"])
        #expect(plan.placements.count == 2)
        let waiting = plan.waits.first { $0.job == "c" }
        #expect(
            waiting?.reasons.contains("labels: 1 of 3 H100 nodes lack gpu in (V100M32|T4)") == true, "\(waiting?.reasons ?? [])")
        #expect(either.matches(["gpu": "T4"]) && !either.matches(["gpu": "A10"]) && !either.matches([:]))
        // In a job spec: a list of values is any of them; a list of one is that value.
        let spec = try JobSpec.parse(
            .object([
                (key: "resources", value: .object([(key: "accelerators", value: .string("H100:8"))])),
                (key: "run", value: .string("x")),
                (
                    key: "node_selector",
                    value: .object([
                        (key: "gpu", value: .array([.string("V100M32"), .string("T4")])),
                        (key: "fabric", value: .array([.string("ib")])),
                    ])
                ),
            ]))
        #expect(
            spec.placement == PlacementConstraints(nodeSelector: ["fabric": "ib"], nodeSelectorAnyOf: ["gpu": ["V100M32", "T4"]]))
        #expect(throws: StratusError.self) {
            try JobSpec.parse(
                .object([
                    (key: "resources", value: .object([(key: "accelerators", value: .string("H100:8"))])),
                    (key: "run", value: .string("x")), (key: "node_selector", value: .object([(key: "gpu", value: .array([]))])),
                ]))
        }
    }

    @Test func sitePowerCapsAreNeverExceeded() {
        // iad may draw 9 kW: one 8-GPU placement (7 kW) fits, a second does not.
        let plan = s.plan(
            snapshot([job("a", where: .init(sites: ["iad"])), job("b", where: .init(sites: ["iad"]))], iadBudget: 9000),
            now: .zero)
        #expect(plan.placements.map(\.job) == ["a"])
        let reasons = plan.waits.first { $0.job == "b" }?.reasons ?? []
        #expect(
            reasons.contains {
                $0.hasPrefix("power: 1 H100 nodes with free GPUs are in sites at their power cap (iad at 0.007/0.009 MW)")
            }, "\(reasons)")
        // Each node alone fits in 13 kW, but the 2-node gang (14 kW) does not: it waits.
        let gang = s.plan(snapshot([job("g", nodes: 2, where: .init(sites: ["iad"]))], iadBudget: 13_000), now: .zero)
        #expect(gang.placements.isEmpty)
    }

    @Test func theStateMachineRefusesPlansOverAPowerCap() throws {
        var e = try Engine(store: MemoryStore())
        let t = Timestamp(seconds: 1_800_000_000)
        try e.execute(
            .bootstrap(CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: Fixture.hash(1), hint: "")), at: t)
        var fleet = FleetSpec.demo
        fleet.sites[0].powerBudgetKW = 8  // 8 kW: one node's 8 H100 at PUE 1.25 draw 7 kW
        try e.execute(.applyFleet(fleet), at: t)
        let a = try Fixture.submit(&e, Fixture.spec(8), org: InternalOrg.id, at: t)
        let b = try Fixture.submit(&e, Fixture.spec(8), org: InternalOrg.id, at: t)
        let overCap = Plan(placements: [
            Placement(job: a, nodes: [NodeAssignment(node: "node-1", gpus: Array(0..<8))], reason: ""),
            Placement(job: b, nodes: [NodeAssignment(node: "node-2", gpus: Array(0..<8))], reason: ""),
        ])
        let error = #expect(throws: StratusError.self) { try e.execute(.applyPlan(overCap), at: t) }
        #expect(error?.message.contains("power budget") == true)
        let plan = try e.schedule(at: t)
        #expect(plan.placements.count == 1)
        #expect(e.state.usedWattsBySite()["local-dc1"] == 7000)
    }

    @Test func specsParseConstraintsAndSubmitChecksThem() throws {
        let spec = try JobSpec.parse(
            .object([
                (key: "resources", value: .object([(key: "accelerators", value: .string("H100:8"))])),
                (key: "run", value: .string("x")),
                (key: "regions", value: .array([.string("local")])), (key: "sites", value: .string("local-dc1")),
                (key: "node_selector", value: .object([(key: "fabric", value: .string("ib"))])),
            ]))
        #expect(spec.placement == PlacementConstraints(regions: ["local"], sites: ["local-dc1"], nodeSelector: ["fabric": "ib"]))
        #expect(throws: StratusError.self) {
            try JobSpec.parse(
                .object([
                    (key: "resources", value: .object([(key: "accelerators", value: .string("H100"))])),
                    (key: "run", value: .string("x")),
                    (key: "regions", value: .array([.int(3)])),
                ]))
        }
        var e = try Fixture.engine()
        for (placement, message) in [
            (PlacementConstraints(regions: ["mars"]), "regions: unknown region 'mars'"),
            (PlacementConstraints(sites: ["nowhere"]), "sites: unknown site 'nowhere'"),
            (PlacementConstraints(nodeSelector: ["fabric": "ib"]), "the fleet has 0 where its placement constraints allow"),
        ] {
            var spec = Fixture.spec(8)
            spec.placement = placement
            let error = #expect(throws: StratusError.self) {
                try e.execute(.submitJob(SubmitJob(org: "acme", spec: spec, idempotencyKey: nil, by: "key-1")), at: Fixture.t0)
            }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
    }
}
