import Foundation
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStore
import Testing

@testable import StratusControl

@Suite struct StateMachineTests {
    /// Node tables (GPU holders, shares, CPU and memory in use) are stored by slot, in
    /// `nodeOrder`; they encode as dictionaries and decode in ID order. A decoded state equals
    /// the original, puts its tables back in `nodeOrder` before its first change, and then
    /// changes exactly as the original does.
    @Test func aDecodedStateKeepsItsNodeTablesAndChangesTheSame() throws {
        var e = try Fixture.engine()
        // Nodes added out of ID order: "node-0" and "a-node" come after node-1...node-8.
        var more = FleetSpec()
        more.nodes = ["node-0", "a-node"].map {
            FleetSpec.NodeSpec(id: NodeID($0), rack: "rack-a", gpuModel: "H100", gpuCount: 8, labels: [:])
        }
        try e.execute(.applyFleet(more), at: Fixture.t0)
        #expect(e.state.nodeOrder.suffix(2) == ["node-0", "a-node"])
        var fraction = Fixture.spec(1)
        fraction.gpuShareMilli = 500
        var sized = Fixture.spec(2)
        sized.nodeResources = NodeResources(cpuMilli: 4000, memoryMiB: 8192)
        let jobs = try [fraction, sized, Fixture.spec(8, nodes: 8)].map { try Fixture.submit(&e, $0) }
        let plan = try e.schedule(at: Fixture.t0)
        #expect(plan.placements.count == 3)
        for p in plan.placements {
            for a in p.nodes { try e.execute(.allocationStarted(AllocationStarted(job: p.job, node: a.node)), at: Fixture.t0) }
        }
        #expect(!e.state.gpuShares.isEmpty && !e.state.resourcesInUse.isEmpty)
        #expect(e.state.gpuHolders.ids == e.state.nodeOrder && e.state.gpuShares.ids == e.state.nodeOrder)

        let data = try JSONEncoder().encode(e.state)
        var decoded = try JSONDecoder().decode(State.self, from: data)
        #expect(decoded == e.state)
        #expect(decoded.gpuHolders.ids == e.state.nodeOrder.sorted())
        #expect(decoded.gpuShares.dictionary == e.state.gpuShares.dictionary)
        #expect(decoded.resourcesInUse.dictionary == e.state.resourcesInUse.dictionary)
        // The same exits change both the same way (the whole gang ends with its last node).
        var original = e.state
        for p in plan.placements {
            for a in p.nodes {
                let exit = Command.allocationExited(AllocationExited(job: p.job, node: a.node, exitCode: 0, reason: nil))
                let later = Fixture.t0.adding(seconds: 600)
                _ = try original.apply(LogEntry(seq: original.seq + 1, at: later, command: exit))
                _ = try decoded.apply(LogEntry(seq: decoded.seq + 1, at: later, command: exit))
            }
        }
        #expect(decoded == original)
        for table in [decoded.gpuHolders.ids, decoded.gpuShares.ids, decoded.resourcesInUse.ids] {
            #expect(table == decoded.nodeOrder)
        }
        #expect(jobs.allSatisfy { original.jobs[$0]?.state == .succeeded })
        #expect(original.gpuShares.isEmpty && original.resourcesInUse.isEmpty)
        #expect(original.gpuHolders.values.allSatisfy { $0.allSatisfy { $0 == nil } })
    }

