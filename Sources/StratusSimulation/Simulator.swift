import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStore

/// A discrete-event run of the production state machine (scheduler and ledger,
/// unchanged) on a simulated clock: trace jobs arrive, the scheduler places them,
/// simulated agents start them at once and end them after their duration (or at a
/// preemption's deadline), and the ledger rates their usage. No sockets, no SQL, no wall
/// clock; the same inputs give the same run.
public struct Simulation {
    public struct Config: Sendable {
        public var fleet: FleetSpec
        public var jobs: [TraceJob]
        public var preemptionNoticeSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds
        /// GPUs per node the trace's jobs are shaped for (gangs of whole nodes beyond it).
        public var gpusPerNode = 8
        public var gpuModel = "H100"
        /// What an installed GPU costs, for cost per GPU-hour and margin.
        public var economics = GPUEconomics.h100
        /// The packing experiment: jobs arrive and never leave, until the GPUs they ask
        /// for reach this share of the fleet (basis points: 13,000 is 130%); nil: jobs
        /// run for their duration.
        public var packingBasisPoints: Int64?

        public init(fleet: FleetSpec, jobs: [TraceJob]) {
            self.fleet = fleet
            self.jobs = jobs
        }
    }

    public struct Progress: Sendable {
        public let now: Timestamp
        public let events: Int
        public let arrived: Int
        public let finished: Int
        public let queued: Int
    }

    enum Event: Comparable {
        case finish(JobID, attempt: Int)
        case stop(JobID, attempt: Int)
        case arrival(Int)

        static func < (a: Event, b: Event) -> Bool { a.order < b.order }

        /// Ends before arrivals at the same moment, so freed GPUs are seen at once.
        var order: (Int, String, Int) {
            switch self {
            case .finish(let j, let a): (0, j.rawValue, a)
            case .stop(let j, let a): (1, j.rawValue, a)
            case .arrival(let i): (2, "", i)
            }
        }
    }

    let config: Config
    public private(set) var engine: Engine
    public private(set) var now: Timestamp
    var heap = EventHeap<Event>()
    var jobIndex: [JobID: Int] = [:]
    var stats = Stats()

    struct Stats {
        var events = 0
        var arrived = 0
        var refused = 0
        var finished = 0
        var preemptions = 0
        var firstStart: [JobID: Timestamp] = [:]
        var ended: [JobID: Timestamp] = [:]
        /// GPU-seconds allocated, by tier.
        var busyGPUMillis: [Tier: Int64] = [:]
        var busy: [Tier: Int] = [:]
    }

    /// Allocated GPU time per tier in fixed buckets of simulated time, and the queue at
    /// each bucket's end: the time series of the report.
    public struct Series: Sendable {
        public let start: Timestamp
        public let bucketMillis: Int64
        /// Per bucket: allocated GPU-milliseconds by tier.
        public internal(set) var busy: [[Tier: Int64]] = []
        public internal(set) var queued: [Int] = []
    }
    public private(set) var series: Series

    public init(_ config: Config) throws {
        self.config = config
        let start = config.jobs.first?.submit ?? Timestamp(seconds: 0)
        now = start
        // About 500 buckets over the trace's arrivals, at least an hour each.
        let arrivals = start.milliseconds(until: config.jobs.last?.submit ?? start)
        series = Series(start: start, bucketMillis: max(3_600_000, (arrivals / 500 + 3_599_999) / 3_600_000 * 3_600_000))
        engine = try Engine(
            store: MemoryStore(), scheduler: TieredScheduler(preemptionNoticeSeconds: config.preemptionNoticeSeconds))
        try engine.execute(
            .bootstrap(
                CreateKey(
                    org: nil, role: .operatorAdmin, name: "simulator", secretHash: String(repeating: "0", count: 64), hint: "")
            ), at: start)
        try engine.execute(.applyFleet(config.fleet), at: start)
        try engine.execute(
            .setPrices(SetPrices(list: PriceBook.defaultPoints(at: start).map { ListPrice(sku: $0.0, point: $0.1) })), at: start)
        for org in Set(config.jobs.map(\.org)).sorted() where org != InternalOrg.id.rawValue {
            try engine.execute(.createOrg(CreateOrg(id: OrgID(org), displayName: org)), at: start)
        }
        var demand: Int64 = 0
        let capacity = Int64(config.fleet.nodes.reduce(0) { $0 + $1.gpuCount })
        for (i, job) in config.jobs.enumerated() {
            if let target = config.packingBasisPoints, demand * 10_000 >= target * capacity { break }
            demand += Int64(job.gpus)
            heap.push(job.submit, .arrival(i))
        }
    }

