import StratusControl
import StratusCore
import StratusLedger

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The parts of a run that a scenario drives: build-out, contracts, faults, month ends,
/// the spot market, and the demand streams.
extension Simulation {
    mutating func setUp(_ s: Scenario) throws {
        if s.faults != nil || config.chaos {
            let token = try engine.execute(
                .createAgentToken(
                    CreateAgentToken(name: "simulated-agents", node: nil, secretHash: String(repeating: "1", count: 64), hint: "")
                ),
                at: start)
            agentToken = AgentTokenID(token.id)
        }
        for sla in s.slas {
            try engine.execute(
                .createSLA(
                    CreateSLA(
                        org: nil, objective: .reservedAvailabilityPermille(sla.reservedAvailabilityPermille),
                        creditPercent: sla.creditPercent)), at: start)
        }
        if let inf = s.inference {
            let reserve = inf.reserveGPUs ?? inf.peakGPUs
            if reserve > 0 {
                try engine.execute(
                    .setInternalReserve(
                        InternalReserve(gpuModel: inf.model, site: nil, series: [.init(from: start, gpus: reserve)])),
                    at: start)
            }
            heap.push(start, .inferenceTick)
        }
        // Capacity: each build-out phase and each contract's ramp step is a cohort.
        var nodes = 0
        func add(
            _ at: Timestamp, until: Timestamp, gpus: Int, model: String, site: String, economics: GPUEconomics, contract: Int?
        ) {
            let perNode = s.models[model]!.gpusPerNode
            let count = gpus / perNode
            cohorts.append(
                Cohort(
                    at: max(at, start), until: until, gpus: count * perNode, model: model, site: site, economics: economics,
                    contract: contract, nodes: nodes..<(nodes + count)))
            nodes += count
        }
        for site in s.sites {
            for phase in site.phases {
                add(
                    phase.at, until: max(s.end, phase.at), gpus: s.gpus(of: phase, in: site), model: phase.model, site: site.name,
                    economics: s.economics(model: phase.model, site: site), contract: nil)
            }
        }
        let first = Period(containing: start)
        for (k, c) in s.contracts.enumerated() {
            let begins = Period(index: first.index + Int64(c.startMonth))
            let ends = Period(index: begins.index + Int64(c.termMonths)).start
            var delivered = 0
            for step in c.ramp where step.gpus > delivered {
                let at = Period(index: begins.index + Int64(step.month)).start
                add(
                    at, until: ends, gpus: step.gpus - delivered, model: c.model, site: c.name,
                    economics: s.economics(model: c.model, site: Self.contractSite), contract: k)
                delivered = step.gpus
            }
            if ends <= s.end { heap.push(max(start, ends), .contractEnd(k)) }
        }
        nodeIDs = [NodeID](repeating: NodeID(""), count: nodes)
        for (c, cohort) in cohorts.enumerated() where cohort.at < s.end && cohort.gpus > 0 {
            heap.push(cohort.at, .install(c))
        }
        var p = first
        while p.end <= s.end {
            heap.push(p.end, .monthEnd(p.index))
            p = p.next
        }
        if s.demand.contains(where: { $0.tier == .spot }) {
            heap.push(start.adding(seconds: Limits.spotPriceIntervalSeconds), .spotTick)
        }
        for (k, t) in s.training.enumerated() { heap.push(start.adding(seconds: t.firstAfterSeconds), .training(k)) }
        for (k, d) in s.demand.enumerated() {
            referencePrices[k] = d.referencePrice ?? price(of: d)
            heap.push(nextArrival(d, k), .demand(k))
        }
    }

    /// How bought capacity is costed for utilization figures: its price, not capex.
    static let contractSite = Scenario.Site(
        name: "contract", region: "contract", pueMilli: 1000, facilityCapexPerMW: .zero, facilityLifeYears: 1,
        facilityOMBasisPoints: 0, phases: [])

    // MARK: capacity

