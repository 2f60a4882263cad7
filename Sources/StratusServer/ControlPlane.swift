import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStore

/// The one writer of control-plane state. Commands are serialized here: each is
/// validated, appended to the durable log, then applied. The store call is
/// synchronous on purpose, so no other command can interleave between the three steps.
public actor ControlPlane {
    private var engine: Engine
    private let clock: @Sendable () -> Timestamp
    /// Why each queued job waits, from the latest scheduling round (not logged: it is
    /// derived, and replaced every round).
    private var waits: [JobID: [String]] = [:]

    /// Node agents: when each was last heard from, and GPU samples of running jobs. Not
    /// logged: heartbeats and samples are high-rate and decide nothing until a node is
    /// declared lost, which is a command.
    private var lastHeard: [NodeID: Timestamp] = [:]
    private let startedAt: Timestamp
    private var samples: [JobID: JobSamples] = [:]
    /// Bumped by every applied command; long-polling agents wait for it to move.
    private var generation: UInt64 = 0
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter = 0
    private var closing = false

    public init(store: any Store, scheduler: any Scheduler = TieredScheduler(), clock: @escaping @Sendable () -> Timestamp)
        throws
    {
        self.engine = try Engine(store: store, scheduler: scheduler)
        self.clock = clock
        self.startedAt = clock()
    }

    public var now: Timestamp { clock() }

    /// How long before its start a reservation's GPUs are held: the preemption notice.
    public var reservationLeadSeconds: Int64 {
        (engine.scheduler as? TieredScheduler)?.preemptionNoticeSeconds ?? Limits.defaultPreemptionNoticeSeconds
    }

    @discardableResult
    public func execute(_ command: Command) throws -> Outcome {
        let outcome = try engine.execute(command, at: clock())
        if case .applied = outcome { changed() }
        return outcome
    }

    /// Forgets jobs that ended more than `seconds` ago (`retire_jobs`, as many commands as
    /// it takes); returns how many. Nothing to forget logs nothing.
    @discardableResult
    public func retireJobs(endedSecondsAgo seconds: Int64) throws -> Int {
        let before = clock().adding(seconds: -seconds)
        var retired = 0
        while case .applied(let n) = try engine.execute(.retireJobs(RetireJobs(endedBefore: before)), at: clock()) {
            changed()
            retired += Int(n) ?? 0
            if Int(n) ?? 0 < Limits.maxJobsRetiredPerCommand { break }
        }
        return retired
    }

    /// Runs one scheduling round; logs and applies its placements.
    @discardableResult
    public func schedule() throws -> Plan {
        let plan = try engine.schedule(at: clock())
        waits = Dictionary(plan.waits.map { ($0.job, $0.reasons) }, uniquingKeysWith: { a, _ in a })
        if !plan.isEmpty { changed() }
        return plan
    }

    // MARK: node agents

    private func changed() {
        generation &+= 1
        guard !waiters.isEmpty else { return }
        let woken = waiters
        waiters = [:]
        for w in woken.values { w.resume() }
    }

    /// Waits until state changes after `generation` or `timeout` passes (or the server closes).
    private func waitForChange(after seen: UInt64, timeout: Duration) async {
        guard generation == seen, !closing else { return }
        let id = nextWaiter
        nextWaiter += 1
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            waiters[id] = c
            Task {
                try? await Task.sleep(for: timeout)
                self.wake(id)
            }
        }
    }

    private func wake(_ id: Int) { waiters.removeValue(forKey: id)?.resume() }

    public var isClosing: Bool { closing }

    /// Answers every waiting long-poll now (the server is shutting down).
    public func releaseWaiters() {
        closing = true
        changed()
    }

    /// A node's assignments and their digest, once they differ from `known` or `wait` has
    /// passed: a long-poll, so idle agents cost one open request each and no polling.
    public func assignments(node: NodeID, known: String?, wait: Duration) async -> (digest: String, items: [Assignment]) {
        let deadline = ContinuousClock.now + wait
        while true {
            let items = engine.state.assignments(for: node)
            let digest = Self.digest(items)
            if digest != known || closing || ContinuousClock.now >= deadline { return (digest, items) }
            await waitForChange(after: generation, timeout: deadline - ContinuousClock.now)
        }
    }

    static func digest(_ items: [Assignment]) -> String {
        var h: UInt64 = 14_695_981_039_346_656_037
        let text = items.map {
            "\($0.job)/\($0.attempt)/\($0.started)/\($0.stopRequested)/\($0.stopDeadline?.milliseconds ?? -1)/\($0.masterAddress ?? "")"
        }.joined(separator: ";")
        for b in text.utf8 {
            h ^= UInt64(b)
            h = h &* 1_099_511_628_211
        }
        return String(h, radix: 16)
    }

    public func authenticateAgent(secretHash: String) -> AgentToken? { engine.state.activeAgentToken(hash: secretHash) }

    /// Records a heartbeat from `node`'s agent.
    public func heard(from node: NodeID) { lastHeard[node] = clock() }

    /// When `node`'s agent was last heard from (this server's start, if not since).
    public func lastHeard(_ node: NodeID) -> Timestamp? {
        guard let info = engine.state.nodes[node]?.agent else { return nil }
        return lastHeard[node] ?? max(startedAt, info.registeredAt)
    }

    /// Networked nodes not heard from for more than `timeout` seconds, with when they last were.
    public func silentNodes(timeout seconds: Int64) -> [(NodeID, Timestamp)] {
        let now = clock()
        return engine.state.agentNodes.compactMap { node in
            guard let last = lastHeard(node), now.milliseconds - last.milliseconds > seconds * 1000 else { return nil }
            return (node, last)
        }
    }

    /// Keeps GPU samples of running jobs (the newest `Limits.maxSamplesPerGPU` per GPU);
    /// samples of jobs no longer running are dropped.
    public func addSamples(_ batch: [GPUSample]) {
        for s in batch { samples[s.job, default: JobSamples()].add(s) }
    }

    /// Drops the samples of jobs that are no longer running.
    public func pruneSamples() {
        samples = samples.filter { engine.state.jobs[$0.key].map { !$0.state.isTerminal && $0.state != .queued } ?? false }
    }

    public func samples(of job: JobID) -> JobSamples? { samples[job] }

    public func read<T: Sendable>(_ body: @Sendable (State) throws -> T) rethrows -> T {
        try body(engine.state)
    }

    public var state: State { engine.state }

    /// Why a queued job waited in the latest round, one line per constraint.
    public func waitReasons(_ job: JobID) -> [String]? { waits[job] }

    public func authenticate(secretHash: String) -> Principal? {
        guard let key = engine.state.activeKey(hash: secretHash) else { return nil }
        return Principal(key: key.id, org: key.org, role: key.role)
    }

    public func snapshot() throws { try engine.snapshot() }

    /// When a queued job could start at the earliest, from running work's time limits.
    public func estimatedStart(_ job: JobID) -> Timestamp? {
        let snapshot = engine.state.schedulingSnapshot()
        guard let pending = snapshot.pending.first(where: { $0.id == job }) else { return nil }
        let scheduler = (engine.scheduler as? TieredScheduler) ?? TieredScheduler()
        return scheduler.earliestStart(pending, in: snapshot, now: clock())?.at
    }

    /// One tier of a quote: when the spec could start and what it would cost.
    public struct QuoteRow: Sendable {
        public let tier: Tier
        public let startsNow: Bool
        public let start: Timestamp?
        public let reasons: [String]
        /// Per GPU-hour for this org, in the region it would start in (or, when it cannot
        /// start now, the highest price among the regions it may run in).
        public let pricePerGPUHour: Money?
        /// GPUs x max_duration x price, when the spec has a max_duration.
        public let projectedCost: Money?
        /// Why a submission would be refused for money (credit limit, budget), if it would.
        public let refusal: String?
    }

    /// A dry run: for each tier, whether and when `spec` could start and at what price,
    /// without changing anything. The spec is validated as a submission would be.
    public func quote(_ spec: JobSpec, org: OrgID, by key: KeyID) throws -> [QuoteRow] {
        let candidates: [Tier] =
            spec.reservation != nil ? [.reserved] : org == InternalOrg.id ? [.internal, .onDemand, .spot] : [.onDemand, .spot]
        let tiers = candidates.filter(engine.state.tiers.contains)
        let now = clock()
        var out: [QuoteRow] = []
        let scheduler = (engine.scheduler as? TieredScheduler) ?? TieredScheduler()
        let base = engine.state.schedulingSnapshot()
        let state = engine.state
        for tier in tiers {
            var s = spec
            s.tier = tier
            var probe = engine.state
            // The money check comes last: when it is what refuses the spec, the quote still
            // gives the price, with the refusal beside it.
            var refusal: String?
            do {
                _ = try probe.apply(
                    LogEntry(
                        seq: probe.seq + 1, at: now,
                        command: .submitJob(SubmitJob(org: org, spec: s, idempotencyKey: nil, by: key))),
                    commit: false)
            } catch {
                guard let money = state.moneyRefusal(s, org: org, at: now), money == error.message else { throw error }
                refusal = money
            }
            let project = s.project ?? InternalOrg.defaultProject
            let pending = engine.state.pendingView(id: JobID("quote"), s, org: org, project: project)
            let alone = base.replacingPending([pending])
            let plan = scheduler.plan(alone, now: now)
            // Where it would start now, the exact price there; otherwise the most it may cost.
            var price: Money?
            if s.reservation != nil {
                price = .zero  // paid up front with the block
            } else if tier != .internal {
                if let placed = plan.placements.first, let node = placed.nodes.first.flatMap({ state.nodes[$0.node] }),
                    let region = state.site(of: node)?.region.rawValue
                {
                    price = state.billing.prices.price(
                        org: org, SKU(gpuModel: node.gpuModel, region: region, tier: tier), at: now)
                } else {
                    price = state.priceBound(s, org: org, tier: tier, at: now)
                }
            }
            var cost: Money?
            if let price, let seconds = s.maxDurationSeconds {
                let gpus = Int64(s.acceptable.map(\.count).max()! * s.numNodes)
                cost = Money.charge(gpuSeconds: gpus * seconds, pricePerGPUHour: price)
            }
            if !plan.placements.isEmpty {
                out.append(
                    QuoteRow(
                        tier: tier, startsNow: true, start: now, reasons: [], pricePerGPUHour: price, projectedCost: cost,
                        refusal: refusal))
            } else {
                let start = scheduler.earliestStart(pending, in: base, now: now)?.at
                out.append(
                    QuoteRow(
                        tier: tier, startsNow: false, start: start, reasons: plan.waits.first?.reasons ?? [],
                        pricePerGPUHour: price, projectedCost: cost, refusal: refusal))
            }
        }
        return out
    }

    /// Counts a batch of usage events (all or nothing) and says what happened to each.
    public func recordUsage(_ events: [UsageEvent]) throws -> [Billing.EventOutcome] {
        // What will happen to each event, from what the meter has seen (validation runs
        // once, in the engine's dry run; if it fails nothing is returned).
        var batch = Set<[String]>()
        let outcomes = events.map { e -> Billing.EventOutcome in
            engine.state.billing.isSeen(e) || !batch.insert([e.source, e.id]).inserted ? .duplicate : .counted
        }
        try engine.execute(.recordUsage(RecordUsage(events: events)), at: clock())
        return outcomes
    }

    /// Fair-share standings now, with the scheduler's own half-life.
    public func fairShareStandings() -> [FairShare.Standing] {
        let fairShare = (engine.scheduler as? TieredScheduler)?.fairShare ?? FairShare()
        return fairShare.standings(engine.state.schedulingSnapshot(), now: clock())
    }
}
