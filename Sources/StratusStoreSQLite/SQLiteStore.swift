import Foundation
import GRDB
import StratusControl
import StratusCore
import StratusStore

/// The embedded `Store`: one SQLite file. Each `append` is one transaction committed
/// with `synchronous=FULL`, so an acknowledged command survives a crash or power loss.
public final class SQLiteStore: Store {
    private let db: DatabaseQueue
    public let path: String

    /// Snapshots kept; older ones are deleted when a new one is saved.
    static let snapshotsKept = 2

    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        db = try DatabaseQueue(path: path, configuration: config)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE log (
                        seq INTEGER PRIMARY KEY,
                        at_ms INTEGER NOT NULL,
                        kind TEXT NOT NULL,
                        command BLOB NOT NULL
                    );
                    CREATE TABLE snapshot (
                        seq INTEGER PRIMARY KEY,
                        state BLOB NOT NULL
                    );
                    """)
        }
        try migrator.migrate(db)
    }

    public func append(_ entries: [LogEntry]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let rows = try entries.map { ($0, try encoder.encode($0.command)) }
        try db.write { db in
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM log") ?? 0
            let snap = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM snapshot") ?? 0
            var expected = UInt64(max(last, snap)) + 1
            for (entry, body) in rows {
                guard entry.seq == expected else {
                    throw StratusError(.internal, "log gap: appending \(entry.seq), expected \(expected)")
                }
                try db.execute(
                    sql: "INSERT INTO log (seq, at_ms, kind, command) VALUES (?, ?, ?, ?)",
                    arguments: [Int64(entry.seq), entry.at.milliseconds, entry.command.name, body])
                expected += 1
            }
        }
    }

    public func entries(after seq: UInt64) throws -> [LogEntry] {
        let decoder = JSONDecoder()
        return try db.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, at_ms, command FROM log WHERE seq > ? ORDER BY seq", arguments: [Int64(seq)])
                .map { row in
                    let body: Data = row["command"]
                    return LogEntry(
                        seq: UInt64(row["seq"] as Int64), at: Timestamp(milliseconds: row["at_ms"]),
                        command: try decoder.decode(Command.self, from: body))
                }
        }
    }

    public func latestSnapshot() throws -> State? {
        let body = try db.read { db in
            try Data.fetchOne(db, sql: "SELECT state FROM snapshot ORDER BY seq DESC LIMIT 1")
        }
        guard let body else { return nil }
        return try JSONDecoder().decode(State.self, from: body)
    }

    public func saveSnapshot(_ state: State) throws {
        let body = try JSONEncoder().encode(state)
        try db.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO snapshot (seq, state) VALUES (?, ?)", arguments: [Int64(state.seq), body])
            try db.execute(
                sql: "DELETE FROM snapshot WHERE seq NOT IN (SELECT seq FROM snapshot ORDER BY seq DESC LIMIT ?)",
                arguments: [Self.snapshotsKept])
        }
    }

    public func lastSeq() throws -> UInt64 {
        try db.read { db in
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM log") ?? 0
            let snap = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM snapshot") ?? 0
            return UInt64(max(last, snap))
        }
    }

    /// Number of log entries stored (for diagnostics and tests).
    public func logCount() throws -> Int {
        try db.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM log") ?? 0 }
    }
}
