import StratusControl
import StratusCore
import StratusLedger
import StratusStore

/// What `--faults` injected, and what became of it.
public struct ChaosSummary: Codable, Equatable, Sendable {
    public var agentRestarts = 0
    public var duplicateReports = 0
    public var lateReports = 0
    public var reorderedReports = 0
    /// Injected reports the control plane refused (a stale or impossible report).
    public var refused = 0
    /// Injected reports it accepted as already known (nothing changed).
    public var unchanged = 0
    /// Control-plane crashes: the state rebuilt from the store's snapshot and log.
    public var replays = 0
    /// Steps after which every invariant was checked.
    public var checks = 0
    public init() {}
}

extension Simulation {
    /// One step's faults, each with a small probability (drawn from the chaos generator,
    /// so the scenario's own draws are the same with and without faults).
    mutating func injectFaults() throws {
        steps += 1
        func roll(_ permille: UInt64) -> Bool { chaosRandom.next(below: 1000) < permille }
        if roll(20), agentToken != nil {
            let candidates = nodeIDs.indices.filter {
                engine.state.nodes[nodeIDs[$0]].map { $0.lostAt == nil && $0.state == .ready } ?? false
            }
            if !candidates.isEmpty {
                // An agent restarts: it registers again, and adopts what it was running.
                try register(candidates[Int(chaosRandom.next(below: UInt64(candidates.count)))])
                chaosStats.agentRestarts += 1
            }
        }
        if roll(50), let report = lastReport {
            chaosStats.duplicateReports += 1
            try deliver(report)
        }
        if roll(30), !endedRuns.isEmpty {
            let (job, attempt, node) = endedRuns[Int(chaosRandom.next(below: UInt64(endedRuns.count)))]
            // A late report about a run that is over: an exit (again) ...
            chaosStats.lateReports += 1
            try deliver(
                .allocationExited(AllocationExited(job: job, node: node, exitCode: 1, reason: nil, attempt: attempt)))
            // ... and a start that arrives after the exit (reordered).
            if roll(500) {
                chaosStats.reorderedReports += 1
                try deliver(.allocationStarted(AllocationStarted(job: job, node: node, attempt: attempt)))
            }
        }
        if roll(10) { try crashAndReplay() }
    }

    /// Delivers an injected agent report: the control plane may refuse it or find it
    /// known; if it accepts it, the invariants say whether that was right.
    mutating func deliver(_ command: Command) throws {
        do {
            let outcome = try engine.execute(command, at: now)
            if case .unchanged = outcome { chaosStats.unchanged += 1 }
        } catch is StratusError {
            chaosStats.refused += 1
        }
    }

    /// The control plane crashes and restarts: the state is rebuilt from the store's
    /// snapshot and log, and must be the state it had.
    mutating func crashAndReplay() throws {
        let before = engine.state
        let recovered = try Engine(store: engine.store, scheduler: engine.scheduler)
        chaosStats.replays += 1
        guard recovered.state == before else {
            throw SimulationFailure(
                seed: config.scenario?.seed ?? 0, at: now, step: steps,
                problems: ["the state replayed from the log differs from the state before the crash"])
        }
        engine = recovered
    }

    /// Every invariant after a step; the counters' recount every fourth check and at the end.
    mutating func verify(final: Bool = false) throws {
        chaosStats.checks += 1
        let problems = Invariants.check(engine.state, ran: ran, now: now, recount: final || chaosStats.checks % 4 == 0)
        if !problems.isEmpty {
            throw SimulationFailure(seed: config.scenario?.seed ?? 0, at: now, step: steps, problems: problems)
        }
    }

    // MARK: fuzzing

