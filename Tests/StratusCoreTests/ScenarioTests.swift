import Foundation
import StratusControl
import StratusCore
import StratusLedger
import StratusSimulation
import Testing

/// Scenarios: parsing, and runs whose economics are worked by hand.
@Suite struct ScenarioTests {
    static func scenario(_ json: String) throws -> Scenario {
        try Scenario.parse(JSONDecoder().decode(SpecValue.self, from: Data(json.utf8)))
    }

    static func error(_ json: String) -> String? {
        do {
            _ = try scenario(json)
            return nil
        } catch let e as StratusError {
            return e.message
        } catch {
            return "\(error)"
        }
    }

    /// 1 MW at PUE 1.25 of H100 at 1,403 W of IT load: 1,000,000 / 1,753.75 = 570 GPUs,
    /// 544 in whole racks of 32. Each costs 47,500 + 11.7M x 1,403 / 1e6 = 16,415.10 of
    /// facility: capex 544 x 63,915.10 = 34,769,814.40, all in January. Operations a year
    /// per GPU: O&M 5% x 47,500 + 2% x 16,415.10 = 2,703.302, power 1,754 W x 8,760 h x
    /// $80/MWh = 1,229.2032: 3,932.5052; for January (744 h of 8,760): x 544 x 744 / 8,760
    /// = 181,692.514226. With no demand there is no revenue and no payback in sight.
    @Test func aSiteCostsWhatItsEconomicsSay() async throws {
        let s = try Self.scenario(
            #"{"name": "one MW", "start": "2027-01-01", "horizon_days": 31,"#
                + #""sites": [{"name": "dal", "build_out": [{"at": "2027-01-01", "mw": 1, "gpu_model": "H100"}]}]}"#)
        #expect(s.gpus(of: s.sites[0].phases[0], in: s.sites[0]) == 544)
        let e = s.economics(model: "H100", site: s.sites[0])
        #expect(e.facilityCapexPerGPU.description == "16415.10" && e.wallWatts == 1754)
        let r = try await offPool {
            var sim = try Simulation(.init(scenario: s))
            return try sim.run()
        }
        #expect(r.gpus == 544 && r.jobs == 0)
        #expect(r.finance.capex == "34769814.40")
        #expect(r.finance.months.count == 1)
        let january = r.finance.months[0]
        #expect(january.month == "2027-01" && january.installedGpus == 544)
        #expect(january.operations == "181692.514226")
        #expect(january.net == "-34951506.914226" && january.cumulative == january.net)
        #expect(r.finance.paybackMonths == nil)
        // P&L: the whole yearly cost (depreciation, facility, O&M, power) for 744 h.
        let yearly = e.yearly.total.micros
        #expect(r.economics.cost == Money(micros: (yearly * 544 * 744 / 8760 + 5000) / 10_000 * 10_000).description)
        #expect(r.economics.costPerInstalledGpuHour == Money(micros: Int64(yearly * 544 * 744 / 8760) / (544 * 744)).description)
        #expect(r.ledgerBalanced)
    }

    /// A contract delivers 8 GPUs in January and 16 from February, at 2.00 per GPU-hour,
    /// over a 3-month term, against a 100,000 commitment. January: 8 x 744 h x 2 = 11,904;
    /// February: 16 x 672 x 2 = 21,504; paid in the run 33,408 (33.40% drawn down). Over
    /// the term it pays 11,904 + 16 x (672 + 744) x 2 = 57,216: 42,784 short of the
    /// commitment (take-or-pay; the term ends after the run).
    @Test func aContractIsPaidPerDeliveredGPUHourAndDrawsDown() async throws {
        let s = try Self.scenario(
            #"{"start": "2027-01-01", "horizon_days": 59, "contracts": [{"name": "neo", "gpu_model": "H100","#
                + #""price_per_gpu_hour": 2, "term_months": 3, "commitment": 100000,"#
                + #""ramp": [{"month": 0, "gpus": 8}, {"month": 1, "gpus": 16}]}]}"#)
        let r = try await offPool {
            var sim = try Simulation(.init(scenario: s))
            return try sim.run()
        }
        #expect(r.gpus == 16)
        #expect(r.finance.months.map(\.contracts) == ["11904.00", "21504.00"])
        #expect(r.finance.months.map(\.installedGpus) == [8, 16])
        #expect(r.finance.capex == "0.00")
        let c = try #require(r.contracts.first)
        #expect(c.paid == "33408.00" && c.drawdownBasisPoints == 3340)
        #expect(c.projectedTotal == "57216.00" && c.projectedShortfall == "42784.00" && c.takeOrPay)
        #expect(r.economics.cost == "33408.00", "bought capacity costs its price")
        // A contract that ends in the run: its take-or-pay shortfall is paid in its last month.
        let short = try Self.scenario(
            #"{"start": "2027-01-01", "horizon_days": 31, "contracts": [{"name": "neo", "gpu_model": "H100","#
                + #""price_per_gpu_hour": 2, "term_months": 1, "commitment": 20000, "ramp": [{"month": 0, "gpus": 8}]}]}"#)
        let r2 = try await offPool {
            var sim2 = try Simulation(.init(scenario: short))
            return try sim2.run()
        }
        #expect(r2.contracts[0].paid == "20000.00" && r2.contracts[0].projectedShortfall == "8096.00")
        #expect(r2.finance.months.map(\.contracts) == ["20000.00"])
    }

    /// The daily cycle: 80 GPUs at 20:00, 80 / 2.5 = 32 at 08:00, and halfway (56) at 14:00.
    @Test func internalInferenceFollowsItsDailyCycleAndIsServedFirst() async throws {
        let s = try Self.scenario(
            #"{"start": "2027-01-01", "horizon_days": 2, "seed": 3,"#
                + #""sites": [{"name": "dal", "build_out": [{"at": "2027-01-01", "mw": 0.2, "gpu_model": "H100"}]}],"#
                + #""internal": {"inference": {"gpu_model": "H100", "gpus_at_peak": 80}},"#
                + #""demand": [{"name": "od", "tier": "on_demand", "gpu_model": "H100", "arrivals_per_day": 40,"#
                + #""sizes": {"8": "100%"}, "mean_duration": "3h"}]}"#)
        let inf = try #require(s.inference)
        let day = Timestamp(seconds: 1_798_761_600)  // 2027-01-01
        #expect(Simulation.inferenceReplicas(inf, at: day.adding(seconds: 20 * 3600)) == 10)
        #expect(Simulation.inferenceReplicas(inf, at: day.adding(seconds: 8 * 3600)) == 4)
        #expect(Simulation.inferenceReplicas(inf, at: day.adding(seconds: 14 * 3600)) == 7)
        // 0.2 MW holds 96 GPUs; inference peaks at 80, and on-demand work fills the rest
        // without taking what inference needs (the reserve holds 80 back from sales).
        let r = try await offPool {
            var sim = try Simulation(.init(scenario: s))
            return try sim.run()
        }
        #expect(r.gpus == 96)
        var wanted: Int64 = 0
        for h in 0..<48 { wanted += Int64(Simulation.inferenceReplicas(inf, at: day.adding(seconds: Int64(h) * 3600)) * 8) }
        let i = try #require(r.internalDemand)
        #expect(i.inferenceDemandGpuHours == wanted)
        // Inference is never short of GPUs (the reserve keeps sales off them); the only gap
        // is the scheduling interval: each hour's new replicas start at the next round, at
        // most 60 s later.
        var lag: Int64 = 0
        var before = 0
        for h in 0..<48 {
            let now = Simulation.inferenceReplicas(inf, at: day.adding(seconds: Int64(h) * 3600))
            lag += Int64(max(0, now - before)) * 8 * 60_000
            before = now
        }
        let wantedMillis = wanted * 3_600_000
        #expect(i.inferenceServedBasisPoints >= (wantedMillis - lag) * 10_000 / wantedMillis)
        #expect(i.inferenceServedBasisPoints < 10_000)
        #expect(r.demand.first?.arrived ?? 0 > 40)
        #expect((r.tiers["on-demand"]?.gpuHours ?? 0) > 0)
        #expect(r.ledgerBalanced)
        #expect(Money.parse(r.finance.revenue)!.micros > 0)
    }

    static let faulty =
        #"{"start": "2027-01-01", "horizon_days": 10, "seed": 11,"#
        + #""sites": [{"name": "dal", "build_out": [{"at": "2027-01-01", "mw": 0.2, "gpu_model": "H100"}]}],"#
        + #""internal": {"training": [{"name": "pre", "gpu_model": "H100", "gpus": 8, "every": "3d", "duration": "12h"}]},"#
        + #""demand": [{"name": "od", "tier": "on_demand", "gpu_model": "H100", "arrivals_per_day": 10,"#
        + #""sizes": {"8": "50%", "16": "50%"}, "mean_duration": "6h", "orgs": 3},"#
        + #"{"name": "blk", "tier": "reserved", "gpu_model": "H100", "arrivals_per_day": 0.5, "sizes": {"16": "100%"},"#
        + #""block": "2d", "lead": "1h", "orgs": 2},"#
        + #"{"name": "sp", "tier": "spot", "gpu_model": "H100", "arrivals_per_day": 20, "sizes": {"8": "100%"},"#
        + #""mean_duration": "4h", "elasticity": 1}],"#
        + #""slas": [{"objective": "reserved_availability", "target": "99.9%", "credit": "10%"}],"#
        + #""faults": {"failures_per_gpu_year": 30, "repair": "6h"}}"#

    /// Nodes fail (30 per GPU-year on 96 GPUs: about 79 in 10 days) and come back; their
    /// work is requeued and finishes elsewhere; blocks, spot and on-demand all run; the
    /// ledger balances; and the same seed gives the same run while another seed does not.
    @Test func faultsRequeueWorkAndTheSameSeedGivesTheSameRun() async throws {
        let s = try Self.scenario(Self.faulty)
        let (ra, aState) = try await offPool {
            var a = try Simulation(.init(scenario: s))
            return (try a.run(), a.engine.state)
        }
        #expect(ra.nodeFailures > 40)
        #expect(ra.ledgerBalanced)
        #expect(ra.tiers["internal"]?.completed ?? 0 >= 1)
        #expect((ra.tiers["reserved"]?.jobs ?? 0) >= 1 && (ra.tiers["spot"]?.gpuHours ?? 0) > 0)
        let lost = aState.jobs.values.filter { $0.events.contains { $0.kind == "node_lost" } }
        #expect(!lost.isEmpty, "failures hit running work")
        #expect(lost.contains { $0.state == .succeeded }, "lost work ran again and finished")
        var other = s
        other.seed = 12
        let (rb, bState, rc) = try await offPool { [other] in
            var b = try Simulation(.init(scenario: s))
            var c = try Simulation(.init(scenario: other))
            return (try b.run(), b.engine.state, try c.run())
        }
        #expect(rb == ra)
        #expect(bState == aState)
        #expect(rc != ra)
    }

    /// Nodes with 64 CPUs; jobs of 8 GPUs at 16 CPUs a GPU (128 a node: refused at
    /// submission), of 1 GPU at 16 CPUs (at most 4 a node), and of a quarter GPU (4 CPUs,
    /// sharing). With faults and every invariant checked after every step.
    @Test func scenariosScheduleCPUMemoryAndFractions() async throws {
        let s = try Self.scenario(
            #"{"start": "2027-01-01", "horizon_days": 1, "seed": 5,"#
                + #""gpu_models": [{"name": "H100", "node_cpus": 64, "node_memory": "1024Gi"}],"#
                + #""sites": [{"name": "dal", "build_out": [{"at": "2027-01-01", "mw": 0.1, "gpu_model": "H100"}]}],"#
                + #""demand": [{"name": "od", "tier": "on_demand", "gpu_model": "H100", "arrivals_per_day": 150,"#
                + #""sizes": {"0.25": "50%", "1": "40%", "8": "10%"}, "mean_duration": "2h", "cpus_per_gpu": 16,"#
                + #""memory_per_gpu": "64Gi", "orgs": 2}],"#
                + #""faults": {"failures_per_gpu_year": 20, "repair": "2h"}}"#)
        #expect(s.models["H100"]?.nodeResources == NodeResources(cpuMilli: 64000, memoryMiB: 1 << 20))
        #expect(s.demand[0].sizes.map(\.milliGPUs) == [250, 1000, 8000])
        var config = Simulation.Config(scenario: s)
        config.chaos = true
        let (r, state) = try await offPool { [config] in
            var sim = try Simulation(config)
            return (try sim.run(), sim.engine.state)
        }
        let stream = try #require(r.demand.first)
        #expect(stream.refused > 0, "8 GPUs x 16 CPUs is more than a node has")
        #expect(r.completed > 50 && r.ledgerBalanced)
        let quarter = state.jobs.values.filter { $0.spec.gpuShareMilli == 250 }
        #expect(quarter.contains { $0.state == .succeeded })
        #expect(quarter.allSatisfy { $0.spec.nodeResources == NodeResources(cpuMilli: 4000, memoryMiB: 16384) })
        #expect(r.chaos.map { $0.checks > 100 } == true)
    }

    @Test func badScenariosAreRefusedWithTheField() {
        let site = #""sites": [{"name": "dal", "build_out": [{"at": "2027-01-01", "mw": 1, "gpu_model": "H100"}]}]"#
        #expect(Self.error(#"{"start": "2027-01-01", \#(site), "colour": "red"}"#) == "colour: unknown field")
        #expect(Self.error(#"{"start": "2027-13-01", \#(site)}"#)?.hasPrefix("start: '2027-13-01' is not a date") == true)
        #expect(Self.error(#"{"start": "2027-01-01"}"#)?.hasPrefix("sites: a scenario needs") == true)
        #expect(
            Self.error(
                #"{"start": "2027-01-01", \#(site), "demand": [{"name": "x", "tier": "gold", "gpu_model": "H100", "arrivals_per_day": 1, "sizes": {"8": "100%"}}]}"#
            ) == "demand[0].tier: one of on_demand, spot, reserved")
        #expect(
            Self.error(
                #"{"start": "2027-01-01", \#(site), "demand": [{"name": "x", "tier": "spot", "gpu_model": "H100", "arrivals_per_day": 1, "sizes": {"12": "100%"}}]}"#
            )?.hasPrefix("demand[0].sizes.12: GPUs must be a fraction of one, up to one node or whole nodes of 8") == true)
        #expect(
            Self.error(
                #"{"start": "2027-01-01", \#(site), "demand": [{"name": "x", "tier": "reserved", "gpu_model": "H100", "arrivals_per_day": 1, "sizes": {"0.5": "100%"}}]}"#
            ) == "demand[0].sizes.0.5: capacity blocks hold whole GPUs, not a fraction of one")
        #expect(
            Self.error(
                #"{"start": "2027-01-01", \#(site), "demand": [{"name": "x", "tier": "spot", "gpu_model": "H100", "arrivals_per_day": 1, "sizes": {"8": "100%"}, "cpus_per_gpu": "lots"}]}"#
            )?.hasPrefix("demand[0].cpus_per_gpu: 'lots' is not a number of cores") == true)
        #expect(
            Self.error(
                #"{"start": "2027-01-01", "contracts": [{"name": "c", "gpu_model": "H100", "price_per_gpu_hour": 2, "ramp": [{"month": 0, "gpus": 12}]}]}"#
            ) == "contracts[0].ramp[0].gpus: 12 is not whole nodes of 8")
        #expect(
            Self.error(
                #"{"start": "2027-01-01", "sites": [{"name": "a", "build_out": [{"at": "2027-01-01", "mw": 1, "gpu_model": "B200"}]}]}"#
            ) == "sites[0].build_out[0].gpu_model: B200 needs an entry in gpu_models")
        #expect(
            Self.error(#"{"start": "2027-01-01", \#(site), "finance": {"cost_of_capital": "ten"}}"#)?.contains("percentage")
                == true)
        // A stream of a model nothing costs would have no nodes to shape it for.
        #expect(
            Self.error(
                #"{"start": "2027-01-01", \#(site), "demand": [{"name": "x", "tier": "spot", "gpu_model": "B200", "arrivals_per_day": 1, "sizes": {"8": "100%"}}]}"#
            ) == "demand[0].gpu_model: B200 needs an entry in gpu_models")
        #expect(
            Self.error(
                #"{"start": "2027-01-01", "sites": [{"name": "a", "build_out": [{"at": "2027-01-01", "mw": 5000, "gpu_model": "H100"}]}]}"#
            )?
            .hasPrefix("the scenario installs") == true)
    }
}
