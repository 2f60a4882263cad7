import StratusControl
import StratusCore
import StratusScheduler

/// Drives the state machine over a store: validate, log durably, then apply. It is
/// synchronous and not thread-safe; the server wraps it in an actor, the simulator and
/// tests call it directly.
public struct Engine: Sendable {
    public private(set) var state: State
    public let store: any Store
    public let scheduler: any Scheduler
    private var commandsSinceSnapshot = 0
    /// Commands between two snapshots; nil: never (a simulation without crashes).
    public var snapshotEvery: Int? = Limits.snapshotEveryCommands
    /// True (the default): each command is checked before it is logged, and applied only
    /// once the log holds it. False, for a store that cannot fail to append (a
    /// simulation's memory log): each command is applied at once, which checks it as
    /// well (a refused one changes nothing), and then logged; one pass instead of two.
    public var checksBeforeLogging = true

    /// Opens the store and rebuilds state from it.
    public init(store: any Store, scheduler: any Scheduler = TieredScheduler()) throws {
        self.store = store
        self.scheduler = scheduler
        self.state = try Recovery.recover(from: store)
    }

    /// Executes one command. Invalid commands throw and leave no trace; idempotent
    /// retries return `.unchanged` without logging.
    @discardableResult
    public mutating func execute(_ command: Command, at: Timestamp) throws -> Outcome {
        let entry = LogEntry(seq: state.seq + 1, at: at, command: command)
        guard checksBeforeLogging else {
            let outcome = try state.apply(entry, commit: true)
            guard case .applied = outcome else { return outcome }
            do {
                try store.append(entry)
            } catch {
                fatalError("command \(command.name) was applied but the store refused it: \(error)")
            }
            commandsSinceSnapshot += 1
            if let every = snapshotEvery, commandsSinceSnapshot >= every { try snapshot() }
            return outcome
        }
        let predicted = try state.apply(entry, commit: false)
        guard case .applied = predicted else { return predicted }
        try store.append(entry)
        let outcome: Outcome
        do {
            outcome = try state.apply(entry, commit: true)
        } catch {
            fatalError("command \(command.name) passed validation but failed to apply: \(error)")
        }
        precondition(outcome == predicted, "dry run predicted \(predicted), apply gave \(outcome)")
        commandsSinceSnapshot += 1
        if let every = snapshotEvery, commandsSinceSnapshot >= every { try snapshot() }
        return outcome
    }

    /// Runs the scheduler on the current state and, if it places anything, logs and
    /// applies the plan. Returns the whole plan, waits included.
    @discardableResult
    public mutating func schedule(at now: Timestamp) throws -> Plan {
        let plan = scheduler.plan(state.schedulingSnapshot(allTenants: false), now: now)
        if !plan.isEmpty {
            try execute(.applyPlan(plan.decisions), at: now)
        }
        return plan
    }

    public mutating func snapshot() throws {
        try store.saveSnapshot(state)
        commandsSinceSnapshot = 0
    }
}