    /// Runs until every job has ended (or nothing more can happen).
    public mutating func run(progress: ((Progress) -> Void)? = nil) throws -> Summary {
        var lastReport = 0
        while let next = heap.peekTime {
            advance(to: next)
            while let (t, event) = heap.peek(), t == next {
                heap.pop()
                stats.events += 1
                try handle(event)
            }
            try scheduleRound()
            if let progress, stats.events - lastReport >= 10_000 {
                lastReport = stats.events
                progress(
                    Progress(
                        now: now, events: stats.events, arrived: stats.arrived, finished: stats.finished,
                        queued: engine.state.queue.count))
            }
        }
        return summary()
    }

    mutating func advance(to t: Timestamp) {
        let dt = now.milliseconds(until: t)
        if dt > 0 {
            for (tier, gpus) in stats.busy where gpus > 0 { stats.busyGPUMillis[tier, default: 0] += Int64(gpus) * dt }
            // Split [now, t) at bucket boundaries.
            var from = series.start.milliseconds(until: now)
            let to = series.start.milliseconds(until: t)
            while from < to {
                let bucket = Int(from / series.bucketMillis)
                let end = min(to, Int64(bucket + 1) * series.bucketMillis)
                while series.busy.count <= bucket {
                    series.busy.append([:])
                    series.queued.append(engine.state.queue.count)
                }
                for (tier, gpus) in stats.busy where gpus > 0 {
                    series.busy[bucket][tier, default: 0] += Int64(gpus) * (end - from)
                }
                series.queued[bucket] = engine.state.queue.count
                from = end
            }
        }
        now = max(now, t)
    }

    mutating func handle(_ event: Event) throws {
        switch event {
        case .arrival(let i):
            let t = config.jobs[i]
            stats.arrived += 1
            guard let shape = t.shape(perNode: config.gpusPerNode) else {
                stats.refused += 1
                return
            }
            let spec = JobSpec(
                name: "trace-\(i)", gpuModel: config.gpuModel, gpusPerNode: shape.gpusPerNode, numNodes: shape.nodes,
                tier: t.tier, run: "simulated")
            do {
                let outcome = try engine.execute(
                    .submitJob(SubmitJob(org: OrgID(t.org), spec: spec, idempotencyKey: nil, by: "key-1")), at: now)
                jobIndex[JobID(outcome.id)] = i
            } catch let e as StratusError {
                _ = e
                stats.refused += 1
            }
        case .finish(let id, let attempt), .stop(let id, let attempt):
            guard let job = engine.state.jobs[id], job.attempt == attempt else { return }
            var reason: String?
            if case .stop = event { reason = "stopped at its deadline" }
            for a in job.allocations where !a.isEnded {
                if case .stop = event, !a.stopRequested { continue }
                try end(job, a, reason: reason)
            }
        }
    }

    mutating func end(_ job: Job, _ a: Allocation, reason: String?) throws {
        try engine.execute(
            .allocationExited(
                AllocationExited(
                    job: job.id, node: a.node, exitCode: reason == nil ? 0 : nil, reason: reason, attempt: job.attempt)),
            at: now)
        stats.busy[job.spec.tier, default: 0] -= a.gpus.count
        if let after = engine.state.jobs[job.id], after.state.isTerminal {
            stats.finished += 1
            stats.ended[job.id] = now
        }
    }

    mutating func scheduleRound() throws {
        // With nothing queued and no capacity blocks, a round can decide nothing.
        if engine.state.queue.isEmpty, engine.state.reservations.isEmpty { return }
        let plan = try engine.schedule(at: now)
        for p in plan.placements {
            guard let job = engine.state.jobs[p.job], let i = jobIndex[p.job] else { continue }
            for a in job.allocations {
                try engine.execute(
                    .allocationStarted(AllocationStarted(job: job.id, node: a.node, attempt: job.attempt)), at: now)
                stats.busy[job.spec.tier, default: 0] += a.gpus.count
            }
            if stats.firstStart[job.id] == nil { stats.firstStart[job.id] = now }
            if config.packingBasisPoints == nil {
                heap.push(now.adding(seconds: config.jobs[i].durationSeconds), .finish(job.id, attempt: job.attempt))
            }
        }
        for p in plan.preemptions {
            for v in p.victims {
                guard let victim = engine.state.jobs[v] else { continue }
                stats.preemptions += 1
                heap.push(now.adding(seconds: p.noticeSeconds), .stop(v, attempt: victim.attempt))
            }
        }
        for s in plan.stops {
            guard let job = engine.state.jobs[s.job] else { continue }
            heap.push(max(now, s.deadline), .stop(s.job, attempt: job.attempt))
        }
    }