    mutating func install(_ c: Int) throws {
        let s = config.scenario!
        let cohort = cohorts[c]
        let m = s.models[cohort.model]!
        let siteSpec: FleetSpec.SiteSpec
        let region: String
        if let k = cohort.contract {
            region = s.contracts[k].region
            let kw = Int64(cohorts.filter { $0.site == cohort.site && $0.at <= now }.reduce(0) { $0 + $1.gpus }) * m.itWatts * 2
            siteSpec = .init(id: SiteID(cohort.site), region: RegionID(region), powerBudgetKW: max(1, kw / 1000), pueMilli: 1200)
        } else {
            let site = s.sites.first { $0.name == cohort.site }!
            region = site.region
            let kw = site.phases.filter { $0.at <= now }.reduce(0) { $0 + $1.kilowatts }
            siteSpec = .init(id: SiteID(site.name), region: RegionID(region), powerBudgetKW: max(1, kw), pueMilli: site.pueMilli)
        }
        var spec = FleetSpec()
        spec.regions = [RegionID(region)]
        spec.sites = [siteSpec]
        let firstRack = racksBySite[cohort.site, default: 0]
        let count = cohort.nodes.count
        for r in 0..<((count + m.nodesPerRack - 1) / m.nodesPerRack) {
            spec.racks.append(FleetSpec.RackSpec(id: RackID("\(cohort.site)-r\(firstRack + r + 1)"), site: SiteID(cohort.site)))
        }
        racksBySite[cohort.site] = firstRack + spec.racks.count
        for (k, n) in cohort.nodes.enumerated() {
            let id = NodeID("\(cohort.site)-r\(firstRack + k / m.nodesPerRack + 1)-n\(k % m.nodesPerRack + 1)")
            nodeIDs[n] = id
            var node = FleetSpec.NodeSpec(
                id: id, rack: RackID("\(cohort.site)-r\(firstRack + k / m.nodesPerRack + 1)"), gpuModel: cohort.model,
                gpuCount: m.gpusPerNode, labels: [:])
            node.resources = m.nodeResources
            spec.nodes.append(node)
        }
        try engine.execute(.applyFleet(spec), at: now)
        installedGPUs += cohort.gpus
        guard agentToken != nil else { return }
        for n in cohort.nodes {
            try register(n)
            if let faults = s.faults, let t = nextFailure(faults, gpus: m.gpusPerNode) { heap.push(t, .failure(n)) }
        }
    }

    mutating func register(_ n: Int) throws {
        let id = nodeIDs[n]
        let node = engine.state.nodes[id]!
        let gpus = (0..<node.gpuCount).map {
            GPUDevice(index: $0, uuid: "GPU-sim-\(id.rawValue)-\($0)", name: node.gpuModel, memoryMib: 81_559)
        }
        try engine.execute(
            .registerNode(
                RegisterNode(
                    node: id, token: agentToken!, address: "10.0.0.1", rack: node.rack, labels: [:], gpuModel: node.gpuModel,
                    gpus: gpus, version: "simulated")), at: now)
    }

    /// The next failure of a node of `gpus` GPUs: exponential at the scenario's rate per GPU-year.
    mutating func nextFailure(_ f: Scenario.Faults, gpus: Int) -> Timestamp? {
        guard f.perGPUYearMilli > 0 else { return nil }
        let perYear = Double(f.perGPUYearMilli) / 1000 * Double(gpus)
        return now.addingMillis(exponentialMillis(meanMillis: 365 * 86_400_000 / perYear))
    }

    mutating func exponentialMillis(meanMillis: Double) -> Int64 {
        let u = Double(random.next() >> 11) / Double(UInt64(1) << 53)
        return max(1, Int64((-log(1 - u) * meanMillis).rounded()))
    }

    /// The contract's term is over: its nodes drain (work moves off with notice) and leave service.
    mutating func endContract(_ k: Int) throws {
        let notice = config.preemptionNoticeSeconds
        for c in cohorts.indices where cohorts[c].contract == k && cohorts[c].at < now {
            installedGPUs -= cohorts[c].gpus
            for n in cohorts[c].nodes {
                let id = nodeIDs[n]
                guard engine.state.nodes[id] != nil else { continue }
                try engine.execute(
                    .setNodeState(
                        SetNodeState(
                            node: id, state: .draining, reason: "contract ended", requeue: true, noticeSeconds: notice,
                            by: "key-1")), at: now)
                for job in engine.state.jobs(on: id) {
                    if let j = engine.state.jobs[job] {
                        heap.push(now.adding(seconds: notice), .stop(job, attempt: j.attempt))
                    }
                }
            }
        }
    }

    mutating func fail(_ n: Int) throws {
        let id = nodeIDs[n]
        guard let node = engine.state.nodes[id], node.lostAt == nil, node.state == .ready else { return }
        var ending: [(Job, Allocation)] = []
        for job in engine.state.jobs(on: id).sorted() {
            guard let j = engine.state.jobs[job], let a = j.allocations.first(where: { $0.node == id && !$0.isEnded })
            else { continue }
            ending.append((j, a))
        }
        try engine.execute(.nodeLost(NodeLost(node: id, lastSeen: now)), at: now)
        stats.failures += 1
        for (job, a) in ending { released(job, a) }
        // A gang lives and dies together: the agents on its other nodes stop their part now.
        for (job, _) in ending {
            guard let current = engine.state.jobs[job.id], current.attempt == job.attempt else { continue }
            try end(current, current.allocations.filter { !$0.isEnded && $0.stopRequested }, reason: "its gang lost \(id)")
        }
        heap.push(now.adding(seconds: config.scenario!.faults!.repairSeconds), .repair(n))
    }