    @Test func rejectedCommandsChangeNothingAndAreNotLogged() throws {
        var e = try Fixture.engine()
        let before = e.state
        let logged = try e.store.lastSeq()
        let bad: [Command] = [
            .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(9), idempotencyKey: nil, by: "key-1")),
            .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(8, nodes: 9), idempotencyKey: nil, by: "key-1")),
            .submitJob(
                SubmitJob(
                    org: "acme", spec: JobSpec(name: "t", gpuModel: "B200", gpusPerNode: 1, run: "x"), idempotencyKey: nil,
                    by: "key-1")),
            .submitJob(SubmitJob(org: "nope", spec: Fixture.spec(), idempotencyKey: nil, by: "key-1")),
            .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(project: "missing"), idempotencyKey: nil, by: "key-1")),
            .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(tier: .internal), idempotencyKey: nil, by: "key-1")),
            .createOrg(CreateOrg(id: "acme", displayName: "")),
            .createOrg(CreateOrg(id: "Bad Name", displayName: "")),
            .createProject(CreateProject(org: "ghost", name: "p")),
            .createKey(CreateKey(org: "acme", role: .operatorAdmin, name: "", secretHash: Fixture.hash(9), hint: "")),
            .createKey(CreateKey(org: nil, role: .member, name: "", secretHash: Fixture.hash(9), hint: "")),
            .createKey(CreateKey(org: "acme", role: .member, name: "", secretHash: Fixture.hash(1), hint: "")),
            .addMember(AddMember(org: "acme", email: "not-an-email", role: .member)),
            .cancelJob(CancelJob(job: "job-99", by: "key-1")),
            .allocationStarted(AllocationStarted(job: "job-99", node: "node-1")),
            .applyPlan(Plan(placements: [Placement(job: "job-99", nodes: [], reason: "")])),
        ]
        for command in bad {
            #expect(throws: StratusError.self, "\(command.name)") { try e.execute(command, at: Fixture.t0) }
        }
        #expect(e.state == before)
        #expect(try e.store.lastSeq() == logged)
    }

    @Test func idempotencyKeyReturnsTheSameJobAndRefusesADifferentBody() throws {
        var e = try Fixture.engine()
        let first = try Fixture.submit(&e, Fixture.spec(2), key: "abc")
        let seq = e.state.seq
        let again = try e.execute(
            .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(2), idempotencyKey: "abc", by: "key-1")), at: Fixture.t0)
        #expect(again == .unchanged(first.rawValue))
        #expect(e.state.seq == seq)
        let error = #expect(throws: StratusError.self) {
            try e.execute(
                .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(4), idempotencyKey: "abc", by: "key-1")), at: Fixture.t0)
        }
        #expect(error?.code == .idempotencyMismatch)
        // The same key in another org is another request.
        let other = try Fixture.submit(&e, Fixture.spec(2), org: "internal", key: "abc")
        #expect(other != first)
    }

    /// `retire_jobs` forgets jobs that ended before the given moment, with their
    /// idempotency keys and usage records (whose count and GPU time the usage book keeps);
    /// live and later jobs stay; a moment in the future is refused and changes nothing.
    @Test func retiringForgetsEndedJobsAndKeepsTheirTotals() throws {
        var e = try Fixture.engine()
        let old = try Fixture.submit(&e, Fixture.spec(2), key: "old")
        let live = try Fixture.submit(&e, Fixture.spec(4))
        try e.schedule(at: Fixture.t0)
        for job in [old, live] {
            try e.execute(.allocationStarted(AllocationStarted(job: job, node: "node-1")), at: Fixture.t0)
        }
        try e.execute(
            .allocationExited(AllocationExited(job: old, node: "node-1", exitCode: 0, reason: nil)),
            at: Fixture.t0.adding(seconds: 60))
        let later = try Fixture.submit(&e, Fixture.spec(1), at: Fixture.t0.adding(seconds: 120))
        try e.execute(.cancelJob(CancelJob(job: later, by: "key-1")), at: Fixture.t0.adding(seconds: 120))
        #expect(e.state.jobs[later]?.state == .cancelled)
        let revenue = e.state.billing.ledger.balance(.revenue(.onDemand))

        let future = e.state
        #expect(throws: StratusError.self) {
            try e.execute(
                .retireJobs(RetireJobs(endedBefore: Fixture.t0.adding(seconds: 999))), at: Fixture.t0.adding(seconds: 200))
        }
        #expect(e.state == future)

        let outcome = try e.execute(
            .retireJobs(RetireJobs(endedBefore: Fixture.t0.adding(seconds: 100))), at: Fixture.t0.adding(seconds: 200))
        #expect(outcome == .applied("1"))
        // Nothing more to forget: nothing changes (and nothing is logged).
        let again = try e.execute(
            .retireJobs(RetireJobs(endedBefore: Fixture.t0.adding(seconds: 100))), at: Fixture.t0.adding(seconds: 200))
        #expect(again == .unchanged("0"))
        #expect(e.state.jobs[old] == nil)
        #expect(e.state.jobs[live]?.state == .running && e.state.jobs[later]?.state == .cancelled)
        #expect(e.state.usage.records.isEmpty)
        #expect(e.state.usage.retiredRecords == 1 && e.state.usage.retiredGPUMilliseconds == 2 * 60_000)
        #expect(e.state.billing.ledger.balance(.revenue(.onDemand)) == revenue)
        #expect(e.state.counterProblems().isEmpty)
        // Its idempotency key went with it: the same key makes a new job.
        let reused = try Fixture.submit(&e, Fixture.spec(2), key: "old", at: Fixture.t0.adding(seconds: 200))
        #expect(reused != old)
    }

    @Test func jobLifecycleRecordsUsageOnce() throws {
        var e = try Fixture.engine()
        let job = try Fixture.submit(&e, Fixture.spec(4))
        let plan = try e.schedule(at: Fixture.t0)
        #expect(plan.placements.count == 1)
        #expect(e.state.jobs[job]?.state == .starting)
        #expect(e.state.assignments(for: "node-1").map(\.job) == [job])
        // The placement's event names the node and each GPU taken.
        let placed = try #require(e.state.jobs[job]?.events.last)
        #expect(placed.kind == "placed" && placed.message.hasSuffix(": node-1[0, 1, 2, 3]"), "\(placed.message)")
        #expect(State.describe([NodeAssignment(node: "n-7", gpus: [3, 10, 127])]) == "n-7[3, 10, 127]")
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: "node-1")), at: Fixture.t0.adding(seconds: 1))
        #expect(e.state.jobs[job]?.state == .running)
        let exit = Command.allocationExited(AllocationExited(job: job, node: "node-1", exitCode: 0, reason: nil))
        try e.execute(exit, at: Fixture.t0.adding(seconds: 11))
        #expect(e.state.jobs[job]?.state == .succeeded)
        #expect(e.state.usage.records.count == 1)
        #expect(e.state.usage.records[0].gpuMilliseconds == 4 * 10_000)
        #expect(e.state.gpuHolders["node-1"]!.allSatisfy { $0 == nil })
        // A repeated exit report is a no-op: usage is not counted twice.
        #expect(try e.execute(exit, at: Fixture.t0.adding(seconds: 20)) == .unchanged(job.rawValue))
        #expect(e.state.usage.records.count == 1)
    }

    @Test func aFailedRankStopsTheGangAndFailsTheJob() throws {
        var e = try Fixture.engine()
        let job = try Fixture.submit(&e, Fixture.spec(8, nodes: 2))
        try e.schedule(at: Fixture.t0)
        for n in ["node-1", "node-2"] {
            try e.execute(.allocationStarted(AllocationStarted(job: job, node: NodeID(n))), at: Fixture.t0)
        }
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: "node-2", exitCode: 3, reason: nil)),
            at: Fixture.t0.adding(seconds: 5))
        #expect(e.state.jobs[job]?.allocations.first { $0.node == "node-1" }?.stopRequested == true)
        #expect(e.state.assignments(for: "node-1").first?.stopRequested == true)
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: "node-1", exitCode: nil, reason: "stopped on request")),
            at: Fixture.t0.adding(seconds: 6))
        let final = e.state.jobs[job]!
        #expect(final.state == .failed)
        #expect(final.reason == "exit code 3 on node-2")
        #expect(e.state.usage.records.map(\.gpuMilliseconds).sorted() == [40_000, 48_000])
    }

    @Test func cancelQueuedAndRunningJobs() throws {
        var e = try Fixture.engine()
        let running = try Fixture.submit(&e, Fixture.spec(8, nodes: 8))
        try e.schedule(at: Fixture.t0)
        let queued = try Fixture.submit(&e, Fixture.spec(1))
        try e.schedule(at: Fixture.t0)
        #expect(e.state.jobs[queued]?.state == .queued)
        try e.execute(.cancelJob(CancelJob(job: queued, by: "key-1")), at: Fixture.t0)
        #expect(e.state.jobs[queued]?.state == .cancelled)
        #expect(e.state.queue.isEmpty)
        try e.execute(.cancelJob(CancelJob(job: running, by: "key-1")), at: Fixture.t0)
        #expect(e.state.jobs[running]?.cancelRequested == true)
        #expect(e.state.assignments(for: "node-5").first?.stopRequested == true)
        for i in 1...8 {
            try e.execute(
                .allocationExited(
                    AllocationExited(job: running, node: NodeID("node-\(i)"), exitCode: nil, reason: "stopped before start")),
                at: Fixture.t0)
        }
        #expect(e.state.jobs[running]?.state == .cancelled)
        #expect(e.state.usage.records.isEmpty, "never started, so no GPU time")
        #expect(e.state.schedulingSnapshot().nodes.allSatisfy { $0.freeGPUs.count == 8 })
    }

    @Test func aPlanThatDoubleBooksAGPUIsRefused() throws {
        var e = try Fixture.engine()
        let a = try Fixture.submit(&e, Fixture.spec(4))
        let b = try Fixture.submit(&e, Fixture.spec(4))
        let clash = Plan(placements: [
            Placement(job: a, nodes: [NodeAssignment(node: "node-1", gpus: [0, 1, 2, 3])], reason: ""),
            Placement(job: b, nodes: [NodeAssignment(node: "node-1", gpus: [3, 4, 5, 6])], reason: ""),
        ])
        let before = e.state
        #expect(throws: StratusError.self) { try e.execute(.applyPlan(clash), at: Fixture.t0) }
        #expect(e.state == before)
    }

    @Test func fleetApplyAddsAndUpdatesButCannotMoveBusyNodes() throws {
        var e = try Fixture.engine()
        var more = FleetSpec()
        more.racks = [.init(id: "rack-c", site: "local-dc1")]
        more.nodes = [.init(id: "b-1", rack: "rack-c", gpuModel: "B200", gpuCount: 8, labels: [:])]
        try e.execute(.applyFleet(more), at: Fixture.t0)
        #expect(e.state.nodes["b-1"]?.gpuModel == "B200")
        #expect(e.state.nodeOrder.last == "b-1")
        _ = try Fixture.submit(&e, JobSpec(name: "b", gpuModel: "B200", gpusPerNode: 8, run: "x"))
        try e.schedule(at: Fixture.t0)
        more.nodes[0].gpuCount = 4
        let error = #expect(throws: StratusError.self) { try e.execute(.applyFleet(more), at: Fixture.t0) }
        #expect(error?.code == .failedPrecondition)
        // Resizing an idle node updates what submissions are checked against.
        var idle = FleetSpec()
        idle.nodes = [.init(id: "node-8", rack: "rack-b", gpuModel: "H100", gpuCount: 4, labels: [:])]
        try e.execute(.applyFleet(idle), at: Fixture.t0)
        let wide = #expect(throws: StratusError.self) {
            try e.execute(
                .submitJob(SubmitJob(org: "acme", spec: Fixture.spec(8, nodes: 8), idempotencyKey: nil, by: "key-1")),
                at: Fixture.t0)
        }
        #expect(wide?.message.contains("the fleet has 7") == true, "\(wide?.message ?? "")")
        idle.nodes = [.init(id: "node-8", rack: "rack-b", gpuModel: "H200", gpuCount: 8, labels: [:])]
        try e.execute(.applyFleet(idle), at: Fixture.t0)
        _ = try Fixture.submit(&e, JobSpec(name: "h200", gpuModel: "H200", gpusPerNode: 8, run: "x"))
        var orphan = FleetSpec()
        orphan.nodes = [.init(id: "x", rack: "no-rack", gpuModel: "H100", gpuCount: 8, labels: [:])]
        #expect(throws: StratusError.self) { try e.execute(.applyFleet(orphan), at: Fixture.t0) }
    }

    @Test func principalsSeeOnlyTheirOrg() {
        let member = Principal(key: "k", org: "acme", role: .member)
        let viewer = Principal(key: "k", org: "acme", role: .viewer)
        let op = Principal(key: "k", org: nil, role: .operatorAdmin)
        #expect(member.canRead("acme") && !member.canRead("other"))
        #expect(op.canRead("other"))
        #expect((try? member.requireRead("other", "job", "j")) == nil)
        #expect(throws: StratusError.notFound("job", "j")) { try member.requireRead("other", "job", "j") }
        #expect(throws: StratusError.self) { try viewer.requireWrite("acme", "job", "j") }
        #expect(throws: StratusError.self) { try member.requireAdmin("acme", "project") }
        #expect(throws: Never.self) { try Principal(key: "k", org: "acme", role: .orgAdmin).requireAdmin("acme", "project") }
    }
}

