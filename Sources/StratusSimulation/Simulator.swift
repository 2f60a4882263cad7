import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStore

/// A discrete-event run of the production state machine (scheduler and ledger,
/// unchanged) on a simulated clock: work arrives (from a trace, or from a scenario's
/// demand streams), the scheduler places it, simulated agents start it at once and end
/// it after its duration (or at a preemption's deadline), nodes fail and come back, and
/// the ledger rates the usage. No sockets, no SQL, no wall clock; the same inputs give the
/// same run.
public struct Simulation {
    public struct Config: Sendable {
        public var fleet: FleetSpec
        public var jobs: [TraceJob]
        public var preemptionNoticeSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds
        /// GPUs per node the trace's jobs are shaped for (gangs of whole nodes beyond it).
        public var gpusPerNode = 8
        public var gpuModel = "H100"
        /// What an installed GPU of the trace's fleet costs, for cost per GPU-hour and margin.
        public var economics = GPUEconomics.h100
        /// The packing experiment: jobs arrive and never leave, until the GPUs they ask
        /// for reach this share of the fleet (basis points: 13,000 is 130%); nil: jobs
        /// run for their duration.
        public var packingBasisPoints: Int64?
        /// A whole cloud to simulate instead of a trace on a fixed fleet.
        public var scenario: Scenario?
        /// Deterministic simulation testing: inject faults (agent restarts, duplicated,
        /// late and reordered agent reports, control-plane crashes replayed from the log;
        /// node failures come from the scenario) and check `Invariants` after every step.
        public var chaos = false
        /// Forget jobs this long after they end (`retire_jobs`, daily or sooner), so that a long run
        /// keeps only recent and live jobs; nil: keep every job.
        public var retainJobsSeconds: Int64?
        /// How often retired jobs are swept: the retention, between 10 minutes and a day.
        var retireEverySeconds: Int64 { min(86_400, max(600, retainJobsSeconds ?? 86_400)) }

        public init(fleet: FleetSpec, jobs: [TraceJob]) {
            self.fleet = fleet
            self.jobs = jobs
        }

        public init(scenario: Scenario) {
            self.fleet = FleetSpec()
            self.jobs = []
            self.scenario = scenario
            self.preemptionNoticeSeconds = scenario.preemptionNoticeSeconds
        }
    }

    public struct Progress: Sendable {
        public let now: Timestamp
        public let events: Int
        public let arrived: Int
        public let finished: Int
        public let queued: Int
        /// Share of the run done, in basis points (by simulated time or by jobs).
        public let doneBasisPoints: Int64
    }

    enum Event: Comparable {
        case finish(JobID, attempt: Int)
        case stop(JobID, attempt: Int)
        case repair(Int)
        case failure(Int)
        case install(Int)
        case contractEnd(Int)
        case monthEnd(Int64)
        case spotTick
        case inferenceTick
        case blockStart(stream: Int, reservation: String)
        case training(Int)
        case demand(Int)
        /// A queued job's owner gives up (the job is from demand stream `stream`).
        case abandon(JobID, stream: Int)
        case arrival(Int)
        /// A timer the server would have: a round at this moment (a capacity block's
        /// stop notice is due).
        case wake
        case round
        /// Forget jobs that ended more than the retention ago (daily, or sooner).
        case retire

        static func < (a: Event, b: Event) -> Bool { a.order < b.order }

        /// Ends before anything else at the same moment, so freed GPUs are seen at once;
        /// capacity changes before arrivals; the scheduling round last.
        var order: (Int, String, Int) {
            switch self {
            case .finish(let j, let a): (0, j.rawValue, a)
            case .stop(let j, let a): (1, j.rawValue, a)
            case .repair(let n): (2, "", n)
            case .failure(let n): (3, "", n)
            case .install(let c): (4, "", c)
            case .contractEnd(let c): (5, "", c)
            case .monthEnd(let p): (6, "", Int(p))
            case .spotTick: (7, "", 0)
            case .inferenceTick: (8, "", 0)
            case .blockStart(let s, let r): (9, r, s)
            case .training(let s): (10, "", s)
            case .demand(let s): (11, "", s)
            case .abandon(let j, _): (11, j.rawValue, -1)
            case .arrival(let i): (12, "", i)
            case .wake: (13, "", 0)
            case .round: (14, "", 0)
            case .retire: (15, "", 0)
            }
        }
    }

    /// Why a job exists: which stream made it.
    enum Kind: Equatable {
        case trace
        case inference
        case training(Int)
        case demand(Int)
    }

    /// GPUs that came into service together: a site's build-out phase, or a contract's
    /// ramp step. Owned cohorts cost their economics; bought ones their contract price.
    public struct Cohort: Sendable, Equatable {
        public let at: Timestamp
        public internal(set) var until: Timestamp
        public let gpus: Int
        public let model: String
        public let site: String
        public let economics: GPUEconomics
        /// Index into the scenario's contracts, for bought capacity.
        public let contract: Int?
        let nodes: Range<Int>
    }

