import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStore
import Testing

/// Agent tokens, registration, node loss, drain and cordon in the state machine.
@Suite struct NodeAgentStateTests {
    static func gpus(_ n: Int, node: String) -> [GPUDevice] {
        (0..<n).map { GPUDevice(index: $0, uuid: "GPU-\(node)-\($0)", name: "NVIDIA H100 80GB HBM3", memoryMib: 81559) }
    }

    static func register(_ node: String, gpus: Int = 8, token: AgentTokenID = "at-1", rack: RackID? = "rack-a") -> Command {
        .registerNode(
            RegisterNode(
                node: NodeID(node), token: token, address: "10.0.0.\(node.count)", rack: rack, labels: [:], gpuModel: "H100",
                gpus: Self.gpus(gpus, node: node), version: "test"))
    }

    /// The demo fleet, a fleet-wide token (at-1), and two networked nodes in rack-a.
    static func world() throws -> Engine {
        var e = try Fixture.engine()
        try e.execute(
            .createAgentToken(CreateAgentToken(name: "fleet", node: nil, secretHash: Fixture.hash(100), hint: "sa_")),
            at: Fixture.t0)
        try e.execute(register("gpu-x"), at: Fixture.t0)
        try e.execute(register("gpu-y"), at: Fixture.t0)
        // Only the networked nodes take work, so placements are predictable.
        for i in 1...8 {
            try e.execute(
                .setNodeState(
                    SetNodeState(
                        node: NodeID("node-\(i)"), state: .cordoned, reason: "test", requeue: false, noticeSeconds: 0,
                        by: "key-1")), at: Fixture.t0)
        }
        return e
    }

