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

    public init(store: any Store, scheduler: any Scheduler = TieredScheduler(), clock: @escaping @Sendable () -> Timestamp)
        throws
    {
        self.engine = try Engine(store: store, scheduler: scheduler)
        self.clock = clock
    }

    public var now: Timestamp { clock() }

    /// How long before its start a reservation's GPUs are held: the preemption notice.
    public var reservationLeadSeconds: Int64 {
        (engine.scheduler as? TieredScheduler)?.preemptionNoticeSeconds ?? Limits.defaultPreemptionNoticeSeconds
    }

    @discardableResult
    public func execute(_ command: Command) throws -> Outcome {
        try engine.execute(command, at: clock())
    }

    /// Runs one scheduling round; logs and applies its placements.
    @discardableResult
    public func schedule() throws -> Plan {
        let plan = try engine.schedule(at: clock())
        waits = Dictionary(plan.waits.map { ($0.job, $0.reasons) }, uniquingKeysWith: { a, _ in a })
        return plan
    }

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
            _ = try probe.apply(
                LogEntry(
                    seq: probe.seq + 1, at: now, command: .submitJob(SubmitJob(org: org, spec: s, idempotencyKey: nil, by: key))),
                commit: false)
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
                    QuoteRow(tier: tier, startsNow: true, start: now, reasons: [], pricePerGPUHour: price, projectedCost: cost))
            } else {
                let start = scheduler.earliestStart(pending, in: base, now: now)?.at
                out.append(
                    QuoteRow(
                        tier: tier, startsNow: false, start: start, reasons: plan.waits.first?.reasons ?? [],
                        pricePerGPUHour: price, projectedCost: cost))
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