    let config: Config
    public internal(set) var engine: Engine
    public private(set) var now: Timestamp
    let start: Timestamp
    /// The horizon of a scenario run; nil: until the trace's work is done.
    let end: Timestamp?
    var heap = EventHeap<Event>()
    /// When each demand stream's queued jobs give up waiting, outside the heap but for the
    /// earliest moment's (see `abandonLater`).
    var deadlines: [Int: Deadlines] = [:]
    var random: SeededRandom
    var stats = Stats()
    public internal(set) var cohorts: [Cohort] = []
    var nodeIDs: [NodeID] = []
    var agentToken: AgentTokenID?
    var orgsCreated = Set<String>()
    var kinds: [JobID: Kind] = [:]
    /// How long a placed job runs before it ends by itself; absent: until stopped.
    var durations: [JobID: Int64] = [:]
    var inferenceReplicas: [JobID] = []
    var referencePrices: [Int: Money] = [:]
    /// When the simulated agents started each run of a job on a node, per job (one table
    /// entry per job, not per node: a gang's nodes are one short list, in placement order).
    var starts: [JobID: [Started]] = [:]
    /// One run of a job on one node, and when the agent started it.
    struct Started {
        let attempt: Int
        let node: NodeID
        let at: Timestamp
    }
    /// Running sharers of each shared GPU ("node#gpu").
    var sharers: [String: Int] = [:]
    var ran = Invariants.Ran()
    var chaosRandom: SeededRandom
    var chaosStats = ChaosSummary()
    var lastReport: Command?
    var endedRuns: [(JobID, Int, NodeID)] = []
    var steps = 0
    var racksBySite: [String: Int] = [:]
    var roundPending = false
    var dirty = false
    public internal(set) var months: [MonthMark] = []

    struct Stats {
        var events = 0
        var arrived = 0
        var refused = 0
        var finished = 0
        var preemptions = 0
        var failures = 0
        /// First start of each job not yet ended.
        var firstStart: [JobID: Timestamp] = [:]
        /// Per tier, as jobs go: submitted, seconds queued before the first start, seconds
        /// from submission to success.
        var submitted: [Tier: Int] = [:]
        var delays: [Tier: [Int64]] = [:]
        var completions: [Tier: [Int64]] = [:]
        var succeeded = 0
        var trainingJobs = 0
        var trainingDelays: [Int64] = []
        /// GPUs every submitted job asks for (packing experiments).
        var demandGPUs = 0
        /// GPU-milliseconds allocated, by tier.
        var busyGPUMillis: [Tier: Int64] = [:]
        var busy: [Tier: Int] = [:]
        var inferenceTarget = 0
        var inferenceRunning = 0
        var inferenceTargetMillis: Int64 = 0
        var inferenceServedMillis: Int64 = 0
        var refusedByStream: [Int: Int] = [:]
        var abandonedByStream: [Int: Int] = [:]
        var arrivedByStream: [Int: Int] = [:]
    }

    /// The ledger at a month's end: cumulative revenue by tier and SLA credits.
    public struct MonthMark: Sendable, Equatable {
        public let period: Period
        public let revenue: [Tier: Int64]
        public let slaCredits: Int64
    }

    /// Allocated GPU time per tier in fixed buckets of simulated time, and the queue at
    /// each bucket's end: the time series of the report.
    public struct Series: Sendable {
        public let start: Timestamp
        public let bucketMillis: Int64
        /// Per bucket: allocated GPU-milliseconds by tier.
        public internal(set) var busy: [[Tier: Int64]] = []
        public internal(set) var queued: [Int] = []
        /// Per bucket: GPUs installed at its end.
        public internal(set) var installed: [Int] = []
    }
    public private(set) var series: Series
    var installedGPUs = 0

    public init(_ config: Config) throws {
        self.config = config
        let scenario = config.scenario
        start = scenario?.start ?? config.jobs.first?.submit ?? Timestamp(seconds: 0)
        end = scenario?.end
        now = start
        random = SeededRandom(seed: scenario?.seed ?? 1)
        chaosRandom = SeededRandom(seed: (scenario?.seed ?? 1) ^ 0x5EED_C4A0_5EED_C4A0)
        // About 500 buckets over the run, at least an hour each.
        let span = start.milliseconds(until: end ?? config.jobs.last?.submit ?? start)
        series = Series(start: start, bucketMillis: max(3_600_000, (span / 500 + 3_599_999) / 3_600_000 * 3_600_000))
        // Crashes replay the log; without them nothing reads it, so it is not kept.
        engine = try Engine(
            store: MemoryStore(keepsLog: config.chaos),
            scheduler: TieredScheduler(preemptionNoticeSeconds: config.preemptionNoticeSeconds))
        // Without faults nothing can make the memory log refuse an entry: apply each command
        // in one pass. With them (the fuzzer), every command is checked first as the server
        // does, and the check must predict what applying does.
        if !config.chaos {
            engine.snapshotEvery = nil
            engine.checksBeforeLogging = false
        }
        try engine.execute(
            .bootstrap(
                CreateKey(
                    org: nil, role: .operatorAdmin, name: "simulator", secretHash: String(repeating: "0", count: 64), hint: "")
            ), at: start)
        var prices = PriceBook.defaultPoints(at: start).map { ListPrice(sku: $0.0, point: $0.1) }
        if let scenario {
            let from = prices.first?.point.from ?? start
            for p in scenario.prices {
                prices.removeAll { $0.sku.gpuModel == p.model }
                let od = p.onDemand.micros
                for (tier, price) in [
                    (Tier.onDemand, p.onDemand), (.reserved, p.reserved ?? Money(micros: od * 80 / 100)),
                    (.spot, p.spot ?? Money(micros: od * 40 / 100)),
                ] {
                    prices.append(
                        ListPrice(
                            sku: SKU(gpuModel: p.model, region: SKU.anyRegion, tier: tier),
                            point: PricePoint(from: from, price: price)))
                }
            }
        }
        try engine.execute(.setPrices(SetPrices(list: prices)), at: start)
        if let scenario {
            try setUp(scenario)
        } else {
            try engine.execute(.applyFleet(config.fleet), at: start)
            let gpus = config.fleet.nodes.reduce(0) { $0 + $1.gpuCount }
            nodeIDs = config.fleet.nodes.map(\.id)
            cohorts.append(
                Cohort(
                    at: start, until: start, gpus: gpus, model: config.gpuModel,
                    site: config.fleet.sites.first?.id.rawValue ?? "",
                    economics: config.economics, contract: nil, nodes: 0..<nodeIDs.count))
            installedGPUs = gpus
            for org in Set(config.jobs.map(\.org)).sorted() where org != InternalOrg.id.rawValue {
                try createOrg(org)
            }
            var demand: Int64 = 0
            let capacity = Int64(gpus)
            for (i, job) in config.jobs.enumerated() {
                if let target = config.packingBasisPoints, demand * 10_000 >= target * capacity { break }
                demand += Int64(job.gpus)
                heap.push(job.submit, .arrival(i))
            }
        }
        if config.retainJobsSeconds != nil { heap.push(start.adding(seconds: config.retireEverySeconds), .retire) }
    }

