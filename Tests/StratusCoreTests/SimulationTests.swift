import StratusControl
import StratusCore
import StratusLedger
import StratusSimulation
import Testing

@Suite struct EconomicsTests {
    /// economics.md's H100, worked by hand: 47,500 / 5 = 9,500.00 depreciation;
    /// 16,800 / 15 = 1,120.00 facility; O&M 5% x 47,500 + 2% x 16,800 = 2,375 + 336 =
    /// 2,711.00; power 1.75 kW x 8,760 h x $0.080/kWh = 1,226.40. Total 14,557.40 a year
    /// (economics.md rounds it to "~$14.4k"), 14,557.40 / 8,760 = 1.661803 per installed
    /// GPU-hour, / 0.7 = 2.374005 per used GPU-hour at 70%. With 10% cost of capital
    /// (+4,750.00): 19,307.40 a year, 3.148630 per used hour at 70%.
    @Test func h100CostPerGPUHourMatchesTheHandComputation() {
        let e = GPUEconomics.h100
        let y = e.yearly
        #expect(y.depreciation.description == "9500.00")
        #expect(y.facility.description == "1120.00")
        #expect(y.operations.description == "2711.00")
        #expect(y.power.description == "1226.40")
        #expect(y.total.description == "14557.40")
        #expect(e.perInstalledHour.micros == 1_661_803)
        #expect(e.perUsedHour(utilizationBasisPoints: 7000).micros == 2_374_005)
        #expect(e.perUsedHour(utilizationBasisPoints: 5000).micros == 3_323_607)
        var withCapital = e
        withCapital.capitalBasisPoints = 1000
        #expect(withCapital.yearly.total.description == "19307.40")
        #expect(withCapital.perUsedHour(utilizationBasisPoints: 7000).micros == 3_148_630)
    }
}

@Suite struct TraceTests {
    @Test func phillyRowsBecomeJobsInSubmissionOrder() throws {
        let jobs = try PhillyTrace.parse(
            """
            timestamp,duration,num_gpus,gpu_time,cluster
            2017-10-09 07:01:55,66.0,1,66.0,11cb48
            2017-10-09 06:13:03,2951.5,8,23612.0,6214e9

            2017-10-09 06:13:03,10.0,16,160.0,6214e9
            """)
        #expect(jobs.count == 3)
        #expect(jobs.map(\.durationSeconds) == [2952, 10, 66], "earliest first, file order among equals; seconds rounded up")
        #expect(jobs[0].org == "vc-6214e9" && jobs[0].gpus == 8)
        #expect(jobs[0].submit == Timestamp(seconds: 1_507_529_583))  // 2017-10-09T06:13:03Z
        #expect(jobs[1].shape(perNode: 8).map { [$0.gpusPerNode, $0.nodes] } == [8, 2])
        #expect(
            TraceJob(submit: .zero, durationSeconds: 1, gpus: 12, org: "x").shape(perNode: 8).map { [$0.0, $0.1] } == [6, 2])
        #expect(TraceJob(submit: .zero, durationSeconds: 1, gpus: 9, org: "x").shape(perNode: 8) == nil)
        #expect(throws: StratusError.self) { try PhillyTrace.parse("timestamp,duration\n") }
        let bad = #expect(throws: StratusError.self) {
            try PhillyTrace.parse("timestamp,duration,num_gpus,gpu_time,cluster\n2017-13-09 07:01:55,66.0,1,66.0,x\n")
        }
        #expect(bad?.message.contains("line 2") == true)
    }
}