    // MARK: results

    public struct Distribution: Codable, Equatable, Sendable {
        public let count: Int
        public let mean: Double
        public let p50: Int64
        public let p99: Int64

        init(_ values: [Int64]) {
            let sorted = values.sorted()
            count = sorted.count
            mean = sorted.isEmpty ? 0 : (Double(sorted.reduce(0, +)) / Double(sorted.count) * 10).rounded() / 10
            func percentile(_ p: Int) -> Int64 { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, (sorted.count * p) / 100)] }
            p50 = percentile(50)
            p99 = percentile(99)
        }
    }

    public struct TierSummary: Codable, Equatable, Sendable {
        public let jobs: Int
        public let completed: Int
        /// Seconds from submission to first start.
        public let queueDelaySeconds: Distribution
        /// Seconds from submission to the end.
        public let completionSeconds: Distribution
        /// Allocated GPU-hours.
        public let gpuHours: Int64
        public let revenue: String
    }

    public struct Summary: Codable, Equatable, Sendable {
        public let gpus: Int
        public let jobs: Int
        public let refused: Int
        public let completed: Int
        public let unfinished: Int
        public let preemptions: Int
        public let events: Int
        public let start: String
        public let end: String
        public let simulatedDays: Double
        /// Allocated GPU time over installed GPU time, in basis points.
        public let utilizationBasisPoints: Int64
        public let tiers: [String: TierSummary]
        public let ledgerBalanced: Bool
        public let economics: EconomicsSummary
        /// The packing experiment's result, when it ran.
        public let packing: PackingSummary?
    }

    /// How well the arrived demand packed: GPUs allocated, and free GPUs no queued job can
    /// use (stranded by fragmentation).
    public struct PackingSummary: Codable, Equatable, Sendable {
        public let targetBasisPoints: Int64
        public let demandGpus: Int
        public let allocatedGpus: Int
        public let allocatedBasisPoints: Int64
        public let freeGpus: Int
        /// Free GPUs while jobs still wait: capacity the waiting shapes cannot use.
        public let strandedGpus: Int
        public let queuedJobs: Int
    }

    /// What the simulated span cost and earned, from `Config.economics` per installed GPU.
    public struct EconomicsSummary: Codable, Equatable, Sendable {
        public let cost: String
        public let revenue: String
        public let margin: String
        public let costPerInstalledGpuHour: String
        public let costPerUsedGpuHour: String?
    }

    func summary() -> Summary {
        let s = engine.state
        let gpus = s.nodes.values.reduce(0) { $0 + $1.gpuCount }
        let start = config.jobs.first?.submit ?? now
        let span = max(1, start.milliseconds(until: now))
        let busy = stats.busyGPUMillis.values.reduce(0, +)
        var tiers: [String: TierSummary] = [:]
        let byTier = Dictionary(grouping: s.jobs.values, by: \.spec.tier)
        for (tier, jobs) in byTier {
            let delays = jobs.compactMap { j in stats.firstStart[j.id].map { j.submittedAt.milliseconds(until: $0) / 1000 } }
            let completions = jobs.compactMap { j in
                stats.ended[j.id].flatMap { e in j.state == .succeeded ? j.submittedAt.milliseconds(until: e) / 1000 : nil }
            }
            tiers[tier.rawValue] = TierSummary(
                jobs: jobs.count, completed: completions.count, queueDelaySeconds: Distribution(delays),
                completionSeconds: Distribution(completions), gpuHours: (stats.busyGPUMillis[tier] ?? 0) / 3_600_000,
                revenue: s.billing.ledger.balance(.revenue(tier)).description)
        }
        // Cost of the installed fleet over the span, and revenue from the ledger.
        let installedMillis = Int128(gpus) * Int128(span)
        let cost = Money(
            micros: Int64(
                Int128(config.economics.yearly.total.micros) * installedMillis / (Int128(GPUEconomics.hoursPerYear) * 3_600_000)))
        let revenue = Tier.allCases.reduce(Int64(0)) { $0 + s.billing.ledger.balance(.revenue($1)).micros }
        func cents(_ micros: Int64) -> String {
            let c = Money.microsPerCent
            return Money(micros: (micros >= 0 ? micros + c / 2 : micros - c / 2) / c * c).description
        }
        let economics = EconomicsSummary(
            cost: cents(cost.micros), revenue: Money(micros: revenue).description, margin: cents(revenue - cost.micros),
            costPerInstalledGpuHour: config.economics.perInstalledHour.description,
            costPerUsedGpuHour: busy > 0 ? Money(micros: Int64(Int128(cost.micros) * 3_600_000 / Int128(busy))).description : nil)
        var packing: PackingSummary?
        if let target = config.packingBasisPoints {
            let free = s.gpuHolders.values.reduce(0) { $0 + $1.filter { $0 == nil }.count }
            let allocated = gpus - free
            let demand = s.jobs.values.reduce(0) { $0 + $1.spec.totalGPUs }
            packing = PackingSummary(
                targetBasisPoints: target, demandGpus: demand, allocatedGpus: allocated,
                allocatedBasisPoints: Int64(allocated) * 10_000 / Int64(max(1, gpus)), freeGpus: free,
                strandedGpus: s.queue.isEmpty ? 0 : free, queuedJobs: s.queue.count)
        }
        return Summary(
            gpus: gpus, jobs: stats.arrived, refused: stats.refused,
            completed: s.jobs.values.filter { $0.state == .succeeded }.count,
            unfinished: s.jobs.values.filter { !$0.state.isTerminal }.count, preemptions: stats.preemptions,
            events: stats.events, start: start.description, end: now.description,
            simulatedDays: (Double(span) / 86_400_000 * 100).rounded() / 100,
            utilizationBasisPoints: Int64(Int128(busy) * 10_000 / Int128(max(1, Int64(gpus) * span))), tiers: tiers,
            ledgerBalanced: s.billing.ledger.checkBalanced(), economics: economics, packing: packing)
    }
}

