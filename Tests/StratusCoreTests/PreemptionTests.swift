import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Preemption and retry through the state machine.
@Suite struct PreemptionTests {
    /// Fills the demo fleet (64 H100) with spot work, started.
    func fullOfSpot(_ e: inout Engine, retry: RetryPolicy? = nil) throws -> [JobID] {
        var ids: [JobID] = []
        for _ in 0..<8 {
            let spec = JobSpec(name: "s", gpuModel: "H100", gpusPerNode: 8, tier: .spot, run: "x", retry: retry)
            ids.append(try Fixture.submit(&e, spec, at: Fixture.t0))
        }
        try e.schedule(at: Fixture.t0)
        for (n, id) in ids.enumerated() {
            let node = e.state.jobs[id]!.allocations[0].node
            try e.execute(.allocationStarted(AllocationStarted(job: id, node: node)), at: Fixture.t0.adding(seconds: Int64(n)))
        }
        return ids
    }

    func exit(_ e: inout Engine, _ id: JobID, at: Timestamp, code: Int32? = nil, reason: String? = "stopped") throws {
        for a in e.state.jobs[id]!.allocations where !a.isEnded {
            try e.execute(.allocationExited(AllocationExited(job: id, node: a.node, exitCode: code, reason: reason)), at: at)
        }
    }

    @Test func onDemandPreemptsSpotWithNoticeThenRunsOnTheFreedGPUs() throws {
        var e = try Fixture.engine()
        let spots = try fullOfSpot(&e)
        let od = try Fixture.submit(&e, Fixture.spec(8), at: Fixture.t0.adding(seconds: 10))
        let t1 = Fixture.t0.adding(seconds: 10)
        let plan = try e.schedule(at: t1)
        let p = try #require(plan.preemptions.first)
        #expect(p.victims == [spots[7]], "the most recently started spot job")
        let victim = e.state.jobs[spots[7]]!
        #expect(victim.preemptedBy == od)
        #expect(victim.allocations[0].stopDeadline == t1.adding(seconds: Limits.defaultPreemptionNoticeSeconds))
        #expect(victim.events.last?.kind == "preemption_notice")
        #expect(e.state.nominations[od] == p.target)
        let assignment = e.state.assignments(for: victim.allocations[0].node).first!
        #expect(assignment.stopRequested && assignment.stopDeadline != nil)
        #expect(assignment.stopReason == "preempted by \(od)")

        // Next round: still waiting, nobody else preempted, nothing else placed there.
        let again = try e.schedule(at: t1.adding(seconds: 1))
        #expect(again.preemptions.isEmpty)
        #expect(again.waits.first { $0.job == od }?.reason.hasPrefix("preemption: waiting") == true)

        // The victim stops; spot requeues by default; the on-demand job gets the GPUs.
        try exit(&e, spots[7], at: t1.adding(seconds: 30))
        let requeued = e.state.jobs[spots[7]]!
        #expect(requeued.state == .queued)
        #expect(requeued.attempt == 1)
        #expect(requeued.allocations.isEmpty)
        #expect(requeued.reason?.contains("preempted by \(od)") == true)
        #expect(e.state.usage.records.contains { $0.id == "\(spots[7])/0/\(victim.allocations[0].node)" })
        let placed = try e.schedule(at: t1.adding(seconds: 31))
        #expect(placed.placements.map(\.job) == [od])
        #expect(placed.placements.first?.nodes == p.target)
        #expect(e.state.nominations[od] == nil)
        #expect(e.state.jobs[spots[7]]!.state == .queued, "the fleet is full again")
    }

    @Test func withoutRetryAPreemptedJobEndsPreempted() throws {
        var e = try Fixture.engine()
        let spots = try fullOfSpot(&e, retry: .never)
        _ = try Fixture.submit(&e, Fixture.spec(8), at: Fixture.t0.adding(seconds: 10))
        try e.schedule(at: Fixture.t0.adding(seconds: 10))
        try exit(&e, spots[7], at: Fixture.t0.adding(seconds: 20))
        #expect(e.state.jobs[spots[7]]!.state == .preempted)
        #expect(e.state.jobs[spots[7]]!.state.isTerminal)
    }