@Suite struct TraceFormatTests {
    @Test func stratusTracesParseStrictly() throws {
        let jobs = try StratusTrace.parse(
            """
            submit,duration_seconds,gpus,org,tier
            2027-01-01T06:00:00Z,3600,8,acme,on_demand
            2027-01-01 05:00:00,60,1,internal,internal
            2027-01-01T05:30:00Z,600,16,lab,spot
            2027-01-01T05:30:00Z,600,2,lab,
            """)
        #expect(jobs.map(\.gpus) == [1, 16, 2, 8], "earliest first, file order among equals")
        #expect(jobs.map(\.tier) == [.internal, .spot, .onDemand, .onDemand])
        #expect(jobs[3].submit == Timestamp(seconds: 1_798_783_200) && jobs[3].durationSeconds == 3600)
        func error(_ row: String) -> String? {
            do {
                _ = try StratusTrace.parse("submit,duration_seconds,gpus,org,tier\n" + row)
                return nil
            } catch { return error.message }
        }
        #expect(
            error("2027-01-01T06:00:00Z,0,8,acme,")
                == "stratus trace: line 2: duration_seconds must be 1 to \(Limits.maxJobDurationSeconds): '2027-01-01T06:00:00Z,0,8,acme,'"
        )
        #expect(error("2027-01-01T06:00:00Z,60,8,acme,internal")?.contains("the internal tier is the internal org's") == true)
        #expect(error("2027-01-01T06:00:00Z,60,8,acme,reserved")?.contains("tier must be") == true)
        #expect(error("yesterday,60,8,acme,")?.contains("submit is not a UTC time") == true)
    }

    /// Alibaba's openb tables: GPU pods become jobs (a half GPU shared, best
    /// effort as spot), pods without GPUs or that never ended are skipped; the node table
    /// gives nodes of 8 and 2 GPUs (the CPU-only node is left out).
    @Test func alibabaPodsAndNodesImport() throws {
        let start = Timestamp(seconds: 1_798_761_600)
        let pods = try AlibabaTrace.parsePods(
            """
            name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
            openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12000,10
            openb-pod-0001,6000,8192,1,500,V100M32|T4,BE,Succeeded,100,3700,100
            openb-pod-0002,8000,0,0,0,,LS,Succeeded,200,5000,200
            openb-pod-0003,32000,65536,8,1000,,Burstable,Succeeded,300,9000,600
            openb-pod-0004,1000,100,2,1000,,LS,Pending,400,,
            """, start: start)
        #expect(pods.jobs.map(\.gpus) == [1, 1, 8] && pods.fractional == 1 && pods.skipped == 2)
        #expect(pods.jobs.map(\.gpuShareMilli) == [nil, 500, nil])
        #expect(pods.jobs.map(\.durationSeconds) == [11_990, 3600, 8400])
        #expect(pods.jobs.map(\.tier) == [.onDemand, .spot, .onDemand])
        #expect(pods.jobs[2].submit == start.adding(seconds: 300))
        let fleet = try AlibabaTrace.parseNodes(
            """
            sn,cpu_milli,memory_mib,gpu,model
            openb-node-0001,96000,786432,8,V100M32
            openb-node-0002,96000,786432,2,T4
            openb-node-0003,64000,262144,0,
            """, model: "H100")
        #expect(fleet.nodes.map(\.gpuCount) == [8, 2])
        #expect(fleet.nodes.map { $0.labels[AlibabaTrace.modelLabel] } == ["V100M32", "T4"])
        // gpu_spec: pod 1 accepts V100M32 or T4 only.
        #expect(pods.typed == 1 && pods.jobs[1].placement?.nodeSelectorAnyOf == [AlibabaTrace.modelLabel: ["V100M32", "T4"]])
        #expect(pods.jobs[0].placement == nil)
        var sim = try Simulation(Simulation.Config(fleet: fleet, jobs: pods.jobs))
        let s = try sim.run()
        #expect(s.gpus == 10 && s.completed == 3 && s.ledgerBalanced)
        #expect(throws: StratusError.self) { try AlibabaTrace.parsePods("name,cpu\n", start: start) }
    }

    /// Pods limited to a GPU type run only on nodes of that type, even when another type
    /// is free: two 8-GPU T4 pods take turns on the one T4 node while the V100 node idles.
    @Test func alibabaGPUSpecsPickTheNodes() throws {
        let start = Timestamp(seconds: 1_798_761_600)
        let pods = try AlibabaTrace.parsePods(
            """
            name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
            p0,1000,1024,8,1000,T4,LS,Succeeded,0,1000,0
            p1,1000,1024,8,1000,T4,LS,Succeeded,0,1000,0
            p2,1000,1024,8,1000,A10|V100M16,LS,Succeeded,0,1000,0
            """, start: start)
        let fleet = try AlibabaTrace.parseNodes(
            """
            sn,cpu_milli,memory_mib,gpu,model
            n-v100,96000,786432,8,V100M16
            n-t4,96000,786432,8,T4
            """, model: "H100")
        var sim = try Simulation(Simulation.Config(fleet: fleet, jobs: pods.jobs))
        let s = try sim.run()
        #expect(s.completed == 3)
        let ran = sim.engine.state.usage.records.map { ($0.job.rawValue, $0.node.rawValue) }.sorted { $0.0 < $1.0 }
        let t4 = fleet.nodes.first { $0.labels[AlibabaTrace.modelLabel] == "T4" }!.id.rawValue
        let v100 = fleet.nodes.first { $0.labels[AlibabaTrace.modelLabel] == "V100M16" }!.id.rawValue
        #expect(ran.map(\.1) == [t4, t4, v100], "\(ran)")
        // One T4 pod waited for the other: 1,000 s queued.
        #expect(s.tiers[Tier.onDemand.rawValue]?.queueDelaySeconds.p99 == 1000)
    }
}

