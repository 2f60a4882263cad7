import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import Testing

/// Random fleets and job streams through the real state machine, checking the
/// scheduler's invariants after every step.
@Suite struct SchedulerPropertyTests {
    static func randomFleet(_ rng: inout SeededRandom) -> FleetSpec {
        var f = FleetSpec()
        f.regions = ["r"]
        let sites = Int.random(in: 1...2, using: &rng)
        for s in 0..<sites {
            f.sites.append(.init(id: SiteID("s\(s)"), region: "r", powerBudgetKW: 10_000, pueMilli: 1200))
            for k in 0..<Int.random(in: 1...3, using: &rng) {
                let rack = RackID("s\(s)-k\(k)")
                f.racks.append(.init(id: rack, site: SiteID("s\(s)")))
                for n in 0..<Int.random(in: 1...4, using: &rng) {
                    f.nodes.append(
                        .init(
                            id: NodeID("\(rack)-n\(n)"), rack: rack,
                            gpuModel: ["H100", "B200", "H200"][Int.random(in: 0...2, using: &rng)],
                            gpuCount: [4, 8][Int.random(in: 0...1, using: &rng)], labels: [:]))
                }
            }
        }
        return f
    }

    func checkInvariants(_ s: State, seed: UInt64) {
        // No GPU allocated twice: every holder entry matches exactly one live allocation.
        var fromAllocations: [String: JobID] = [:]
        for (id, job) in s.jobs {
            let live = job.allocations.filter { !$0.isEnded }
            // Gangs are never partial: a placed job has exactly num_nodes allocations.
            if !job.allocations.isEmpty {
                #expect(job.allocations.count == job.spec.numNodes, "seed \(seed): \(id) partial gang")
                #expect(Set(job.allocations.map(\.node)).count == job.allocations.count, "seed \(seed): \(id) node twice")
                let models = Set(job.allocations.compactMap { s.nodes[$0.node]?.gpuModel })
                #expect(models.count == 1, "seed \(seed): \(id) mixes GPU models")
            }
            for a in live {
                // One of the job's acceptable models, with that model's count per node.
                let model = s.nodes[a.node]?.gpuModel ?? ""
                #expect(job.spec.gpusPerNode(on: model) == a.gpus.count, "seed \(seed): \(id) wrong model or count on \(a.node)")
                for g in a.gpus {
                    let key = "\(a.node)#\(g)"
                    #expect(fromAllocations[key] == nil, "seed \(seed): GPU \(key) allocated twice")
                    fromAllocations[key] = id
                }
            }
            // No job is preempted by an equal or lower tier.
            // (Equal tiers only to reclaim quota another project of the same org borrowed.)
            if let by = job.preemptedBy, let preempter = s.jobs[by] {
                #expect(job.spec.tier == .spot, "seed \(seed): non-spot \(id) preempted")
                let reclaim = preempter.org == job.org && preempter.project != job.project
                #expect(preempter.spec.tier.rank < job.spec.tier.rank || reclaim, "seed \(seed): \(id) preempted by \(by)")
            }
        }
        for (node, holders) in s.gpuHolders {
            for (g, holder) in holders.enumerated() {
                #expect(holder == fromAllocations["\(node)#\(g)"], "seed \(seed): holder table disagrees on \(node)#\(g)")
            }
        }
        // Nominated GPUs belong to one queued job each.
        var nominated = Set<String>()
        for (job, target) in s.nominations {
            #expect(s.jobs[job]?.state == .queued, "seed \(seed)")
            for a in target { for g in a.gpus { #expect(nominated.insert("\(a.node)#\(g)").inserted, "seed \(seed)") } }
        }
    }

    /// Quotas hold: the org never above its limit; a project above its limit only with spot work.
    func checkQuotas(_ s: State, seed: UInt64, orgLimit: Int, projectLimit: Int) {
        var org = 0
        var nonSpot: [String: Int] = [:]
        for job in s.jobs.values {
            let held = job.allocations.filter { !$0.isEnded }.reduce(0) { $0 + $1.gpus.count }
            org += held
            if job.spec.tier != .spot { nonSpot[job.project.rawValue, default: 0] += held }
        }
        #expect(org <= orgLimit, "seed \(seed): org holds \(org) > \(orgLimit)")
        for (project, held) in nonSpot {
            #expect(held <= projectLimit, "seed \(seed): \(project) holds \(held) non-spot > \(projectLimit)")
        }
    }

    struct Exercised {
        var placements = 0
        var preemptions = 0
        var requeues = 0
        var gangs = 0
        var reservations = 0
    }

    @Test(arguments: 0..<40)
    func invariantsHoldOverRandomStreams(seed: Int) throws {
        _ = try stream(seed: seed)
    }

    /// The streams above must reach the interesting cases, or they prove little.
    @Test func streamsExercisePreemptionRequeueAndGangs() throws {
        var total = Exercised()
        for seed in 0..<40 {
            let e = try stream(seed: seed)
            total.placements += e.placements
            total.preemptions += e.preemptions
            total.requeues += e.requeues
            total.gangs += e.gangs
            total.reservations += e.reservations
        }
        #expect(total.reservations > 10)
        #expect(total.placements > 200)
        #expect(total.preemptions > 10)
        #expect(total.requeues > 10)
        #expect(total.gangs > 20)
    }

    func stream(seed: Int) throws -> Exercised {
        var exercised = Exercised()
        var rng = SeededRandom(seed: UInt64(seed))
        var e = try Engine(store: MemoryStore())
        let t0 = Timestamp(seconds: 1_800_000_000)
        try e.execute(
            .bootstrap(CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: Fixture.hash(1), hint: "")), at: t0)
        try e.execute(.applyFleet(Self.randomFleet(&rng)), at: t0)
        try e.execute(.createProject(CreateProject(org: InternalOrg.id, name: "p2")), at: t0)
        let orgLimit = Int.random(in: 8...48, using: &rng)
        let projectLimit = Int.random(in: 4...24, using: &rng)
        try e.execute(.setQuota(SetQuota(scope: QuotaScope(org: InternalOrg.id), limit: orgLimit)), at: t0)
        for p in ["default", "p2"] {
            try e.execute(.setQuota(SetQuota(scope: QuotaScope(org: InternalOrg.id, project: p), limit: projectLimit)), at: t0)
        }
        var t = t0
        for step in 0..<120 {
            t = t.adding(seconds: 1)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...3:
                let tier: Tier = [.internal, .onDemand, .spot, .spot][Int.random(in: 0...3, using: &rng)]
                let project: String? = Bool.random(using: &rng) ? "p2" : nil
                let spec = JobSpec(
                    name: "p", project: project, gpuModel: Bool.random(using: &rng) ? "H100" : "B200",
                    gpusPerNode: [1, 2, 4, 8][Int.random(in: 0...3, using: &rng)],
                    numNodes: Int.random(in: 1...3, using: &rng), tier: tier, run: "x",
                    maxDurationSeconds: Bool.random(using: &rng) ? Int64.random(in: 5...200, using: &rng) : nil,
                    topology: Int.random(in: 0...3, using: &rng) == 0 ? .rack : nil,
                    alternatives: Int.random(in: 0...2, using: &rng) == 0 ? [Accelerator(model: "H200", count: 8)] : [])
                _ = try? e.execute(
                    .submitJob(SubmitJob(org: InternalOrg.id, spec: spec, idempotencyKey: nil, by: "key-1")), at: t)
            case 4...6:
                // Agents: start what is starting, end what is stopping or random running work.
                for (id, job) in e.state.jobs.sorted(by: { $0.key < $1.key }) where !job.state.isTerminal {
                    for a in job.allocations where !a.isEnded {
                        if a.startedAt == nil, !a.stopRequested {
                            try e.execute(.allocationStarted(AllocationStarted(job: id, node: a.node)), at: t)
                        } else if a.stopRequested || Int.random(in: 0..<4, using: &rng) == 0 {
                            let code: Int32? = a.stopRequested ? nil : Int32(Int.random(in: 0...1, using: &rng))
                            try e.execute(
                                .allocationExited(
                                    AllocationExited(
                                        job: id, node: a.node, exitCode: code, reason: a.stopRequested ? "stopped" : nil)), at: t)
                        }
                    }
                }
            case 7:
                if let victim = e.state.jobs.keys.sorted().filter({ !e.state.jobs[$0]!.state.isTerminal }).randomElement(
                    using: &rng)
                {
                    try e.execute(.cancelJob(CancelJob(job: victim, by: "key-1")), at: t)
                }
            default:
                // Identical inputs give identical plans, then the plan is applied.
                let a = e.scheduler.plan(e.state.schedulingSnapshot(), now: t)
                let b = e.scheduler.plan(e.state.schedulingSnapshot(), now: t)
                #expect(a == b, "seed \(seed) step \(step)")
                try e.schedule(at: t)
                exercised.placements += a.placements.count
                exercised.preemptions += a.preemptions.count
                exercised.gangs += a.placements.filter { $0.nodes.count > 1 }.count
                exercised.reservations += a.waits.filter { $0.reason.contains("backfill: holds") }.count
            }
            checkInvariants(e.state, seed: UInt64(seed))
            checkQuotas(e.state, seed: UInt64(seed), orgLimit: orgLimit, projectLimit: projectLimit)
        }
        // Replaying the log gives the same state.
        #expect(try Recovery.recover(from: e.store) == e.state, "seed \(seed)")
        exercised.requeues = e.state.jobs.values.reduce(0) { $0 + $1.attempt }
        return exercised
    }
}
