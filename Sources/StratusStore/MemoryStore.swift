import StratusControl
import StratusCore
import Synchronization

/// The in-memory `Store`: a real implementation for tests and the simulator.
public final class MemoryStore: Store {
    private struct Contents {
        var log: [LogEntry] = []
        var snapshot: State?
        var last: UInt64 = 0
    }
    private let contents = Mutex(Contents())
    /// False: entries are checked and counted but not kept (a simulation that never
    /// recovers needs no log; a long one would hold millions of entries).
    public let keepsLog: Bool

    public init(keepsLog: Bool = true) { self.keepsLog = keepsLog }

    public func append(_ entries: [LogEntry]) throws {
        try contents.withLock { c in
            for e in entries { try Self.append(e, to: &c, keepsLog: keepsLog) }
        }
    }

    /// One entry, without a list (the simulator appends every command alone).
    public func append(_ entry: LogEntry) throws {
        try contents.withLock { c in try Self.append(entry, to: &c, keepsLog: keepsLog) }
    }

    private static func append(_ e: LogEntry, to c: inout Contents, keepsLog: Bool) throws {
        guard e.seq == max(c.last, c.snapshot?.seq ?? 0) + 1 else {
            throw StratusError(.internal, "log gap: appending \(e.seq) after \(c.last)")
        }
        if keepsLog { c.log.append(e) }
        c.last = e.seq
    }

    public func entries(after seq: UInt64) throws -> [LogEntry] {
        // Sequence numbers are contiguous (append checks), so the tail starts at an index.
        contents.withLock { c in
            guard let first = c.log.first?.seq else { return [] }
            let from = seq < first ? 0 : Int(seq - first + 1)
            return from >= c.log.count ? [] : Array(c.log[from...])
        }
    }

    public func latestSnapshot() throws -> State? { contents.withLock { $0.snapshot } }

    public func saveSnapshot(_ state: State) throws { contents.withLock { $0.snapshot = state } }

    public func lastSeq() throws -> UInt64 { contents.withLock { max($0.last, $0.snapshot?.seq ?? 0) } }
}
