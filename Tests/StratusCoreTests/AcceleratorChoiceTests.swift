import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// `accelerators` may list several acceptable GPU models, in order of preference.
@Suite struct AcceleratorChoiceTests {
    func parse(_ accelerators: SpecValue) throws(StratusError) -> JobSpec {
        try JobSpec.parse(
            .object([
                (key: "resources", value: .object([(key: "accelerators", value: accelerators)])),
                (key: "run", value: .string("x")),
            ]))
    }

    @Test func listsAndMappingsParseInOrder() throws {
        let list = try parse(.array([.string("H200:8"), .string("h100:8")]))
        #expect(list.acceptable == [Accelerator(model: "H200", count: 8), Accelerator(model: "H100", count: 8)])
        let map = try parse(.object([(key: "B200", value: .int(4)), (key: "H100", value: .int(8))]))
        #expect(map.gpuModel == "B200" && map.gpusPerNode == 4)
        #expect(map.alternatives == [Accelerator(model: "H100", count: 8)])
        #expect(map.gpusPerNode(on: "H100") == 8)
        #expect(map.gpusPerNode(on: "GB200") == nil)
        #expect(throws: StratusError.self) { try parse(.array([.string("H100:8"), .string("H100:4")])) }
        #expect(throws: StratusError.self) { try parse(.array([])) }
        #expect(throws: StratusError.self) { try parse(.array([.int(8)])) }
    }

    func engineWithB200() throws -> Engine {
        var e = try Fixture.engine()
        var more = FleetSpec()
        more.racks = [.init(id: "rack-c", site: "local-dc1")]
        more.nodes = [.init(id: "b-1", rack: "rack-c", gpuModel: "B200", gpuCount: 8, labels: [:])]
        try e.execute(.applyFleet(more), at: Fixture.t0)
        return e
    }

    @Test func theSchedulerFallsBackToAnAlternativeAndUsageCountsTheModelUsed() throws {
        var e = try engineWithB200()
        // Fill every H100.
        _ = try Fixture.submit(&e, Fixture.spec(8, nodes: 8))
        try e.schedule(at: Fixture.t0)
        let either = JobSpec(
            name: "either", gpuModel: "H100", gpusPerNode: 8, run: "x", alternatives: [Accelerator(model: "B200", count: 4)])
        let id = try Fixture.submit(&e, either)
        let plan = try e.schedule(at: Fixture.t0)
        #expect(plan.placements.first?.job == id)
        #expect(plan.placements.first?.nodes == [NodeAssignment(node: "b-1", gpus: [0, 1, 2, 3])])
        try e.execute(.allocationStarted(AllocationStarted(job: id, node: "b-1")), at: Fixture.t0)
        try e.execute(
            .allocationExited(AllocationExited(job: id, node: "b-1", exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 10))
        let record = try #require(e.state.usage.records.first { $0.job == id })
        #expect(record.gpuModel == "B200")
        #expect(record.gpuMilliseconds == 40_000)
    }

    @Test func submitNeedsOneFeasibleChoiceAndPlansUseOneModel() throws {
        var e = try engineWithB200()
        // 9 H100 per node never fits, but 8 B200 does.
        let ok = JobSpec(
            name: "ok", gpuModel: "H100", gpusPerNode: 9, run: "x", alternatives: [Accelerator(model: "B200", count: 8)])
        let id = try Fixture.submit(&e, ok)
        let never = JobSpec(
            name: "no", gpuModel: "H100", gpusPerNode: 9, run: "x", alternatives: [Accelerator(model: "GB200", count: 4)])
        let error = #expect(throws: StratusError.self) {
            try e.execute(.submitJob(SubmitJob(org: "acme", spec: never, idempotencyKey: nil, by: "key-1")), at: Fixture.t0)
        }
        #expect(error?.message.contains("largest H100 node has 8") == true, "the first choice's reason")
        let mixed = Plan(placements: [
            Placement(job: id, nodes: [NodeAssignment(node: "node-1", gpus: Array(0..<8))], reason: "H100 is not acceptable at 8")
        ])
        #expect(throws: StratusError.self) { try e.execute(.applyPlan(mixed), at: Fixture.t0) }
        #expect(try e.schedule(at: Fixture.t0).placements.first?.nodes.first?.node == "b-1")
    }
}
