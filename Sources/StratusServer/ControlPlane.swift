import StratusControl
import StratusCore
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

    /// A dry run: for each tier, whether and when `spec` could start, without changing
    /// anything. The spec is validated as a submission would be.
    public func quote(_ spec: JobSpec, org: OrgID, by key: KeyID) throws -> [(
        tier: Tier, startsNow: Bool, start: Timestamp?, reasons: [String]
    )] {
        let candidates: [Tier] =
            spec.reservation != nil ? [.reserved] : org == InternalOrg.id ? [.internal, .onDemand, .spot] : [.onDemand, .spot]
        let tiers = candidates.filter(engine.state.tiers.contains)
        let now = clock()
        var out: [(Tier, Bool, Timestamp?, [String])] = []
        let scheduler = (engine.scheduler as? TieredScheduler) ?? TieredScheduler()
        let base = engine.state.schedulingSnapshot()
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
            if !plan.placements.isEmpty {
                out.append((tier, true, now, []))
            } else {
                let start = scheduler.earliestStart(pending, in: base, now: now)?.at
                out.append((tier, false, start, plan.waits.first?.reasons ?? []))
            }
        }
        return out
    }

    /// Fair-share standings now, with the scheduler's own half-life.
    public func fairShareStandings() -> [FairShare.Standing] {
        let fairShare = (engine.scheduler as? TieredScheduler)?.fairShare ?? FairShare()
        return fairShare.standings(engine.state.schedulingSnapshot(), now: clock())
    }
}