@Suite struct UsageTests {
    func record(_ id: String, gpus: Int = 2, ms: Int64 = 1000, project: String = "acme/default", tier: Tier = .onDemand)
        -> UsageRecord
    {
        UsageRecord(
            id: id, job: JobID(id), org: "acme", project: ProjectID(project), node: "n", gpuModel: "H100", tier: tier,
            gpus: gpus, startedAt: .zero, endedAt: Timestamp(milliseconds: ms))
    }

    @Test func sameIdTwiceCountsOnceDifferentContentIsRefused() throws {
        var meter = UsageMeter()
        #expect(try meter.record(record("a")) == .recorded)
        #expect(try meter.record(record("a")) == .duplicate)
        let error = #expect(throws: StratusError.self) { try meter.record(record("a", gpus: 3)) }
        #expect(error?.code == .idempotencyMismatch)
        #expect(meter.records.count == 1)
    }

    @Test func aRecordAddedAsNewIsFoundByLaterChecks() throws {
        var meter = UsageMeter()
        meter.add(new: record("a"))
        meter.add(new: record("b", ms: 2000))
        #expect(meter.records.map(\.id) == ["a", "b"])
        // Added without a check, but known to the checks that follow.
        #expect(try meter.check(record("a")) == .duplicate)
        #expect(throws: StratusError.self) { try meter.record(record("b", gpus: 1, ms: 2000)) }
        #expect(try meter.record(record("c")) == .recorded)
    }