    mutating func repair(_ n: Int) throws {
        let id = nodeIDs[n]
        guard engine.state.nodes[id]?.state == .ready else { return }
        try register(n)
        if let f = config.scenario!.faults, let t = nextFailure(f, gpus: engine.state.nodes[id]!.gpuCount) {
            heap.push(t, .failure(n))
        }
    }

    // MARK: months and prices

    mutating func closeMonth(_ p: Period) throws {
        let ledger = engine.state.billing.ledger
        var revenue: [Tier: Int64] = [:]
        for tier in Tier.allCases { revenue[tier] = ledger.balance(.revenue(tier)).micros }
        try engine.execute(.closePeriod(ClosePeriod(period: p)), at: now)
        months.append(
            MonthMark(period: p, revenue: revenue, slaCredits: engine.state.billing.ledger.balance(.slaCredits).micros))
    }

    /// The spot market's step (every 5 minutes, as the server's); whether a price moved.
    mutating func spotTick() throws -> Bool {
        let updates = engine.state.spotPriceUpdates(SpotMarket(), at: now)
        if !updates.isEmpty {
            try engine.execute(
                .setSpotPrices(SetSpotPrices(prices: updates, noticeSeconds: config.preemptionNoticeSeconds)), at: now)
        }
        heap.push(now.adding(seconds: Limits.spotPriceIntervalSeconds), .spotTick)
        return !updates.isEmpty
    }

    /// What a demand stream pays now: its tier's list price (spot: the market's price
    /// where the model is first installed).
    func price(of d: Scenario.Demand) -> Money {
        let prices = engine.state.billing.prices
        var region = SKU.anyRegion
        if d.tier == .spot, let s = config.scenario {
            region =
                s.sites.first { $0.phases.contains { $0.model == d.model } }?.region
                ?? s.contracts.first { $0.model == d.model }?.region ?? region
        }
        return prices.listPoint(SKU(gpuModel: d.model, region: region, tier: d.tier), at: now)?.price ?? .zero
    }

    // MARK: demand

    /// The target of the daily inference cycle at `t`: trough + (peak - trough) x
    /// (1 + cos(2 pi (hour - peak hour) / 24)) / 2, in whole replicas.
    public static func inferenceReplicas(_ inf: Scenario.Inference, at t: Timestamp) -> Int {
        let hour = Double((t.milliseconds / 1000) % 86400) / 3600
        let peak = Double(inf.peakGPUs)
        let trough = peak * 1000 / Double(inf.peakToTroughMilli)
        let gpus = trough + (peak - trough) * (1 + cos(2 * Double.pi * (hour - Double(inf.peakHour)) / 24)) / 2
        return Int((gpus / Double(inf.replicaGPUs)).rounded(.up))
    }

    mutating func inferenceTick() throws {
        let inf = config.scenario!.inference!
        let target = Self.inferenceReplicas(inf, at: now)
        stats.inferenceTarget = target * inf.replicaGPUs
        while inferenceReplicas.count < target {
            let spec = JobSpec(
                name: "inference", gpuModel: inf.model, gpusPerNode: inf.replicaGPUs, numNodes: 1, tier: .internal,
                run: "simulated")
            guard let id = try submit(spec, org: InternalOrg.id.rawValue, kind: .inference, duration: nil) else { break }
            inferenceReplicas.append(id)
        }
        // Scale down newest first; queued ones go before running ones (one pass: cancelling
        // a replica changes no other replica's state).
        let excess = inferenceReplicas.count - target
        var victims: [JobID] = []
        if excess > 0 {
            let queued = inferenceReplicas.indices.filter { engine.state.jobs[inferenceReplicas[$0]]?.state == .queued }
            let isQueued = Set(queued)
            let rest = inferenceReplicas.indices.filter { !isQueued.contains($0) }
            let order = Array((queued.reversed() + rest.reversed()).prefix(excess))
            let removed = Set(order)
            victims = order.map { inferenceReplicas[$0] }
            inferenceReplicas = inferenceReplicas.indices.filter { !removed.contains($0) }.map { inferenceReplicas[$0] }
        }
        for id in victims {
            try engine.execute(.cancelJob(CancelJob(job: id, by: "key-1")), at: now)
            guard let job = engine.state.jobs[id] else { continue }
            try end(job, job.allocations.filter { !$0.isEnded }, reason: "scaled down")
            if let job = engine.state.jobs[id], job.state.isTerminal, kinds[id] != nil {
                stats.finished += 1
                ended(job)
            }
        }
        let hour = Timestamp(milliseconds: (now.milliseconds / 3_600_000 + 1) * 3_600_000)
        heap.push(hour, .inferenceTick)
    }

