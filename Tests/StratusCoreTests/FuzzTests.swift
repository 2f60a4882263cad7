import StratusControl
import StratusCore
import StratusSimulation
import Testing

/// Deterministic simulation testing: random small clouds with faults injected (node
/// failures, agent restarts, duplicated, late and reordered reports, control-plane
/// crashes replayed from the log), every invariant checked after every step.
@Suite struct FuzzTests {
    /// 100 seeds here (scripts/test.sh runs 1,000 more through `stratus sim --fuzz`,
    /// after the other tests, so they do not starve the timing-sensitive agent tests). A
    /// failure names its seed; `stratus sim --fuzz --seed N` reproduces it exactly.
    @Test func aHundredSeedsHoldEveryInvariantWhileFaultsHappen() async throws {
        let (events, totals, failures, unbalanced) = try await offPool {
            var totals = ChaosSummary()
            var events = 0
            var failures: [String] = []
            var unbalanced = 0
            for seed in UInt64(1001)...1100 {
                do {
                    let s = try Simulation.fuzz(seed: seed)
                    events += s.events
                    guard let c = s.chaos else {
                        failures.append("seed \(seed): no chaos summary")
                        continue
                    }
                    totals.checks += c.checks
                    totals.replays += c.replays
                    totals.duplicateReports += c.duplicateReports
                    totals.lateReports += c.lateReports
                    totals.reorderedReports += c.reorderedReports
                    totals.agentRestarts += c.agentRestarts
                    totals.refused += c.refused
                    totals.unchanged += c.unchanged
                    if !s.ledgerBalanced { unbalanced += 1 }
                } catch let failure as SimulationFailure {
                    failures.append("\(failure)")
                }
            }
            return (events, totals, failures, unbalanced)
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(unbalanced == 0)
        // The faults did happen, and were refused or found known.
        #expect(events > 5_000 && totals.checks > 5_000, "\(events) events, \(totals)")
        #expect(totals.replays > 10 && totals.duplicateReports > 50 && totals.lateReports > 20, "\(totals)")
        #expect(totals.reorderedReports > 5 && totals.agentRestarts > 10, "\(totals)")
        #expect(totals.refused + totals.unchanged >= totals.lateReports + totals.reorderedReports, "\(totals)")
    }

    /// Seeds that once broke an invariant (work in a capacity block running past the
    /// block's end: no round near the end, then a block job placed again after the round
    /// that gave notice; 95 and 154: a plan placing a fraction on a GPU its org-mate's
    /// preemption freed, refused by `applyPlan`) stay fixed.
    @Test(arguments: [UInt64(3), 5, 6, 7, 95, 154, 101_416, 102_270, 105_636, 106_100, 106_987, 108_301, 108_790])
    func seedsThatOnceFailedHold(seed: UInt64) async throws {
        #expect(try await offPool { try Simulation.fuzz(seed: seed) }.ledgerBalanced)
    }

    @Test func aSeedReproducesExactly() async throws {
        let runs = try await offPool { try [42, 42, 43].map { try Simulation.fuzz(seed: $0) } }
        #expect(runs[0] == runs[1])
        #expect(runs[0] != runs[2])
    }

    /// The checker is not vacuous: usage records that do not match what the agents ran
    /// (a millisecond short, or one run more) are reported.
    @Test func theCheckerReportsWhatIsWrong() throws {
        var config = Simulation.Config(scenario: Simulation.fuzzScenario(seed: 5))
        config.chaos = true
        var sim = try Simulation(config)
        let summary = try sim.run()
        #expect(summary.completed > 0)
        let s = sim.engine.state
        let records = s.usage.records
        var ran = Invariants.Ran()
        ran.allocations = records.count
        ran.gpuMilliseconds = records.reduce(0) { $0 + $1.gpuMilliseconds }
        #expect(Invariants.check(s, ran: ran, now: sim.now).isEmpty)
        var short = ran
        short.gpuMilliseconds -= 1
        #expect(Invariants.check(s, ran: short, now: sim.now).first?.hasPrefix("usage: ") == true)
        ran.allocations += 1
        #expect(Invariants.check(s, ran: ran, now: sim.now).count == 1)
    }
}