    /// A random small cloud: one or two sites (or a contract), some of the operator's own
    /// demand, one to three external streams of random tiers, node failures, a day or two.
    public static func fuzzScenario(seed: UInt64) -> Scenario {
        var r = SeededRandom(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        func pick(_ n: Int) -> Int { Int(r.next(below: UInt64(n))) }
        let start = Timestamp(seconds: 1_798_761_600 + Int64(pick(365)) * 86400)
        var models = Scenario.defaultModels
        models["H100"]!.nodesPerRack = 2
        var s = Scenario(
            name: "fuzz \(seed)", seed: seed, start: start, horizonDays: 1,
            schedulingIntervalSeconds: [0, 30, 60][pick(3)], preemptionNoticeSeconds: Int64([0, 30, 120][pick(3)]),
            electricityPerMWh: Money(micros: 80_000_000), capitalBasisPoints: 0, models: models, sites: [], contracts: [],
            prices: [], inference: nil, training: [], demand: [], slas: [], faults: nil)
        for k in 0..<(1 + pick(2)) {
            s.sites.append(
                Scenario.Site(
                    name: "site-\(k)", region: pick(2) == 0 ? "r0" : "r\(k)", pueMilli: 1250,
                    facilityCapexPerMW: Money(micros: 11_700_000_000_000), facilityLifeYears: 15, facilityOMBasisPoints: 200,
                    phases: [
                        Scenario.Phase(
                            at: start.adding(seconds: Int64(pick(2)) * 3600 * Int64(pick(12))),
                            kilowatts: Int64(30 + pick(120)), model: "H100")
                    ]))
        }
        if pick(3) == 0 {
            s.contracts.append(
                Scenario.Contract(
                    name: "ctr", model: "H100", region: "r0", startMonth: 0, termMonths: 1 + pick(2),
                    pricePerGPUHour: Money(micros: 2_000_000), commitment: nil, takeOrPay: true, ramp: [(0, 8 * (1 + pick(4)))]))
        }
        if pick(2) == 0 {
            s.inference = Scenario.Inference(
                model: "H100", peakGPUs: 8 * (1 + pick(3)), peakToTroughMilli: 2500, peakHour: pick(24), replicaGPUs: 8,
                reserveGPUs: pick(2) == 0 ? 0 : nil)
        }
        if pick(2) == 0 {
            s.training.append(
                Scenario.Training(
                    name: "train", model: "H100", gpus: [8, 16][pick(2)], everySeconds: 3600 * Int64(4 + pick(20)),
                    durationSeconds: 600 + Int64(pick(20_000)), firstAfterSeconds: Int64(pick(7200))))
        }
        let tiers: [Tier] = [.onDemand, .spot, .reserved]
        for k in 0..<(1 + pick(3)) {
            let tier = tiers[pick(3)]
            s.demand.append(
                Scenario.Demand(
                    name: "d\(k)", tier: tier, model: "H100", arrivalsPerDayMilli: Int64(2_000 + pick(24_000)),
                    sizes: [(1000, 1 + pick(3)), (4000, 1 + pick(3)), (8000, 1 + pick(3)), (16_000, pick(2))],
                    meanSeconds: 300 + Int64(pick(14_400)), elasticityMilli: Int64(pick(2000)), referencePrice: nil,
                    orgs: 1 + pick(4), blockSeconds: 3600 * Int64(1 + pick(12)), leadSeconds: Int64(pick(3)) * 1800,
                    patienceSeconds: 600 + Int64(pick(40_000))))
        }
        if pick(2) == 0 { s.slas.append(Scenario.SLA(reservedAvailabilityPermille: 995, creditPercent: 10)) }
        s.faults = Scenario.Faults(perGPUYearMilli: Int64(pick(100_000)), repairSeconds: 600 + Int64(pick(14_400)))
        // In a third of the seeds: nodes with CPU and memory, jobs asking for them, and
        // jobs on fractions of a GPU (drawn last, so the other seeds stay as they were).
        if pick(3) == 0 {
            s.models["H100"]!.nodeResources = NodeResources(cpuMilli: 1000 * (16 + pick(48)), memoryMiB: 1024 * (64 + pick(448)))
            for k in s.demand.indices {
                s.demand[k].perGPU = NodeResources(cpuMilli: 500 * (1 + pick(16)), memoryMiB: 1024 * (1 + pick(64)))
                if s.demand[k].tier != .reserved { s.demand[k].sizes.append((250 * (1 + pick(3)), 1 + pick(4))) }
            }
            // In a quarter of those: spot work filling the GPUs and a burst of one org's
            // on-demand fractions, which preempt it and share the GPUs freed.
            if pick(4) == 0 {
                s.demand.append(
                    Scenario.Demand(
                        name: "spot-fill", tier: .spot, model: "H100", arrivalsPerDayMilli: Int64(30_000 + pick(60_000)),
                        sizes: [(8000, 1)], meanSeconds: 3600 * Int64(2 + pick(6)), elasticityMilli: 0, referencePrice: nil,
                        orgs: 1 + pick(2), blockSeconds: 3600, leadSeconds: 0, patienceSeconds: 86_400))
                s.demand.append(
                    Scenario.Demand(
                        name: "bits", tier: .onDemand, model: "H100", arrivalsPerDayMilli: Int64(60_000 + pick(180_000)),
                        sizes: [(250, 1), (500, 1)], meanSeconds: 600 + Int64(pick(7200)), elasticityMilli: 0,
                        referencePrice: nil, orgs: 1 + pick(2), blockSeconds: 3600, leadSeconds: 0, patienceSeconds: 86_400))
            }
        }
        return s
    }

    /// Runs the fuzz scenario of `seed` with faults injected and invariants checked after
    /// every step; throws `SimulationFailure` naming the seed when something breaks.
    public static func fuzz(seed: UInt64) throws -> Summary {
        var config = Config(scenario: fuzzScenario(seed: seed))
        config.chaos = true
        // Even seeds forget jobs an hour after they end (no draw: the scenarios stay as they were).
        if seed % 2 == 0 { config.retainJobsSeconds = 3600 }
        var sim = try Simulation(config)
        return try sim.run()
    }
}
