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

    /// Fair-share standings now, with the scheduler's own half-life.
    public func fairShareStandings() -> [FairShare.Standing] {
        let fairShare = (engine.scheduler as? TieredScheduler)?.fairShare ?? FairShare()
        return fairShare.standings(engine.state.schedulingSnapshot(), now: clock())
    }
}