    @Test func retireForgetsOnlyThePickedKeepsOrderAndStillFindsRepeats() throws {
        var meter = UsageMeter()
        for (k, id) in ["a", "b", "c", "d", "e"].enumerated() {
            _ = try meter.record(record(id, ms: Int64(1000 * (k + 1))))
        }
        // Job "d" ended at 4 s: not before 3.5 s, so it stays although named.
        meter.retire(jobs: ["b", "d", "e"], endedBefore: Timestamp(milliseconds: 3500))
        #expect(meter.records.map(\.id) == ["a", "c", "d", "e"])
        #expect(meter.retiredRecords == 1 && meter.retiredGPUMilliseconds == 2 * 2000)
        meter.retire(jobs: ["a", "e"], endedBefore: Timestamp(milliseconds: 9000))
        #expect(meter.records.map(\.id) == ["c", "d"])
        #expect(meter.retiredRecords == 3 && meter.retiredGPUMilliseconds == 2 * (2000 + 1000 + 5000))
        // A retired id is new again; a kept one is still a repeat, also after decoding.
        #expect(try meter.check(record("a", ms: 1000)) == .recorded)
        var decoded = try JSONDecoder().decode(UsageMeter.self, from: JSONEncoder().encode(meter))
        #expect(decoded == meter)
        #expect(try decoded.record(record("c", ms: 3000)) == .duplicate)
        #expect(throws: StratusError.self) { try decoded.record(record("d", gpus: 1, ms: 4000)) }
        #expect(try decoded.record(record("b", ms: 2000)) == .recorded)
        #expect(decoded.records.map(\.id) == ["c", "d", "b"])
    }

    @Test func groupsExactlyAndIndependentlyOfOrder() throws {
        let records = [
            record("a", ms: 1500), record("b", gpus: 8, ms: 3_600_000, tier: .spot), record("c", project: "acme/research"),
        ]
        let groups = UsageReport.group(records, by: [.project, .tier])
        #expect(groups.map(\.gpuMilliseconds) == [3000, 28_800_000, 2000])
        #expect(UsageReport.group(records.reversed(), by: [.project, .tier]) == groups)
        let total: Int64 = 3000 + 28_800_000 + 2000
        #expect(UsageReport.group(records, by: []).map(\.gpuMilliseconds) == [total])
    }
}
