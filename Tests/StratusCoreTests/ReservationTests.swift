import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Capacity blocks on the demo fleet (8 nodes x 8 H100 = 64 GPUs, one site), with the
/// default 120 s preemption notice.
@Suite struct ReservationTests {
    let t0 = Fixture.t0

    func reserve(
        _ e: inout Engine, gpus: Int, start: Timestamp, seconds: Int64, org: OrgID = "acme", site: SiteID? = nil,
        at: Timestamp? = nil
    ) throws -> ReservationID {
        let spec = ReservationSpec(gpuModel: "H100", gpus: gpus, site: site, start: .at(start), durationSeconds: seconds)
        return ReservationID(
            try e.execute(.createReservation(CreateReservation(org: org, spec: spec, by: "key-1")), at: at ?? t0).id)
    }

    func inBlock(_ id: ReservationID, gpus: Int = 8, nodes: Int = 1, seconds: Int64? = nil) -> JobSpec {
        var s = JobSpec(
            name: "r", gpuModel: "H100", gpusPerNode: gpus, numNodes: nodes, tier: .reserved, run: "true",
            maxDurationSeconds: seconds)
        s.reservation = id
        return s
    }

    func startAll(_ e: inout Engine, at: Timestamp) throws {
        for (id, job) in e.state.jobs.sorted(by: { $0.key < $1.key }) where job.state == .starting {
            for a in job.allocations where a.startedAt == nil {
                try e.execute(.allocationStarted(AllocationStarted(job: id, node: a.node)), at: at)
            }
        }
    }

    func exit(_ e: inout Engine, _ id: JobID, at: Timestamp) throws {
        for a in e.state.jobs[id]!.allocations where !a.isEnded {
            try e.execute(.allocationExited(AllocationExited(job: id, node: a.node, exitCode: nil, reason: "stopped")), at: at)
        }
    }

    @Test func acceptedOnlyWhenFeasibleAgainstBlocksReserveAndRunningWork() throws {
        var e = try Fixture.engine()
        let start = t0.adding(seconds: 3600)
        _ = try reserve(&e, gpus: 40, start: start, seconds: 7200)
        // 40 + 32 > 64 over the overlap: refused, with the numbers.
        #expect(throws: StratusError.self) { try reserve(&e, gpus: 32, start: start.adding(seconds: 3600), seconds: 3600) }
        do {
            _ = try reserve(&e, gpus: 32, start: start.adding(seconds: 3600), seconds: 3600)
        } catch let error as StratusError {
            #expect(error.message.contains("40 of 64 are committed (reservations 40"), "\(error.message)")
        }
        // Once the first block has ended, all 64 can be held again (from the lead, 120 s,
        // before the start).
        #expect(throws: StratusError.self) { try reserve(&e, gpus: 64, start: start.adding(seconds: 7200), seconds: 3600) }
        _ = try reserve(&e, gpus: 64, start: start.adding(seconds: 7200 + 120), seconds: 3600)
        // An internal reserve counts.
        try e.execute(
            .setInternalReserve(InternalReserve(gpuModel: "H100", site: nil, series: [.init(from: .zero, gpus: 16)])), at: t0)
        #expect(throws: StratusError.self) { try reserve(&e, gpus: 9, start: start, seconds: 60) }
        _ = try reserve(&e, gpus: 8, start: start, seconds: 60)
        // Running on-demand work with no time limit counts; with one that ends before, it does not.
        var f = try Fixture.engine()
        _ = try Fixture.submit(&f, Fixture.spec(8, nodes: 4))
        var bounded = Fixture.spec(8, nodes: 2)
        bounded.maxDurationSeconds = 600
        _ = try Fixture.submit(&f, bounded)
        _ = try f.schedule(at: t0)
        #expect(throws: StratusError.self) { try reserve(&f, gpus: 33, start: t0.adding(seconds: 3600), seconds: 60) }
        _ = try reserve(&f, gpus: 32, start: t0.adding(seconds: 3600), seconds: 60)
        // Bad windows and unknown sites change nothing.
        let before = f.state
        #expect(throws: StratusError.self) { try reserve(&f, gpus: 8, start: t0.adding(seconds: -3600), seconds: 60) }
        #expect(throws: StratusError.self) { try reserve(&f, gpus: 8, start: t0, seconds: 60, site: "nowhere") }
        #expect(f.state == before)
    }