@Suite struct SimulationTests {
    /// 16 GPUs (2 nodes of 8). At t0: A and B take 8 GPUs for 100 s each; at +10 s, C
    /// needs all 16 for 50 s; at +20 s, D needs 4 for 30 s. C starts at 100 (delay 90),
    /// D after C at 150 (delay 130): the run ends at 180 s. Allocated: 8x100 + 8x100 +
    /// 16x50 + 4x30 = 2,520 GPU-s of 16 x 180 = 2,880: 87.50%.
    static func config() -> Simulation.Config {
        let t0 = Timestamp(seconds: 1_800_000_000)
        let jobs = [
            TraceJob(submit: t0, durationSeconds: 100, gpus: 8, org: "lab"),
            TraceJob(submit: t0, durationSeconds: 100, gpus: 8, org: "lab"),
            TraceJob(submit: t0.adding(seconds: 10), durationSeconds: 50, gpus: 16, org: "lab"),
            TraceJob(submit: t0.adding(seconds: 20), durationSeconds: 30, gpus: 4, org: "lab"),
            TraceJob(submit: t0.adding(seconds: 30), durationSeconds: 30, gpus: 9, org: "lab"),
        ]
        return Simulation.Config(fleet: .uniform(gpus: 16, nodesPerRack: 2), jobs: jobs)
    }

    @Test func aSmallTraceRunsAsWorkedByHand() throws {
        var sim = try Simulation(Self.config())
        let s = try sim.run()
        #expect(s.gpus == 16 && s.jobs == 5)
        #expect(s.refused == 1, "9 GPUs do not split into nodes of 8")
        #expect(s.completed == 4 && s.unfinished == 0)
        #expect(s.utilizationBasisPoints == 8750)
        #expect(s.end == Timestamp(seconds: 1_800_000_180).description)
        let onDemand = try #require(s.tiers["on-demand"])
        #expect(onDemand.queueDelaySeconds.mean == 55.0, "(0 + 0 + 90 + 130) / 4")
        #expect(onDemand.queueDelaySeconds.p99 == 130)
        #expect(onDemand.completionSeconds.p50 == 140)
        // Revenue is the usage rated at the H100 on-demand list price: 2,520 GPU-s.
        let price = try #require(
            sim.engine.state.billing.prices.price(
                org: "lab", SKU(gpuModel: "H100", region: "sim", tier: .onDemand), at: Timestamp(seconds: 1_800_000_000)))
        #expect(onDemand.revenue == Money.charge(gpuSeconds: 2520, pricePerGPUHour: price).description)
        #expect(s.ledgerBalanced)
        // The fleet's cost over the 180 s: 14,557.40 a year x 16 GPUs x 180 / (8,760 x
        // 3,600) = 1.329442 (1.33); per used GPU-hour (0.7 of them): 1.899202.
        #expect(s.economics.cost == "1.33")
        #expect(s.economics.costPerUsedGpuHour == "1.899202")
        #expect(s.economics.costPerInstalledGpuHour == "1.661803")
        #expect(s.economics.revenue == onDemand.revenue)
        // One hour bucket: 2,520 GPU-s / 3,600 s = 0.70 GPUs allocated on average.
        let csv = SimulationReport.csv(sim.series)
        #expect(
            csv == "time,allocated_internal,allocated_reserved,allocated_on_demand,allocated_spot,queued\n"
                + "\(Timestamp(seconds: 1_800_000_000)),0.00,0.00,0.70,0.00,0\n")
        let html = SimulationReport.html(s, sim.series)
        #expect(html.contains("<h1>Simulation: 16 GPUs, 5 jobs</h1>") && html.contains("<polygon") && html.contains("1.899202"))
    }

    /// Packing to 130% of 16 GPUs (2 nodes of 8) with jobs of 6 GPUs: they arrive until
    /// 24 GPUs are asked for (4 jobs, 150% >= 130%; a fifth never comes). Two fit, one per
    /// node; the other two wait, and the 2 + 2 free GPUs are stranded: 75% allocated.
    @Test func packingReportsAllocationAndStrandedCapacity() throws {
        let t0 = Timestamp(seconds: 1_800_000_000)
        let jobs = (0..<5).map { TraceJob(submit: t0.adding(seconds: Int64($0)), durationSeconds: 60, gpus: 6, org: "lab") }
        var config = Simulation.Config(fleet: .uniform(gpus: 16, nodesPerRack: 2), jobs: jobs)
        config.packingBasisPoints = 13_000
        var sim = try Simulation(config)
        let s = try sim.run()
        let p = try #require(s.packing)
        #expect(s.jobs == 4)
        #expect(p.demandGpus == 24 && p.allocatedGpus == 12 && p.allocatedBasisPoints == 7500)
        #expect(p.freeGpus == 4 && p.strandedGpus == 4 && p.queuedJobs == 2)
        #expect(s.completed == 0, "in a packing run nothing leaves")
    }

    @Test func theSameInputGivesTheSameRun() throws {
        var a = try Simulation(Self.config())
        var b = try Simulation(Self.config())
        #expect(try a.run() == b.run())
        #expect(a.engine.state == b.engine.state)
    }
}