/// A binary min-heap of events by time; equal times pop in the events' own order, so a
/// run does not depend on insertion order or hashing.
struct EventHeap<E: Comparable> {
    private var items: [(Timestamp, E)] = []

    var isEmpty: Bool { items.isEmpty }
    var peekTime: Timestamp? { items.first?.0 }
    func peek() -> (Timestamp, E)? { items.first }

    private static func less(_ a: (Timestamp, E), _ b: (Timestamp, E)) -> Bool {
        a.0 != b.0 ? a.0 < b.0 : a.1 < b.1
    }

    mutating func push(_ t: Timestamp, _ e: E) {
        items.append((t, e))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    mutating func pop() -> (Timestamp, E)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < items.count, Self.less(items[l], items[m]) { m = l }
            if r < items.count, Self.less(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}

extension FleetSpec {
    /// `gpus` GPUs of `model` in nodes of `perNode`, racks of `nodesPerRack`, one site.
    public static func uniform(gpus: Int, model: String = "H100", perNode: Int = 8, nodesPerRack: Int = 4) -> FleetSpec {
        var spec = FleetSpec()
        spec.regions = ["sim"]
        let nodes = (gpus + perNode - 1) / perNode
        let watts = Int64(gpus) * Int64(GPUCatalog.model(named: model)?.powerWatts ?? 1000) * 2
        spec.sites = [SiteSpec(id: "sim-dc", region: "sim", powerBudgetKW: max(1, watts / 1000), pueMilli: 1250)]
        let racks = (nodes + nodesPerRack - 1) / nodesPerRack
        for r in 0..<racks { spec.racks.append(RackSpec(id: RackID("rack-\(r + 1)"), site: "sim-dc")) }
        for n in 0..<nodes {
            spec.nodes.append(
                NodeSpec(
                    id: NodeID("node-\(n + 1)"), rack: RackID("rack-\(n / nodesPerRack + 1)"), gpuModel: model, gpuCount: perNode,
                    labels: [:]))
        }
        return spec
    }
}