    @Test func onlyJobsNamingTheBlockRunInItAndOthersWaitWithTheReason() throws {
        var e = try Fixture.engine()
        let block = try reserve(&e, gpus: 32, start: t0, seconds: 3600)
        // Unbounded on-demand work may take only what the block leaves.
        let big = try Fixture.submit(&e, Fixture.spec(8, nodes: 5))
        let fits = try Fixture.submit(&e, Fixture.spec(8, nodes: 4))
        let mine = try Fixture.submit(&e, inBlock(block, nodes: 4))
        let over = try Fixture.submit(&e, inBlock(block, nodes: 1))
        let plan = try e.schedule(at: t0)
        #expect(Set(plan.placements.map(\.job)) == [fits, mine])
        let waitBig = plan.waits.first { $0.job == big }?.reasons.first ?? ""
        #expect(waitBig.hasPrefix("reservations: 32 H100 reserved in the fleet now"), "\(waitBig)")
        let waitOver = plan.waits.first { $0.job == over }?.reason ?? ""
        #expect(waitOver == "reservation: \(block) has 32 of its 32 H100 in use (needs 8)", "\(waitOver)")
        // A job that ends before a later block starts may use its GPUs meanwhile.
        var g = try Fixture.engine()
        let later = try reserve(&g, gpus: 64, start: t0.adding(seconds: 3600), seconds: 3600)
        var short = Fixture.spec(8, nodes: 2)
        short.maxDurationSeconds = 1800
        let s = try Fixture.submit(&g, short)
        let long = try Fixture.submit(&g, Fixture.spec(8))
        let p = try g.schedule(at: t0)
        #expect(p.placements.map(\.job) == [s])
        // (Its GPUs are held from 120 s before its start.)
        #expect(p.waits.first { $0.job == long }?.reasons.first?.contains("from \(t0.adding(seconds: 3600 - 120))") == true)
        _ = later
    }

