import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// The control plane is a deterministic state machine over its log: rebuilding from the
/// store must give the same state and the same next decisions.
@Suite struct ReplayTests {
    /// A busy history: jobs placed, started, finished, failed, cancelled, and some left queued.
    static func history(_ e: inout Engine) throws {
        var t = Fixture.t0
        for i in 0..<12 {
            t = t.adding(seconds: 7)
            _ = try Fixture.submit(&e, Fixture.spec(1 + i % 8, nodes: 1 + i % 3, tier: i % 4 == 0 ? .spot : .onDemand), at: t)
            try e.schedule(at: t)
        }
        for (id, job) in e.state.jobs.sorted(by: { $0.key < $1.key }) where job.state == .starting {
            for a in job.allocations { try e.execute(.allocationStarted(AllocationStarted(job: id, node: a.node)), at: t) }
        }
        let running = e.state.jobs.keys.sorted().filter { e.state.jobs[$0]?.state == .running }
        for id in running.prefix(2) {
            for a in e.state.jobs[id]!.allocations {
                try e.execute(
                    .allocationExited(AllocationExited(job: id, node: a.node, exitCode: 0, reason: nil)),
                    at: t.adding(seconds: 60))
            }
        }
        if let victim = running.dropFirst(2).first {
            try e.execute(.cancelJob(CancelJob(job: victim, by: "key-1")), at: t.adding(seconds: 61))
        }
        try e.execute(.createProject(CreateProject(org: "acme", name: "research")), at: t)
        try e.execute(.addMember(AddMember(org: "acme", email: "ada@acme.test", role: .viewer)), at: t)
        try e.execute(
            .createKey(CreateKey(org: "acme", role: .member, name: "ci", secretHash: Fixture.hash(2), hint: "sk")), at: t)
        try e.execute(.revokeKey(RevokeKey(id: "key-2")), at: t)
    }

    @Test func restartRebuildsTheSameStateAndTheSameNextPlan() throws {
        let store = MemoryStore()
        var live = try Fixture.engine(store)
        try Self.history(&live)
        #expect(live.state.queue.isEmpty == false, "the history should leave work waiting")
        #expect(live.state.usage.records.isEmpty == false)

        // Restart from a copy of the log, so both engines can go on independently.
        let copy = MemoryStore()
        try copy.append(try store.entries(after: 0))
        var restarted = try Engine(store: copy)
        #expect(restarted.state == live.state)
        let later = Fixture.t0.adding(seconds: 3600)
        // Free some capacity the same way on both, then compare decisions.
        let finishing = live.state.jobs.keys.sorted().filter { live.state.jobs[$0]?.state == .running }
        for id in finishing {
            for a in live.state.jobs[id]!.allocations where !a.isEnded {
                let c = Command.allocationExited(AllocationExited(job: id, node: a.node, exitCode: 0, reason: nil))
                try live.execute(c, at: later)
                try restarted.execute(c, at: later)
            }
        }
        let planLive = live.scheduler.plan(live.state.schedulingSnapshot(), now: later)
        let planRestarted = restarted.scheduler.plan(restarted.state.schedulingSnapshot(), now: later)
        #expect(!planLive.placements.isEmpty)
        #expect(planLive == planRestarted)
    }

    @Test func snapshotPlusTailEqualsFullReplay() throws {
        let store = MemoryStore()
        var e = try Fixture.engine(store)
        try Self.history(&e)
        try e.snapshot()
        _ = try Fixture.submit(&e, Fixture.spec(2), at: Fixture.t0.adding(seconds: 999))
        try e.schedule(at: Fixture.t0.adding(seconds: 999))
        let fromSnapshot = try Recovery.recover(from: store)
        #expect(fromSnapshot == e.state)

        var full = State()
        for entry in try store.entries(after: 0) { try full.apply(entry) }
        #expect(full == e.state)
    }
}