    mutating func createOrg(_ org: String) throws {
        guard orgsCreated.insert(org).inserted else { return }
        try engine.execute(.createOrg(CreateOrg(id: OrgID(org), displayName: org)), at: now)
    }

    /// Runs until every job has ended (trace) or the horizon (scenario).
    public mutating func run(progress: ((Progress) -> Void)? = nil) throws -> Summary {
        var lastReport = 0
        while let next = heap.peekTime {
            if let end, next > end { break }
            advance(to: next)
            while let (t, event) = heap.peek(), t == next {
                heap.pop()
                stats.events += 1
                try handle(event)
            }
            if config.scenario.map({ $0.schedulingIntervalSeconds == 0 }) ?? true {
                try scheduleRound()
            } else if dirty, !roundPending {
                let interval = config.scenario!.schedulingIntervalSeconds * 1000
                let at = Timestamp(milliseconds: (now.milliseconds / interval + 1) * interval)
                heap.push(at, .round)
                roundPending = true
            }
            if config.chaos {
                try injectFaults()
                try verify()
            }
            if let progress, stats.events - lastReport >= 1_000 {
                lastReport = stats.events
                progress(
                    Progress(
                        now: now, events: stats.events, arrived: stats.arrived, finished: stats.finished,
                        queued: engine.state.queue.count, doneBasisPoints: doneBasisPoints()))
            }
        }
        let running = engine.state.jobs.values.filter { !$0.state.isTerminal }.count
        if let end {
            advance(to: end)
            try stopAll()
        }
        if config.chaos { try verify(final: true) }
        return summary(unfinished: running)
    }

    func doneBasisPoints() -> Int64 {
        if let end { return Int64(start.milliseconds(until: now)) * 10_000 / max(1, start.milliseconds(until: end)) }
        return Int64(stats.finished) * 10_000 / Int64(max(1, config.jobs.count))
    }