    @Test func registrationChecksTokensAndWhatTheFleetDeclares() throws {
        var e = try Self.world()
        #expect(e.state.nodes["gpu-x"]?.agent?.gpus.count == 8)
        #expect(e.state.nodes["gpu-x"]?.rack == "rack-a")
        #expect(e.state.agentNodes == ["gpu-x", "gpu-y"])
        try e.execute(
            .createAgentToken(CreateAgentToken(name: "one", node: "gpu-z", secretHash: Fixture.hash(101), hint: "sa_")),
            at: Fixture.t0)
        let before = e.state
        let bad: [(Command, String)] = [
            // A token bound to gpu-z cannot register another node.
            (Self.register("gpu-w", token: "at-2"), "may not register node 'gpu-w'"),
            // A declared node must have the GPUs it was declared with.
            (Self.register("node-1", gpus: 4, rack: nil), "declared with 8 x H100; its agent found 4 x H100"),
            // An undeclared node needs a rack that exists.
            (Self.register("gpu-v", rack: nil), "not in the fleet"),
            (Self.register("gpu-v", rack: "rack-zz"), "rack"),
            (Self.register("gpu-x", rack: "rack-b"), "is in rack 'rack-a'"),
            (Self.register("gpu-v", token: "at-9"), "may not register"),
        ]
        for (command, message) in bad {
            let error = #expect(throws: StratusError.self) { try e.execute(command, at: Fixture.t0) }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
        #expect(e.state == before)
        // Registering again with the same facts changes nothing and logs nothing.
        #expect(try e.execute(Self.register("gpu-x"), at: Fixture.t0) == .unchanged("gpu-x"))
        // A revoked token registers nothing.
        try e.execute(.revokeAgentToken(RevokeAgentToken(id: "at-2")), at: Fixture.t0)
        #expect(throws: StratusError.self) { try e.execute(Self.register("gpu-z", token: "at-2"), at: Fixture.t0) }
        #expect(e.state.activeAgentToken(hash: Fixture.hash(101)) == nil)
        #expect(e.state.activeAgentToken(hash: Fixture.hash(100))?.id == "at-1")
    }

    @Test func aLostNodeEndsItsWorkWhenItWasLastHeardFromAndRequeuesIt() throws {
        var e = try Self.world()
        let t0 = Fixture.t0
        let job = try Fixture.submit(&e, Fixture.spec(8))
        let plan = try e.schedule(at: t0)
        let node = try #require(plan.placements.first?.nodes.first?.node)
        #expect(["gpu-x", "gpu-y"].contains(node.rawValue))
        let started = t0.adding(seconds: 10)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node, attempt: 0)), at: started)
        // Heard from at t0+100, declared lost at t0+150: usage stops at t0+100.
        let lastSeen = t0.adding(seconds: 100)
        try e.execute(.nodeLost(NodeLost(node: node, lastSeen: lastSeen)), at: t0.adding(seconds: 150))
        let lost = try #require(e.state.jobs[job])
        #expect(lost.state == .queued, "requeued by the default retry policy (node_lost)")
        #expect(lost.attempt == 1)
        #expect(lost.reason?.contains("node_lost") == true)
        #expect(lost.events.contains { $0.kind == "node_lost" })
        let record = try #require(e.state.usage.records.last)
        #expect(record.job == job && record.startedAt == started && record.endedAt == lastSeen)
        #expect(record.gpuMilliseconds == 8 * 90_000)
        #expect(e.state.nodes[node]?.lostAt == lastSeen)
        #expect(e.state.gpuHolders[node]?.allSatisfy { $0 == nil } == true)
        // A second loss report changes nothing.
        #expect(
            try e.execute(.nodeLost(NodeLost(node: node, lastSeen: lastSeen)), at: t0.adding(seconds: 151))
                == .unchanged(node.rawValue))
        // The requeued job goes to the other node, never the lost one.
        let replan = try e.schedule(at: t0.adding(seconds: 152))
        let other = try #require(replan.placements.first?.nodes.first?.node)
        #expect(other != node)
        // A late report about the first run is refused: it is over.
        let stale = #expect(throws: StratusError.self) {
            try e.execute(
                .allocationExited(AllocationExited(job: job, node: other, exitCode: 0, reason: nil, attempt: 0)),
                at: t0.adding(seconds: 153))
        }
        #expect(stale?.message.contains("run 1 is over") == true)
        // The node's agent registers again: it is back in service.
        try e.execute(Self.register(node.rawValue), at: t0.adding(seconds: 200))
        #expect(e.state.nodes[node]?.lostAt == nil)
        #expect(e.state.nodes[node]?.isSchedulable == true)
    }

    @Test func withoutRetryALostNodeFailsTheJob() throws {
        var e = try Self.world()
        var spec = Fixture.spec(8)
        spec.retry = .never
        let job = try Fixture.submit(&e, spec)
        let node = try #require(try e.schedule(at: Fixture.t0).placements.first?.nodes.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node)), at: Fixture.t0)
        try e.execute(
            .nodeLost(NodeLost(node: node, lastSeen: Fixture.t0.adding(seconds: 5))), at: Fixture.t0.adding(seconds: 60))
        #expect(e.state.jobs[job]?.state == .failed)
        #expect(e.state.jobs[job]?.reason?.hasPrefix("node_lost: \(node) stopped heartbeating") == true)
    }

    @Test func aGangOnALostNodeStopsItsOtherNodes() throws {
        var e = try Self.world()
        let job = try Fixture.submit(&e, Fixture.spec(8, nodes: 2))
        _ = try e.schedule(at: Fixture.t0)
        for node in ["gpu-x", "gpu-y"] {
            try e.execute(.allocationStarted(AllocationStarted(job: job, node: NodeID(node))), at: Fixture.t0)
        }
        try e.execute(
            .nodeLost(NodeLost(node: "gpu-x", lastSeen: Fixture.t0.adding(seconds: 30))), at: Fixture.t0.adding(seconds: 80))
        let j = try #require(e.state.jobs[job])
        #expect(j.state == .running)
        #expect(j.allocations.first { $0.node == "gpu-y" }?.stopRequested == true, "the surviving rank is stopped")
        #expect(e.state.assignments(for: "gpu-y").first?.stopRequested == true)
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: "gpu-y", exitCode: nil, reason: "stopped", attempt: 0)),
            at: Fixture.t0.adding(seconds: 81))
        #expect(e.state.jobs[job]?.state == .queued)
        #expect(e.state.jobs[job]?.attempt == 1)
    }

    @Test func cordonAndDrain() throws {
        var e = try Self.world()
        let t0 = Fixture.t0
        let job = try Fixture.submit(&e, Fixture.spec(8))
        let node = try #require(try e.schedule(at: t0).placements.first?.nodes.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node)), at: t0)
        let other: NodeID = node == "gpu-x" ? "gpu-y" : "gpu-x"
        try e.execute(
            .setNodeState(
                SetNodeState(node: other, state: .cordoned, reason: nil, requeue: false, noticeSeconds: 0, by: "key-1")),
            at: t0)
        // Cordoned: nothing new lands there.
        let next = try Fixture.submit(&e, Fixture.spec(8))
        #expect(try e.schedule(at: t0).placements.isEmpty)
        // Drain with requeue: the running job gets notice and comes back to the queue.
        try e.execute(
            .setNodeState(
                SetNodeState(node: node, state: .draining, reason: "swap PSU", requeue: true, noticeSeconds: 60, by: "key-1")),
            at: t0.adding(seconds: 100))
        let assignment = try #require(e.state.assignments(for: node).first)
        #expect(assignment.stopRequested && assignment.stopDeadline == t0.adding(seconds: 160))
        #expect(assignment.stopReason?.contains("drained by key-1 (swap PSU)") == true)
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: node, exitCode: nil, reason: "stopped: drained", attempt: 0)),
            at: t0.adding(seconds: 120))
        #expect(e.state.jobs[job]?.state == .queued, "moved: requeued whatever its retry policy")
        #expect(e.state.jobs[job]?.reason?.contains("moved off \(node)") == true)
        #expect(e.state.nodes[node]?.isSchedulable == false)
        // Uncordon the other node: the queued jobs run there, one at a time.
        try e.execute(
            .setNodeState(SetNodeState(node: other, state: .ready, reason: nil, requeue: false, noticeSeconds: 0, by: "key-1")),
            at: t0.adding(seconds: 130))
        let placed = try e.schedule(at: t0.adding(seconds: 130)).placements
        #expect(placed.count == 1 && placed.first?.nodes.first?.node == other)
        _ = next
        // down is not an operator state.
        #expect(throws: StratusError.self) {
            try e.execute(
                .setNodeState(
                    SetNodeState(node: other, state: .down, reason: nil, requeue: false, noticeSeconds: 0, by: "key-1")),
                at: t0)
        }
    }

    @Test func nodeCommandsReplayToTheSameState() throws {
        let store = MemoryStore()
        var e = try Fixture.engine(store)
        try e.execute(
            .createAgentToken(CreateAgentToken(name: "fleet", node: nil, secretHash: Fixture.hash(100), hint: "sa_")),
            at: Fixture.t0)
        try e.execute(Self.register("gpu-x"), at: Fixture.t0)
        let job = try Fixture.submit(&e, Fixture.spec(8))
        _ = try e.schedule(at: Fixture.t0)
        let node = try #require(e.state.jobs[job]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node, attempt: 0)), at: Fixture.t0)
        if node == "gpu-x" {
            try e.execute(
                .nodeLost(NodeLost(node: "gpu-x", lastSeen: Fixture.t0.adding(seconds: 3))), at: Fixture.t0.adding(seconds: 9))
        }
        try e.execute(
            .setNodeState(
                SetNodeState(node: "node-2", state: .draining, reason: nil, requeue: true, noticeSeconds: 5, by: "key-1")),
            at: Fixture.t0.adding(seconds: 10))
        let replayed = try Engine(store: store)
        #expect(replayed.state == e.state)
    }
}