    @Test func retryOnErrorRequeuesUpToTheLimit() throws {
        var e = try Fixture.engine()
        let spec = JobSpec(
            name: "flaky", gpuModel: "H100", gpusPerNode: 1, run: "x", retry: RetryPolicy(onEvents: [.error], limit: 2))
        let id = try Fixture.submit(&e, spec)
        for attempt in 0..<3 {
            try e.schedule(at: Fixture.t0)
            let node = e.state.jobs[id]!.allocations[0].node
            try e.execute(.allocationStarted(AllocationStarted(job: id, node: node)), at: Fixture.t0)
            try exit(&e, id, at: Fixture.t0.adding(seconds: 5), code: 1, reason: nil)
            #expect(e.state.jobs[id]!.state == (attempt < 2 ? .queued : .failed), "attempt \(attempt)")
        }
        #expect(e.state.jobs[id]!.attempt == 2)
        #expect(e.state.usage.records.filter { $0.job == id }.count == 3, "each attempt's GPU time counts once")
    }

    @Test func cancellingANominatedJobReleasesItsGPUs() throws {
        var e = try Fixture.engine()
        _ = try fullOfSpot(&e)
        let od = try Fixture.submit(&e, Fixture.spec(8), at: Fixture.t0.adding(seconds: 10))
        try e.schedule(at: Fixture.t0.adding(seconds: 10))
        #expect(e.state.nominations[od] != nil)
        try e.execute(.cancelJob(CancelJob(job: od, by: "key-1")), at: Fixture.t0.adding(seconds: 11))
        #expect(e.state.nominations[od] == nil)
        #expect(e.state.jobs[od]!.state == .cancelled)
    }

    @Test func invalidPreemptionsAreRefused() throws {
        var e = try Fixture.engine()
        let spots = try fullOfSpot(&e)
        let od = try Fixture.submit(&e, Fixture.spec(8))
        let spotQueued = try Fixture.submit(&e, Fixture.spec(8, tier: .spot))
        let node = e.state.jobs[spots[0]]!.allocations[0].node
        let before = e.state
        for p in [
            Preemption(
                job: spotQueued, victims: [spots[0]], target: [NodeAssignment(node: node, gpus: Array(0..<8))], noticeSeconds: 1,
                reason: "spot by spot"),
            Preemption(
                job: od, victims: [], target: [NodeAssignment(node: node, gpus: Array(0..<8))], noticeSeconds: 1,
                reason: "no victims"),
            Preemption(
                job: od, victims: [spots[1]], target: [NodeAssignment(node: node, gpus: Array(0..<8))], noticeSeconds: 1,
                reason: "GPUs held by a non-victim"),
        ] {
            #expect(throws: StratusError.self, "\(p.reason)") {
                try e.execute(.applyPlan(Plan(preemptions: [p])), at: Fixture.t0)
            }
        }
        #expect(e.state == before)
    }

    @Test func retryPolicyParses() throws {
        func parse(_ retry: SpecValue, tier: String = "spot") throws(StratusError) -> RetryPolicy {
            try JobSpec.parse(
                .object([
                    (key: "resources", value: .object([(key: "accelerators", value: .string("H100"))])),
                    (key: "run", value: .string("x")),
                    (key: "tier", value: .string(tier)), (key: "retry", value: retry),
                ])
            ).retry
        }
        #expect(try parse(.bool(false)) == .never)
        #expect(try parse(.bool(true)).onEvents == [.preemption, .nodeLost])
        let custom = try parse(
            .object([
                (key: "on_events", value: .array([.string("interruption"), .string("error")])), (key: "limit", value: .int(3)),
            ]))
        #expect(custom == RetryPolicy(onEvents: [.preemption, .error], limit: 3))
        #expect(throws: StratusError.self) { try parse(.object([(key: "on_events", value: .array([.string("sunspots")]))])) }
        #expect(throws: StratusError.self) { try parse(.object([(key: "limit", value: .int(-1))])) }
        #expect(throws: StratusError.self) { try parse(.object([(key: "when", value: .int(1))])) }
        #expect(
            JobSpec(name: "x", gpuModel: "H100", gpusPerNode: 1, tier: .spot, run: "x").retry.onEvents == [
                .preemption, .nodeLost,
            ])
        // Work of other tiers comes back only when its node is lost, a few times.
        #expect(
            JobSpec(name: "x", gpuModel: "H100", gpusPerNode: 1, run: "x").retry
                == RetryPolicy(onEvents: [.nodeLost], limit: Limits.defaultNodeLostRetries))
    }
}