    mutating func advance(to t: Timestamp) {
        let dt = now.milliseconds(until: t)
        if dt > 0 {
            for (tier, gpus) in stats.busy where gpus > 0 { stats.busyGPUMillis[tier, default: 0] += Int64(gpus) * dt }
            stats.inferenceTargetMillis += Int64(stats.inferenceTarget) * dt
            stats.inferenceServedMillis += Int64(min(stats.inferenceRunning, stats.inferenceTarget)) * dt
            // Split [now, t) at bucket boundaries.
            var from = series.start.milliseconds(until: now)
            let to = series.start.milliseconds(until: t)
            while from < to {
                let bucket = Int(from / series.bucketMillis)
                let end = min(to, Int64(bucket + 1) * series.bucketMillis)
                while series.busy.count <= bucket {
                    series.busy.append([:])
                    series.queued.append(engine.state.queue.count)
                    series.installed.append(installedGPUs)
                }
                for (tier, gpus) in stats.busy where gpus > 0 {
                    series.busy[bucket][tier, default: 0] += Int64(gpus) * (end - from)
                }
                series.queued[bucket] = engine.state.queue.count
                series.installed[bucket] = installedGPUs
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
            var spec = JobSpec(
                name: "trace-\(i)", gpuModel: config.gpuModel, gpusPerNode: shape.gpusPerNode, numNodes: shape.nodes,
                tier: t.tier, run: "simulated")
            spec.nodeResources = t.resources
            spec.gpuShareMilli = t.gpuShareMilli
            if let placement = t.placement { spec.placement = placement }
            try submit(spec, org: t.org, kind: .trace, duration: t.durationSeconds)
        case .finish(let id, let attempt), .stop(let id, let attempt):
            guard let job = engine.state.jobs[id], job.attempt == attempt else { return }
            var reason: String?
            if case .stop = event { reason = "stopped at its deadline" }
            var isStop = false
            if case .stop = event { isStop = true }
            // Usually every allocation is live: the list is then passed as it is, not copied.
            let all = !isStop && !job.allocations.contains { $0.isEnded }
            try end(
                job, all ? job.allocations : job.allocations.filter { !$0.isEnded && (!isStop || $0.stopRequested) },
                reason: reason)
        case .round:
            roundPending = false
            dirty = false
            try scheduleRound()
            return
        case .wake:
            try scheduleRound(force: true)
            return
        case .install(let c): try install(c)
        case .contractEnd(let c): try endContract(c)
        case .failure(let n): try fail(n)
        case .repair(let n): try repair(n)
        case .monthEnd(let p):
            try closeMonth(Period(index: p))
            return
        case .retire:
            if let retain = config.retainJobsSeconds {
                try engine.execute(.retireJobs(RetireJobs(endedBefore: now.adding(seconds: -retain))), at: now)
                // Only while something else is due (a trace run ends when nothing is).
                if !heap.isEmpty { heap.push(now.adding(seconds: config.retireEverySeconds), .retire) }
            }
            return
        case .spotTick:
            // Only a price that moved can change what the scheduler decides.
            if try !spotTick() { return }
        case .inferenceTick: try inferenceTick()
        case .training(let s): try trainingArrival(s)
        case .demand(let s): try demandArrival(s)
        case .blockStart(let s, let r): try blockStart(s, ReservationID(r))
        case .abandon(let id, let stream):
            abandonDue(stream)
            // Its owner gave up waiting: a job that never started is cancelled.
            guard engine.state.jobs[id]?.state == .queued, stats.firstStart[id] == nil else { return }
            try engine.execute(.cancelJob(CancelJob(job: id, by: "key-1")), at: now)
            if case .demand(let k) = kinds[id] { stats.abandonedByStream[k, default: 0] += 1 }
            stats.finished += 1
            if let job = engine.state.jobs[id] { ended(job) }
        }
        dirty = true
    }

    /// One demand stream's give-up moments, in time order, with how many of the earliest
    /// moment's are in the heap. A job waits at most its stream's patience, so a stream's
    /// moments come in submit order: the heap holds one moment's events per stream, not
    /// one event per queued job (most of which start long before they would give up), and
    /// pops them where it would have, so runs are the same.
    struct Deadlines {
        var queue: [(at: Timestamp, job: JobID)] = []
        /// The queue's first entry still waiting to go into the heap.
        var head = 0
        var inHeap = 0
        var heapTime: Timestamp?
    }

    /// Job `id` of demand stream `k` gives up at `at` if it has not started by then.
    mutating func abandonLater(_ id: JobID, stream k: Int, at: Timestamp) {
        var d = deadlines.removeValue(forKey: k) ?? Deadlines()
        defer { deadlines[k] = d }
        if d.inHeap == 0 || d.heapTime.map({ at <= $0 }) == true {
            // Due no later than the moment in the heap (or nothing is there): into the heap.
            heap.push(at, .abandon(id, stream: k))
            if d.inHeap == 0 { d.heapTime = at }
            d.inHeap += 1
        } else if d.head == d.queue.count || d.queue[d.queue.count - 1].at <= at {
            d.queue.append((at, id))
        } else {
            // Not in order (a stream's patience is fixed, so this does not happen): placed
            // after every moment before or at its own.
            var position = d.queue.count
            while position > d.head, d.queue[position - 1].at > at { position -= 1 }
            d.queue.insert((at, id), at: position)
        }
    }

    /// One of stream `k`'s give-up events popped: once the last of its moment's has, the
    /// next moment's go into the heap.
    mutating func abandonDue(_ k: Int) {
        guard var d = deadlines.removeValue(forKey: k) else { return }
        defer { deadlines[k] = d }
        d.inHeap -= 1
        guard d.inHeap == 0, d.head < d.queue.count else { return }
        let at = d.queue[d.head].at
        while d.head < d.queue.count, d.queue[d.head].at == at {
            heap.push(at, .abandon(d.queue[d.head].job, stream: k))
            d.inHeap += 1
            d.head += 1
        }
        d.heapTime = at
        // The queue's front is dropped once it is most of the list (amortized: no shifting per pop).
        if d.head > 1024, d.head * 2 > d.queue.count {
            d.queue.removeFirst(d.head)
            d.head = 0
        }
    }

    /// Submits a job; a refusal (quota, money, no such capacity) counts and changes nothing.
    @discardableResult
    mutating func submit(_ spec: JobSpec, org: String, kind: Kind, duration: Int64?) throws -> JobID? {
        do {
            let outcome = try engine.execute(
                .submitJob(SubmitJob(org: OrgID(org), spec: spec, idempotencyKey: nil, by: "key-1")), at: now)
            let id = JobID(outcome.id)
            kinds[id] = kind
            if let duration { durations[id] = duration }
            stats.submitted[spec.tier, default: 0] += 1
            stats.demandGPUs += spec.totalGPUs
            if case .training = kind { stats.trainingJobs += 1 }
            return id
        } catch is StratusError {
            stats.refused += 1
            if case .demand(let s) = kind { stats.refusedByStream[s, default: 0] += 1 }
            return nil
        }
    }

    mutating func end(_ job: consuming Job, _ a: Allocation, reason: String?, exitCode: Int32? = 0) throws {
        try end(job, [a], reason: reason, exitCode: exitCode)
    }

    /// Allocations `allocs` of `job` end now: the agents' exits arrive together, as one
    /// `agent_reports` command (one `allocation_exited` when there is one). The job and its
    /// list are let go before the command applies: a copy held across it would make the
    /// state copy the job's record and its allocations when it changes them.
    mutating func end(_ job: consuming Job, _ allocs: consuming [Allocation], reason: String?, exitCode: Int32? = 0)
        throws
    {
        guard !allocs.isEmpty else { return }
        let exits = allocs.map { a in
            AllocationExited(
                job: job.id, node: a.node, exitCode: reason == nil ? exitCode : nil, reason: reason, attempt: job.attempt)
        }
        let runs = Runs(job, allocs)
        _ = consume job
        _ = consume allocs
        try send(exits, one: Command.allocationExited) { .agentReports(AgentReports(exited: $0)) }
        released(runs, settle: false)
        settle(runs.job)
    }

    /// Delivers agents' reports that arrive together: one command per
    /// `Limits.maxReportsPerCommand` of them, a lone report as its own command.
    mutating func send<Report>(_ reports: [Report], one: (Report) -> Command, batch: ([Report]) -> Command) throws {
        for first in stride(from: 0, to: reports.count, by: Limits.maxReportsPerCommand) {
            let part = Array(reports[first..<min(reports.count, first + Limits.maxReportsPerCommand)])
            let command = part.count == 1 ? one(part[0]) : batch(part)
            try engine.execute(command, at: now)
            lastReport = command
        }
    }

    /// What the simulator's bookkeeping needs of a job's runs that end: the job, its run,
    /// and each node with its GPUs (how many, and the first, for a shared one).
    struct Runs {
        let job: JobID
        let attempt: Int
        let tier: Tier
        /// The share of one GPU each of its runs holds (thousandths); nil: whole GPUs.
        let share: Int?
        let nodes: [(node: NodeID, gpus: Int, first: Int?)]

        init(_ job: borrowing Job, _ allocs: borrowing [Allocation]) {
            self.job = job.id
            attempt = job.attempt
            tier = job.spec.tier
            share = job.spec.gpuShareMilli
            var nodes: [(node: NodeID, gpus: Int, first: Int?)] = []
            nodes.reserveCapacity(allocs.count)
            for k in allocs.indices { nodes.append((allocs[k].node, allocs[k].gpus.count, allocs[k].gpus.first)) }
            self.nodes = nodes
        }
    }

    /// Bookkeeping after allocation `a` of `job` was released (by its end, a stop or a
    /// lost node); with `settle`, also whether the job is over.
    mutating func released(_ job: Job, _ a: Allocation, settle settles: Bool = true) {
        released(Runs(job, [a]), settle: settles)
    }

    /// `released` for the runs of one job at once (the job's kind and runs are looked up
    /// once).
    mutating func released(_ runs: Runs, settle settles: Bool = true) {
        if let i = starts.index(forKey: runs.job) {
            let isInference = kinds[runs.job] == .inference
            var busy = 0
            // A gang's runs end in the order they started: each is looked for from just
            // after the previous one, and the ended ones are dropped in one pass at the end
            // (removing each where it was would shift the rest of the list every time).
            var ended: [Int] = []
            ended.reserveCapacity(runs.nodes.count)
            var next = 0
            // (A job holds one allocation per node in a run: a node's start matches once.)
            // In its own scope: the list read must be let go before it is changed below.
            do {
                let list = starts.values[i]
                for a in runs.nodes {
                    var found: Int?
                    for step in 0..<list.count {
                        let k = (next + step) % list.count
                        if list[k].node == a.node, list[k].attempt == runs.attempt {
                            found = k
                            break
                        }
                    }
                    guard let k = found else { continue }
                    next = k + 1
                    ended.append(k)
                    let started = list[k].at
                    let gpus = a.gpus
                    if let g = a.first, runs.share != nil {
                        // A shared GPU is allocated while any of its sharers runs.
                        let slot = "\(a.node)#\(g)"
                        sharers[slot, default: 0] -= 1
                        if sharers[slot] == 0 {
                            sharers[slot] = nil
                            busy += 1
                        }
                    } else {
                        busy += gpus
                    }
                    if isInference { stats.inferenceRunning -= gpus }
                    ran.allocations += 1
                    ran.gpuMilliseconds += UsageRecord.gpuMilliseconds(
                        gpus: gpus, share: runs.share, milliseconds: started.milliseconds(until: now))
                    if config.chaos {
                        endedRuns.append((runs.job, runs.attempt, a.node))
                        if endedRuns.count > 64 { endedRuns.removeFirst() }
                    }
                }
            }
            if busy != 0 { stats.busy[runs.tier, default: 0] -= busy }
            if ended.count == starts.values[i].count {
                starts.remove(at: i)
            } else if !ended.isEmpty {
                ended.sort()
                var kept = 0
                var e = 0
                for k in starts.values[i].indices {
                    if e < ended.count, ended[e] == k {
                        e += 1
                        continue
                    }
                    starts.values[i].swapAt(kept, k)
                    kept += 1
                }
                starts.values[i].removeLast(starts.values[i].count - kept)
            }
        }
        if settles { settle(runs.job) }
    }

    /// If job `id` is over, counts it and forgets it.
    mutating func settle(_ id: JobID) {
        if let after = engine.state.jobs[id], after.state.isTerminal {
            stats.finished += 1
            durations[id] = nil
            if kinds[id] == .inference { inferenceReplicas.removeAll { $0 == id } }
            ended(after)
        }
    }

    /// Job `job` ended (once: later calls do nothing): its completion time counts, and the
    /// simulator forgets it.
    mutating func ended(_ job: Job) {
        guard kinds.removeValue(forKey: job.id) != nil else { return }
        stats.firstStart[job.id] = nil
        if job.state == .succeeded {
            stats.succeeded += 1
            stats.completions[job.spec.tier, default: []].append(job.submittedAt.milliseconds(until: now) / 1000)
        }
    }

    /// One scheduling round. With nothing queued a round can only stop the work of a
    /// capacity block that is ending, and a timer (`wake`) forces the round that does.
    mutating func scheduleRound(force: Bool = false) throws {
        if engine.state.queue.isEmpty, !force || engine.state.reservations.isEmpty { return }
        let plan = try engine.schedule(at: now)
        // The placed work's agents start it; their reports arrive together.
        var started: [AllocationStarted] = []
        for p in plan.placements {
            guard let job = engine.state.jobs[p.job] else { continue }
            // Per job, not per node: its kind, its tier's busy count, its list of runs.
            var runs = starts[job.id] ?? []
            let isInference = kinds[job.id] == .inference
            var busy = 0
            for a in job.allocations where !a.isEnded {
                started.append(AllocationStarted(job: job.id, node: a.node, attempt: job.attempt))
                runs.append(Started(attempt: job.attempt, node: a.node, at: now))
                if let g = a.gpus.first, job.spec.gpuShareMilli != nil {
                    let slot = "\(a.node)#\(g)"
                    sharers[slot, default: 0] += 1
                    if sharers[slot] == 1 { busy += 1 }
                } else {
                    busy += a.gpus.count
                }
                if isInference { stats.inferenceRunning += a.gpus.count }
            }
            if busy != 0 { stats.busy[job.spec.tier, default: 0] += busy }
            starts[job.id] = runs.isEmpty ? nil : runs
            if stats.firstStart[job.id] == nil {
                stats.firstStart[job.id] = now
                let delay = job.submittedAt.milliseconds(until: now) / 1000
                stats.delays[job.spec.tier, default: []].append(delay)
                if case .training = kinds[job.id] { stats.trainingDelays.append(delay) }
            }
            // Work placed in a capacity block gets its stop notice from a round when the
            // block is about to end; make sure one runs then (also after a requeue).
            if let r = job.spec.reservation, let block = engine.state.reservations[r] {
                heap.push(max(now, block.end.adding(seconds: -config.preemptionNoticeSeconds)), .wake)
            }
            if config.packingBasisPoints == nil, let d = durations[job.id] {
                heap.push(now.adding(seconds: d), .finish(job.id, attempt: job.attempt))
            }
        }
        try send(started, one: Command.allocationStarted) { .agentReports(AgentReports(started: $0)) }
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

    /// At the horizon: work still running ends there, so its usage is billed.
    mutating func stopAll() throws {
        for id in engine.state.jobs.keys.sorted() {
            guard let job = engine.state.jobs[id], !job.state.isTerminal else { continue }
            try engine.execute(.cancelJob(CancelJob(job: id, by: "key-1")), at: now)
            guard let current = engine.state.jobs[id] else { continue }
            try end(current, current.allocations.filter { !$0.isEnded }, reason: "the simulation's horizon")
        }
    }
}

// MARK: results

extension Simulation {
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
        public let name: String?
        public let gpus: Int
        public let jobs: Int
        public let refused: Int
        public let completed: Int
        public let unfinished: Int
        public let preemptions: Int
        public let nodeFailures: Int
        public let events: Int
        public let start: String
        public let end: String
        public let simulatedDays: Double
        /// Allocated GPU time over installed GPU time, in basis points.
        public let utilizationBasisPoints: Int64
        public let tiers: [String: TierSummary]
        public let ledgerBalanced: Bool
        public let economics: EconomicsSummary
        public let finance: FinanceSummary
        public let contracts: [ContractSummary]
        public let internalDemand: InternalSummary?
        public let demand: [StreamSummary]
        /// The packing experiment's result, when it ran.
        public let packing: PackingSummary?
        /// What `--faults` injected (every invariant held after every step, or the run
        /// would have failed).
        public let chaos: ChaosSummary?
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

    /// What the simulated span cost and earned: owned GPUs at their yearly cost
    /// (`GPUEconomics`), bought ones at their contract price; revenue net of SLA credits.
    public struct EconomicsSummary: Codable, Equatable, Sendable {
        public let cost: String
        public let revenue: String
        public let margin: String
        public let costPerInstalledGpuHour: String
        public let costPerUsedGpuHour: String?
    }

    /// Cash by month: capex when GPUs and facility arrive, operations (power and O&M),
    /// contract payments, revenue net of SLA credits; payback is the month the cumulative
    /// net turns non-negative (projected from the last month's net past the horizon).
    public struct FinanceSummary: Codable, Equatable, Sendable {
        public let capex: String
        public let operations: String
        public let contractPayments: String
        public let revenue: String
        public let slaCredits: String
        public let netCash: String
        public let paybackMonths: Int?
        public let paybackProjected: Bool
        public let months: [MonthRow]
    }

    public struct MonthRow: Codable, Equatable, Sendable {
        public let month: String
        public let installedGpus: Int
        public let revenue: String
        public let slaCredits: String
        public let capex: String
        public let operations: String
        public let contracts: String
        public let net: String
        public let cumulative: String
    }

    public struct ContractSummary: Codable, Equatable, Sendable {
        public let name: String
        public let commitment: String
        public let paid: String
        /// Paid over the commitment, in basis points.
        public let drawdownBasisPoints: Int64
        /// What the ramp pays over the whole term.
        public let projectedTotal: String
        public let projectedShortfall: String
        public let takeOrPay: Bool
    }

    public struct InternalSummary: Codable, Equatable, Sendable {
        public let inferenceDemandGpuHours: Int64
        public let inferenceServedGpuHours: Int64
        public let inferenceServedBasisPoints: Int64
        public let trainingJobs: Int
        public let trainingStarted: Int
        public let trainingQueueDelaySeconds: Distribution
    }

    public struct StreamSummary: Codable, Equatable, Sendable {
        public let name: String
        public let tier: String
        public let arrived: Int
        public let refused: Int
        /// Jobs cancelled by their owner after waiting longer than the stream's patience.
        public let abandoned: Int
    }

    static let millisPerYear = Int128(GPUEconomics.hoursPerYear) * 3_600_000

    func summary(unfinished: Int) -> Summary {
        let s = engine.state
        let runEnd = end ?? now
        let span = max(1, start.milliseconds(until: runEnd))
        let busy = stats.busyGPUMillis.values.reduce(0, +)
        var tiers: [String: TierSummary] = [:]
        for (tier, jobs) in stats.submitted {
            let completions = stats.completions[tier] ?? []
            tiers[tier.rawValue] = TierSummary(
                jobs: jobs, completed: completions.count, queueDelaySeconds: Distribution(stats.delays[tier] ?? []),
                completionSeconds: Distribution(completions), gpuHours: (stats.busyGPUMillis[tier] ?? 0) / 3_600_000,
                revenue: s.billing.ledger.balance(.revenue(tier)).description)
        }
        let f = finance(runEnd: runEnd)
        let gpus = s.nodes.values.reduce(0) { $0 + $1.gpuCount }
        func cents(_ micros: Int64) -> String {
            let c = Money.microsPerCent
            return Money(micros: (micros >= 0 ? micros + c / 2 : micros - c / 2) / c * c).description
        }
        let perInstalled =
            cohorts.count == 1 && cohorts[0].contract == nil
            ? cohorts[0].economics.perInstalledHour
            : Money(micros: Int64(Int128(f.cost) * 3_600_000 / max(1, f.installedMillis)))
        let economics = EconomicsSummary(
            cost: cents(f.cost), revenue: Money(micros: f.revenue - f.credits).description,
            margin: cents(f.revenue - f.credits - f.cost), costPerInstalledGpuHour: perInstalled.description,
            costPerUsedGpuHour: busy > 0 ? Money(micros: Int64(Int128(f.cost) * 3_600_000 / Int128(busy))).description : nil)
        var packing: PackingSummary?
        if let target = config.packingBasisPoints {
            let free =
                s.gpuHolders.values.reduce(0) { $0 + $1.filter { $0 == nil }.count }
                - s.gpuShares.values.reduce(0) { $0 + $1.count }
            let allocated = gpus - free
            let demand = stats.demandGPUs
            packing = PackingSummary(
                targetBasisPoints: target, demandGpus: demand, allocatedGpus: allocated,
                allocatedBasisPoints: Int64(allocated) * 10_000 / Int64(max(1, gpus)), freeGpus: free,
                strandedGpus: s.queue.isEmpty ? 0 : free, queuedJobs: s.queue.count)
        }
        var internalDemand: InternalSummary?
        if let scenario = config.scenario, scenario.inference != nil || !scenario.training.isEmpty {
            let delays = stats.trainingDelays
            internalDemand = InternalSummary(
                inferenceDemandGpuHours: stats.inferenceTargetMillis / 3_600_000,
                inferenceServedGpuHours: stats.inferenceServedMillis / 3_600_000,
                inferenceServedBasisPoints: stats.inferenceTargetMillis > 0
                    ? stats.inferenceServedMillis * 10_000 / stats.inferenceTargetMillis : 10_000,
                trainingJobs: stats.trainingJobs, trainingStarted: delays.count, trainingQueueDelaySeconds: Distribution(delays))
        }
        let streams = (config.scenario?.demand ?? []).enumerated().map { k, d in
            StreamSummary(
                name: d.name, tier: d.tier.rawValue, arrived: stats.arrivedByStream[k] ?? 0,
                refused: stats.refusedByStream[k] ?? 0, abandoned: stats.abandonedByStream[k] ?? 0)
        }
        return Summary(
            name: config.scenario?.name, gpus: gpus, jobs: stats.arrived, refused: stats.refused,
            completed: stats.succeeded, unfinished: unfinished,
            preemptions: stats.preemptions, nodeFailures: stats.failures, events: stats.events, start: start.description,
            end: runEnd.description, simulatedDays: (Double(span) / 86_400_000 * 100).rounded() / 100,
            utilizationBasisPoints: Int64(Int128(busy) * 10_000 / max(1, f.installedMillis)), tiers: tiers,
            ledgerBalanced: s.billing.ledger.checkBalanced(), economics: economics, finance: f.summary,
            contracts: f.contracts, internalDemand: internalDemand, demand: streams, packing: packing,
            chaos: config.chaos ? chaosStats : nil)
    }

    struct Finance {
        var cost: Int64 = 0
        var revenue: Int64 = 0
        var credits: Int64 = 0
        var installedMillis: Int128 = 0
        var summary: FinanceSummary
        var contracts: [ContractSummary]
    }

    /// Cash and cost by month from the cohorts (exact: micro-dollars, integer GPU-milliseconds).
    func finance(runEnd: Timestamp) -> Finance {
        let first = Period(containing: start)
        let last = Period(containing: Timestamp(milliseconds: max(start.milliseconds, runEnd.milliseconds - 1)))
        let count = Int(last.index - first.index + 1)
        var capex = [Int64](repeating: 0, count: count)
        var operations = [Int64](repeating: 0, count: count)
        var payments = [Int64](repeating: 0, count: count)
        var installedAtEnd = [Int](repeating: 0, count: count)
        var cost: Int64 = 0
        var installedMillis: Int128 = 0
        func overlap(_ a: Timestamp, _ b: Timestamp, _ c: Timestamp, _ d: Timestamp) -> Int64 {
            max(0, min(b, d).milliseconds - max(a, c).milliseconds)
        }
        var paid = [Int64](repeating: 0, count: config.scenario?.contracts.count ?? 0)
        var projected = paid
        for cohort in cohorts {
            let until = config.scenario == nil ? runEnd : cohort.until
            let y = cohort.economics.yearly
            installedMillis += Int128(cohort.gpus) * Int128(overlap(cohort.at, until, start, runEnd))
            if let k = cohort.contract {
                let price = config.scenario!.contracts[k].pricePerGPUHour.micros
                projected[k] += Int64(
                    Int128(price) * Int128(cohort.gpus) * Int128(cohort.at.milliseconds(until: until)) / 3_600_000)
            } else if cohort.at < runEnd || config.scenario == nil {
                let m = Int(Period(containing: cohort.at).index - first.index)
                if m >= 0, m < count {
                    capex[m] +=
                        Int64(cohort.gpus) * (cohort.economics.gpuCapex.micros + cohort.economics.facilityCapexPerGPU.micros)
                }
            }
            for m in 0..<count {
                let p = Period(index: first.index + Int64(m))
                let ms = overlap(cohort.at, until, max(p.start, start), min(p.end, runEnd))
                let monthEnd = min(p.end, runEnd)
                if cohort.at < monthEnd, until >= monthEnd { installedAtEnd[m] += cohort.gpus }
                guard ms > 0 else { continue }
                let gpuMillis = Int128(cohort.gpus) * Int128(ms)
                if let k = cohort.contract {
                    let price = config.scenario!.contracts[k].pricePerGPUHour.micros
                    let amount = Int64(Int128(price) * gpuMillis / 3_600_000)
                    payments[m] += amount
                    paid[k] += amount
                    cost += amount
                } else {
                    operations[m] += Int64(Int128(y.operations.micros + y.power.micros) * gpuMillis / Self.millisPerYear)
                    cost += Int64(Int128(y.total.micros) * gpuMillis / Self.millisPerYear)
                }
            }
        }
        var contracts: [ContractSummary] = []
        for (k, c) in (config.scenario?.contracts ?? []).enumerated() {
            let commitment = c.commitment?.micros ?? projected[k]
            let shortfall = max(0, commitment - projected[k])
            // Take-or-pay: a shortfall is paid when the term ends, if that is in the run.
            let termEnd = Period(index: first.index + Int64(c.startMonth + c.termMonths)).start
            if c.takeOrPay, shortfall > 0, termEnd <= runEnd {
                let m = min(count - 1, Int(Period(containing: termEnd).index - first.index) - 1)
                payments[max(0, m)] += shortfall
                paid[k] += shortfall
                cost += shortfall
            }
            contracts.append(
                ContractSummary(
                    name: c.name, commitment: Money(micros: commitment).description, paid: Money(micros: paid[k]).description,
                    drawdownBasisPoints: Int64(Int128(paid[k]) * 10_000 / Int128(max(1, commitment))),
                    projectedTotal: Money(micros: projected[k]).description,
                    projectedShortfall: Money(micros: shortfall).description, takeOrPay: c.takeOrPay))
        }
        // Revenue and credits per month from the ledger's month-end marks.
        let ledger = engine.state.billing.ledger
        let totalRevenue = Tier.allCases.reduce(Int64(0)) { $0 + ledger.balance(.revenue($1)).micros }
        let totalCredits = ledger.balance(.slaCredits).micros
        var rows: [MonthRow] = []
        var cumulative: Int64 = 0
        var previous: (Int64, Int64) = (0, 0)
        var payback: Int?
        var lastNet: Int64 = 0
        let totalCapex = capex.reduce(0, +)
        for m in 0..<count {
            let p = Period(index: first.index + Int64(m))
            let mark = months.first { $0.period == p }
            let rev = mark.map { $0.revenue.values.reduce(0, +) } ?? totalRevenue
            let cred = mark?.slaCredits ?? totalCredits
            let revenue = rev - previous.0
            let credits = cred - previous.1
            previous = (rev, cred)
            let net = revenue - credits - capex[m] - operations[m] - payments[m]
            cumulative += net
            // The run-rate a projection uses: the month's net before capex.
            lastNet = net + capex[m]
            if payback == nil, totalCapex > 0, cumulative >= 0 { payback = m + 1 }
            rows.append(
                MonthRow(
                    month: p.description, installedGpus: installedAtEnd[m], revenue: Money(micros: revenue).description,
                    slaCredits: Money(micros: credits).description, capex: Money(micros: capex[m]).description,
                    operations: Money(micros: operations[m]).description, contracts: Money(micros: payments[m]).description,
                    net: Money(micros: net).description, cumulative: Money(micros: cumulative).description))
        }
        var projectedPayback = false
        if payback == nil, totalCapex > 0, lastNet > 0, cumulative < 0 {
            payback = count + Int((-cumulative + lastNet - 1) / lastNet)
            projectedPayback = true
        }
        let summary = FinanceSummary(
            capex: Money(micros: totalCapex).description, operations: Money(micros: operations.reduce(0, +)).description,
            contractPayments: Money(micros: payments.reduce(0, +)).description,
            revenue: Money(micros: totalRevenue).description, slaCredits: Money(micros: totalCredits).description,
            netCash: Money(micros: cumulative).description, paybackMonths: payback, paybackProjected: projectedPayback,
            months: rows)
        return Finance(
            cost: cost, revenue: totalRevenue, credits: totalCredits, installedMillis: installedMillis, summary: summary,
            contracts: contracts)
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
