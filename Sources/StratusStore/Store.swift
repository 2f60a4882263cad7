import StratusControl
import StratusCore

/// The durable command log plus snapshots. `append` returns only when the entries
/// are durable: that is the moment a command is acknowledged.
public protocol Store: Sendable {
    /// Appends entries in one transaction. Their sequence numbers follow the last one.
    func append(_ entries: [LogEntry]) throws
    /// Appends one entry: `append([entry])`, which a store may do without the list.
    func append(_ entry: LogEntry) throws
    /// Entries with `seq > after`, in order.
    func entries(after seq: UInt64) throws -> [LogEntry]
    /// The newest snapshot, if any.
    func latestSnapshot() throws -> State?
    func saveSnapshot(_ state: State) throws
    /// Sequence number of the last appended entry (0 for an empty log).
    func lastSeq() throws -> UInt64
}

extension Store {
    public func append(_ entry: LogEntry) throws { try append([entry]) }
}

public enum Recovery {
    /// Rebuilds state from the newest snapshot plus the log entries after it. Replay
    /// applies recorded decisions; it never runs the scheduler.
    public static func recover(from store: any Store) throws -> State {
        var state = try store.latestSnapshot() ?? State()
        for entry in try store.entries(after: state.seq) {
            do {
                try state.apply(entry)
            } catch {
                // A logged command was valid when it was logged; failing now means the
                // log or the code is broken, and guessing would corrupt state.
                fatalError("replay of log entry \(entry.seq) (\(entry.command.name)) failed: \(error)")
            }
        }
        return state
    }
}