    @Test func submitChecksTheBlock() throws {
        var e = try Fixture.engine()
        let block = try reserve(&e, gpus: 16, start: t0, seconds: 3600)
        let other = try reserve(&e, gpus: 8, start: t0, seconds: 3600, org: InternalOrg.id)
        #expect(throws: StratusError.self) { try Fixture.submit(&e, inBlock(block, nodes: 3)) }
        #expect(throws: StratusError.self) { try Fixture.submit(&e, inBlock(other)) }
        #expect(throws: StratusError.self) { try Fixture.submit(&e, inBlock("res-99")) }
        #expect(throws: StratusError.self) { try Fixture.submit(&e, Fixture.spec(8, tier: .reserved)) }
        // The spec language: a reservation implies the reserved tier, and no other.
        let yaml = SpecValue.object([
            ("resources", .object([("accelerators", .string("H100:8"))])), ("run", .string("x")),
            ("reservation", .string("res-1")),
        ])
        #expect(try JobSpec.parse(yaml).tier == .reserved)
        let wrongTier = SpecValue.object([
            ("resources", .object([("accelerators", .string("H100:8"))])), ("run", .string("x")),
            ("reservation", .string("res-1")), ("tier", .string("on-demand")),
        ])
        #expect(throws: StratusError.self) { try JobSpec.parse(wrongTier) }
        // After the block ends, no new work may name it.
        #expect(throws: StratusError.self) {
            try Fixture.submit(&e, inBlock(block), at: t0.adding(seconds: 3600))
        }
    }

    @Test func spotOnIdleReservedGPUsIsPreemptedAheadSoTheBlockStartsOnTime() throws {
        var e = try Fixture.engine()
        let start = t0.adding(seconds: 600)
        let block = try reserve(&e, gpus: 64, start: start, seconds: 3600)
        let spot = try Fixture.submit(&e, Fixture.spec(8, nodes: 8, tier: .spot))
        #expect(try e.schedule(at: t0).placements.map(\.job) == [spot])
        try startAll(&e, at: t0)
        let job = try Fixture.submit(&e, inBlock(block, nodes: 8), at: t0.adding(seconds: 10))
        // Too early: it waits for the block.
        let early = try e.schedule(at: start.adding(seconds: -121))
        #expect(early.preemptions.isEmpty)
        #expect(early.waits.first { $0.job == job }?.reason == "reservation: \(block) starts at \(start); the job starts then")
        // Within the notice: spot is preempted with a deadline at the start.
        let ahead = try e.schedule(at: start.adding(seconds: -120))
        #expect(ahead.preemptions.first?.victims == [spot])
        #expect(ahead.preemptions.first?.noticeSeconds == 120)
        #expect(e.state.jobs[spot]!.allocations.allSatisfy { $0.stopDeadline == start })
        try exit(&e, spot, at: start.adding(seconds: -5))
        // Still not before the start...
        #expect(try e.schedule(at: start.adding(seconds: -1)).placements.isEmpty)
        // ...and exactly at it.
        #expect(try e.schedule(at: start).placements.map(\.job) == [job])
        // The spot job requeued and waits: the block holds every GPU.
        #expect(e.state.jobs[spot]!.state == .queued)
    }

    @Test func freeGPUsAreHeldAheadOfTheStart() throws {
        var e = try Fixture.engine()
        let start = t0.adding(seconds: 600)
        let block = try reserve(&e, gpus: 16, start: start, seconds: 3600)
        let job = try Fixture.submit(&e, inBlock(block, nodes: 2))
        let ahead = try e.schedule(at: start.adding(seconds: -60))
        #expect(ahead.preemptions.count == 1 && ahead.preemptions[0].victims.isEmpty)
        // Spot cannot take the held GPUs in the meantime.
        _ = try Fixture.submit(&e, Fixture.spec(8, nodes: 7, tier: .spot), at: start.adding(seconds: -30))
        let spotPlan = try e.schedule(at: start.adding(seconds: -30))
        #expect(spotPlan.placements.isEmpty)
        let placed = try e.schedule(at: start)
        #expect(placed.placements.map(\.job) == [job])
        #expect(placed.placements[0].nodes == ahead.preemptions[0].target)
    }

    @Test func blocksOfWholeRacksHoldThoseRacks() throws {
        var e = try Fixture.engine()
        // Unbounded on-demand work on rack-a (node-1): only rack-b is whole and free.
        let busy = try Fixture.submit(&e, Fixture.spec(8))
        _ = try e.schedule(at: t0)
        #expect(e.state.jobs[busy]!.allocations.first?.node == "node-1")
        func rackBlock(_ n: Int, org: OrgID = "acme") throws -> ReservationID {
            let spec = ReservationSpec(
                gpuModel: "H100", gpus: 0, racks: n, start: .at(t0.adding(seconds: 600)), durationSeconds: 3600)
            return ReservationID(
                try e.execute(.createReservation(CreateReservation(org: org, spec: spec, by: "key-1")), at: t0).id)
        }
        let error = #expect(throws: StratusError.self) { try rackBlock(2) }
        #expect(error?.message.contains("2 whole H100 racks are not available") == true, "\(error?.message ?? "")")
        let block = try rackBlock(1)
        #expect(e.state.reservations[block]?.racks == ["rack-b"])
        #expect(e.state.reservations[block]?.gpus == 32)
        // A count-based block must fit beside it: 64 - 32 - 8 (running) leaves 24.
        #expect(throws: StratusError.self) { try reserve(&e, gpus: 25, start: t0.adding(seconds: 600), seconds: 60) }
        // Spot may use the idle racks; unbounded on-demand work may not, and says why.
        let onDemand = try Fixture.submit(&e, Fixture.spec(8, nodes: 4))
        let spot = try Fixture.submit(&e, Fixture.spec(8, nodes: 5, tier: .spot))
        let plan = try e.schedule(at: t0.adding(seconds: 1))
        #expect(plan.placements.map(\.job) == [spot])
        #expect(
            plan.placements[0].nodes.filter { ["node-5", "node-6", "node-7", "node-8"].contains($0.node.rawValue) }.count == 4)
        let why = plan.waits.first { $0.job == onDemand }?.reason ?? ""
        #expect(why.contains("reservations: 4 H100 nodes are in racks reserved for a block"), "\(why)")
        // The block's job runs only on its racks, from its start, preempting the spot work ahead.
        let mine = try Fixture.submit(&e, inBlock(block, nodes: 4), at: t0.adding(seconds: 2))
        try startAll(&e, at: t0.adding(seconds: 2))
        let ahead = try e.schedule(at: t0.adding(seconds: 600 - 120))
        #expect(ahead.preemptions.first { $0.job == mine }?.victims == [spot])
        try exit(&e, spot, at: t0.adding(seconds: 590))
        let start = try e.schedule(at: t0.adding(seconds: 600))
        let placed = try #require(start.placements.first { $0.job == mine })
        #expect(Set(placed.nodes.map(\.node)) == ["node-5", "node-6", "node-7", "node-8"])
    }

    @Test func workStopsWhenTheBlockEndsAndWhenItIsCancelled() throws {
        var e = try Fixture.engine()
        let block = try reserve(&e, gpus: 16, start: t0, seconds: 3600)
        let job = try Fixture.submit(&e, inBlock(block, nodes: 2))
        _ = try e.schedule(at: t0)
        try startAll(&e, at: t0)
        let end = t0.adding(seconds: 3600)
        #expect(try e.schedule(at: end.adding(seconds: -121)).stops.isEmpty)
        let stop = try e.schedule(at: end.adding(seconds: -120))
        #expect(stop.stops == [Stop(job: job, deadline: end, reason: "reservation \(block) ends at \(end)")])
        #expect(e.state.assignments(for: "node-1").first?.stopDeadline == end)
        try exit(&e, job, at: end)
        #expect(e.state.jobs[job]!.state == .cancelled)
        #expect(e.state.jobs[job]!.reason == "stopped: reservation \(block) ends at \(end)")
        // Cancelling a block cancels its queued work and stops its running work.
        var f = try Fixture.engine()
        let b2 = try reserve(&f, gpus: 16, start: t0, seconds: 3600)
        let running = try Fixture.submit(&f, inBlock(b2))
        _ = try f.schedule(at: t0)
        let queued = try Fixture.submit(&f, inBlock(b2, nodes: 2))
        try f.execute(.cancelReservation(CancelReservation(reservation: b2, by: "key-1")), at: t0.adding(seconds: 5))
        #expect(f.state.jobs[queued]!.state == .cancelled)
        let s = try f.schedule(at: t0.adding(seconds: 6))
        #expect(s.stops.map(\.job) == [running])
    }

    /// Random work (internal, on-demand with and without time limits, spot) and random
    /// block requests on a healthy fleet whose agents stop work as soon as asked: every
    /// accepted block's jobs run from the block's first second.
    @Test func acceptedBlocksStartOnTime() throws {
        var total = (blocks: 0, refused: 0, preemptedAhead: 0, held: 0, racks: 0)
        for seed in 0..<12 {
            let r = try blocksStartOnTime(seed: seed)
            total.blocks += r.blocks
            total.refused += r.refused
            total.preemptedAhead += r.preemptedAhead
            total.held += r.held
            total.racks += r.racks
        }
        // The streams must reach the interesting cases.
        #expect(total.blocks > 60, "\(total)")
        #expect(total.refused > 10, "\(total)")
        #expect(total.preemptedAhead > 10, "\(total)")
        #expect(total.held > 10, "\(total)")
        #expect(total.racks > 5, "\(total)")
    }

    func blocksStartOnTime(seed: Int) throws -> (blocks: Int, refused: Int, preemptedAhead: Int, held: Int, racks: Int) {
        var rng = SeededRandom(seed: UInt64(seed))
        var e = try Fixture.engine()
        var t = t0
        var blocks: [(id: ReservationID, start: Timestamp, end: Timestamp, jobs: [JobID])] = []
        var result = (blocks: 0, refused: 0, preemptedAhead: 0, held: 0, racks: 0)
        for _ in 0..<300 {
            t = t.adding(seconds: 1)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...2:
                let tier: Tier = [.internal, .onDemand, .onDemand, .spot, .spot][Int.random(in: 0...4, using: &rng)]
                var spec = Fixture.spec(
                    [1, 2, 4, 8][Int.random(in: 0...3, using: &rng)], nodes: Int.random(in: 1...2, using: &rng), tier: tier)
                spec.maxDurationSeconds = Int.random(in: 0..<4, using: &rng) == 0 ? nil : Int64.random(in: 10...200, using: &rng)
                _ = try? Fixture.submit(&e, spec, org: tier == .internal ? InternalOrg.id : "acme", at: t)
            case 3:
                let start = t.adding(seconds: Int64.random(in: 130...400, using: &rng))
                let end = start.adding(seconds: Int64.random(in: 30...200, using: &rng))
                // One request in four is for a whole rack (32 GPUs on the demo fleet).
                let wholeRack = Int.random(in: 0..<4, using: &rng) == 0
                let gpus = wholeRack ? 32 : Int.random(in: 1...40, using: &rng)
                let spec = ReservationSpec(
                    gpuModel: "H100", gpus: wholeRack ? 0 : gpus, racks: wholeRack ? 1 : nil, start: .at(start),
                    durationSeconds: end.milliseconds / 1000 - start.milliseconds / 1000)
                guard
                    let outcome = try? e.execute(
                        .createReservation(CreateReservation(org: "acme", spec: spec, by: "key-1")), at: t)
                else {
                    result.refused += 1
                    continue
                }
                let id = ReservationID(outcome.id)
                if wholeRack { result.racks += 1 }
                let jobs = try (0..<gpus).map { _ in try Fixture.submit(&e, inBlock(id, gpus: 1), at: t) }
                blocks.append((id, start, end, jobs))
                result.blocks += 1
            default: break
            }
            // Agents: start what is placed, end work at its time limit, and stop what is
            // asked to stop at its deadline (the latest they may; at once without one).
            for (id, job) in e.state.jobs.filter({ !$0.value.state.isTerminal }).sorted(by: { $0.key < $1.key }) {
                for a in job.allocations where !a.isEnded {
                    let limit = job.spec.maxDurationSeconds.map { (a.startedAt ?? t).adding(seconds: $0) }
                    let stop = a.stopRequested && (a.stopDeadline.map { $0 <= t } ?? true)
                    if stop || limit.map({ $0 <= t }) == true {
                        try e.execute(
                            .allocationExited(
                                AllocationExited(job: id, node: a.node, exitCode: a.stopRequested ? nil : 0, reason: nil)),
                            at: t)
                    } else if a.startedAt == nil {
                        try e.execute(.allocationStarted(AllocationStarted(job: id, node: a.node)), at: t)
                    }
                }
            }
            let plan = try e.schedule(at: t)
            let blockJobs = Set(blocks.flatMap(\.jobs))
            for p in plan.preemptions where blockJobs.contains(p.job) {
                if p.victims.isEmpty { result.held += 1 } else { result.preemptedAhead += 1 }
            }
            for b in blocks.suffix(12) where b.start <= t && t < b.end {
                for j in b.jobs {
                    let state = e.state.jobs[j]!.state
                    #expect(
                        state == .starting || state == .running,
                        "seed \(seed): \(j) of \(b.id) is \(state) at \(t), start \(b.start)")
                }
            }
        }
        return result
    }
}
