import Foundation
import StratusControl
import StratusCore
import StratusServer
import StratusSimulation
import StratusStore
import StratusStoreSQLite
import Synchronization
import Testing

/// The digital twin runs the production state machine: the commands a simulation logged,
/// given to the server's control plane over its SQLite store, give the same state, and
/// so does the server after a restart from that database. (Seed 95 has on-demand
/// fractions preempting spot work and sharing the GPUs freed.)
@Suite struct SimulationParityTests {
    @Test(arguments: [UInt64(3), 8, 21, 95])
    func theSameCommandsGiveTheSameStateInTheSimulatorAndTheServer(seed: UInt64) async throws {
        var config = Simulation.Config(scenario: Simulation.fuzzScenario(seed: seed))
        config.chaos = true  // crashes, duplicated and late reports too: what was accepted is logged
        var sim = try Simulation(config)
        _ = try sim.run()
        let log = try sim.engine.store.entries(after: 0)
        #expect(log.count > 100)
        let kinds = Set(log.map(\.command.name))
        #expect(kinds.isSuperset(of: ["apply_fleet", "submit_job", "apply_plan", "allocation_started", "allocation_exited"]))

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("parity-\(UUID().uuidString).db").path
        defer {
            for suffix in ["", "-journal", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let now = Mutex(Timestamp(seconds: 0))
        let server = try ControlPlane(store: try SQLiteStore(path: path), clock: { now.withLock { $0 } })
        for entry in log {
            now.withLock { $0 = entry.at }
            let outcome = try await server.execute(entry.command)
            guard case .applied = outcome else {
                Issue.record("seq \(entry.seq) (\(entry.command.name)) was not applied by the server: \(outcome)")
                return
            }
        }
        let served = await server.read { $0 }
        #expect(served == sim.engine.state)
        let restarted = try Engine(store: try SQLiteStore(path: path))
        #expect(restarted.state == sim.engine.state)
    }
}