    mutating func trainingArrival(_ k: Int) throws {
        let s = config.scenario!
        let t = s.training[k]
        stats.arrived += 1
        let perNode = s.models[t.model]!.gpusPerNode
        let nodes = max(1, t.gpus / perNode)
        let spec = JobSpec(
            name: t.name, gpuModel: t.model, gpusPerNode: t.gpus / nodes, numNodes: nodes, tier: .internal, run: "simulated")
        try submit(spec, org: InternalOrg.id.rawValue, kind: .training(k), duration: t.durationSeconds)
        heap.push(now.adding(seconds: t.everySeconds), .training(k))
    }

    /// Arrivals per millisecond scale by (reference / price) ^ elasticity.
    mutating func nextArrival(_ d: Scenario.Demand, _ k: Int) -> Timestamp {
        var perDay = Double(d.arrivalsPerDayMilli) / 1000
        if d.elasticityMilli > 0, let reference = referencePrices[k], reference.micros > 0 {
            let p = max(1, price(of: d).micros)
            perDay *= pow(Double(reference.micros) / Double(p), Double(d.elasticityMilli) / 1000)
        }
        return now.addingMillis(exponentialMillis(meanMillis: 86_400_000 / max(perDay, 1e-9)))
    }

    mutating func demandArrival(_ k: Int) throws {
        let s = config.scenario!
        let d = s.demand[k]
        stats.arrived += 1
        stats.arrivedByStream[k, default: 0] += 1
        let org = "\(d.name)-\(random.next(below: UInt64(d.orgs)) + 1)"
        try createOrg(org)
        let total = UInt64(d.sizes.reduce(0) { $0 + $1.weight })
        var pick = Int(random.next(below: total))
        var milli = d.sizes[0].milliGPUs
        for size in d.sizes {
            if pick < size.weight {
                milli = size.milliGPUs
                break
            }
            pick -= size.weight
        }
        // A fraction of one GPU runs on one GPU it shares.
        let gpus = max(1, milli / 1000)
        let perNode = s.models[d.model]!.gpusPerNode
        let nodes = max(1, gpus / perNode)
        let seconds = min(
            Limits.maxJobDurationSeconds, max(60, exponentialMillis(meanMillis: Double(d.meanSeconds) * 1000) / 1000))
        if d.tier == .reserved {
            let spec = ReservationSpec(
                gpuModel: d.model, gpus: gpus, start: .after(seconds: d.leadSeconds), durationSeconds: d.blockSeconds)
            do {
                let outcome = try engine.execute(
                    .createReservation(
                        CreateReservation(
                            org: OrgID(org), spec: spec, by: "key-1", leadSeconds: config.preemptionNoticeSeconds)), at: now)
                heap.push(now.adding(seconds: d.leadSeconds), .blockStart(stream: k, reservation: outcome.id))
            } catch is StratusError {
                stats.refused += 1
                stats.refusedByStream[k, default: 0] += 1
            }
        } else {
            var spec = JobSpec(
                name: d.name, gpuModel: d.model, gpusPerNode: gpus / nodes, numNodes: nodes, tier: d.tier, run: "simulated")
            if milli < 1000 { spec.gpuShareMilli = milli }
            if let r = d.perGPU {
                // Per node: the per-GPU amounts times its GPUs (or its share of one), rounded up.
                let units = milli < 1000 ? milli : gpus / nodes * 1000
                spec.nodeResources = NodeResources(
                    cpuMilli: (r.cpuMilli * units + 999) / 1000, memoryMiB: (r.memoryMiB * units + 999) / 1000)
            }
            if let id = try submit(spec, org: org, kind: .demand(k), duration: seconds) {
                abandonLater(id, stream: k, at: now.adding(seconds: d.patienceSeconds))
            }
        }
        heap.push(nextArrival(d, k), .demand(k))
    }

    /// A capacity block starts: its owner runs one job on all of it until the block ends.
    mutating func blockStart(_ k: Int, _ id: ReservationID) throws {
        let s = config.scenario!
        guard let r = engine.state.reservations[id], r.cancelledAt == nil else { return }
        let perNode = s.models[r.gpuModel]!.gpusPerNode
        let nodes = max(1, r.gpus / perNode)
        guard r.gpus <= perNode || r.gpus % perNode == 0 else { return }
        let spec = JobSpec(
            name: s.demand[k].name, gpuModel: r.gpuModel, gpusPerNode: r.gpus / nodes, numNodes: nodes, tier: .reserved,
            run: "simulated", reservation: id)
        try submit(spec, org: r.org.rawValue, kind: .demand(k), duration: now.milliseconds(until: r.end) / 1000)
        // The scheduler gives the block's work its notice to stop before the block ends.
        heap.push(max(now, r.end.adding(seconds: -config.preemptionNoticeSeconds)), .wake)
    }
}

extension Timestamp {
    func addingMillis(_ ms: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + ms) }
}
