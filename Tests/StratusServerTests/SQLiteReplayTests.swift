import Foundation
import StratusControl
import StratusCore
import StratusScheduler
import StratusStore
import StratusStoreSQLite
import Testing

/// The restart test on the real embedded database: run commands, close, reopen, and
/// compare state and the next scheduling decision.
@Suite struct SQLiteReplayTests {
    static let t0 = Timestamp(seconds: 1_800_000_000)

    func spec(_ gpus: Int, nodes: Int = 1) -> JobSpec {
        JobSpec(name: "r", gpuModel: "H100", gpusPerNode: gpus, numNodes: nodes, run: "true")
    }

    @Test func restartFromSQLiteRebuildsStateAndDecisions() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(UUID().uuidString).db").path
        defer {
            for suffix in ["", "-journal", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        var expected: State
        do {
            var e = try Engine(store: try SQLiteStore(path: path))
            try e.execute(
                .bootstrap(
                    CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: String(repeating: "a", count: 64), hint: "")
                ), at: Self.t0)
            try e.execute(.applyFleet(FleetSpec.demo), at: Self.t0)
            try e.execute(.createOrg(CreateOrg(id: "acme", displayName: "Acme")), at: Self.t0)
            var t = Self.t0
            for i in 0..<10 {
                t = t.adding(seconds: 3)
                try e.execute(
                    .submitJob(
                        SubmitJob(org: "acme", spec: spec(1 + i % 8, nodes: 1 + i % 2), idempotencyKey: "k\(i)", by: "key-1")),
                    at: t)
                try e.schedule(at: t)
                if i == 4 { try e.snapshot() }
            }
            for (id, job) in e.state.jobs.sorted(by: { $0.key < $1.key }) where job.state == .starting {
                for a in job.allocations {
                    try e.execute(.allocationStarted(AllocationStarted(job: id, node: a.node)), at: t)
                    try e.execute(
                        .allocationExited(AllocationExited(job: id, node: a.node, exitCode: 0, reason: nil)),
                        at: t.adding(seconds: 30))
                }
            }
            #expect(!e.state.queue.isEmpty)
            expected = e.state
        }
        var reopened = try Engine(store: try SQLiteStore(path: path))
        #expect(reopened.state == expected)
        #expect(reopened.state.usage.records.count >= 1)
        let next = reopened.scheduler.plan(reopened.state.schedulingSnapshot(), now: Self.t0.adding(seconds: 100))
        let fresh = TieredScheduler().plan(expected.schedulingSnapshot(), now: Self.t0.adding(seconds: 100))
        #expect(next == fresh)
        #expect(!next.placements.isEmpty)
        // The reopened engine keeps appending where the log left off.
        try reopened.schedule(at: Self.t0.adding(seconds: 100))
        let again = try Engine(store: try SQLiteStore(path: path))
        #expect(again.state == reopened.state)
    }
}
