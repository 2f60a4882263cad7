import ArgumentParser
import Foundation
import StratusCore
import StratusServer
import StratusSimulation

#if canImport(Glibc)
    import Glibc
#endif

/// `stratus bench sim`: the digital twin at cloud scale. Simulates a year of one site of
/// H100 (8-GPU nodes, racks of 4) with on-demand and spot demand sized so that the jobs
/// that arrive fill about 80% of the GPUs, on the production scheduler and ledger; then
/// the whole Philly trace on 2,000 GPUs. Prints JSON: GPUs, jobs, simulated days, events
/// per second, wall time, peak memory, and the Philly run's jobs and wall time.
struct SimBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim")

    @Option(help: "GPUs of the simulated cloud (H100, 8 per node).") var gpus = 1_048_576
    @Option(help: "Jobs that arrive over the run (on average; arrivals are Poisson).") var jobs = 10_000_000
    @Option(help: "Simulated days.") var days = 365
    @Option(help: "Share of the GPUs the arriving work asks for, in percent.") var load = 80
    @Option(help: "The Philly trace (empty: skip it).") var philly = "../shared/traces/philly/philly.csv"
    @Option(help: "GPUs for the Philly run.") var phillyGPUs = 2000
    @Option var seed: UInt64 = 1

    struct Report: Encodable {
        struct Philly: Encodable {
            let jobs: Int
            let wallS: Double
        }
        let gpus: Int
        let jobs: Int
        let completed: Int
        let simulatedDays: Double
        let events: Int
        let eventsPerS: Double
        let wallS: Double
        let peakRssBytes: Int
        let utilizationBasisPoints: Int64
        let philly: Philly?
    }

    /// The scenario: one site with exactly `gpus` H100 (whole racks) and two demand
    /// streams whose mean size and duration give `load` percent of the GPUs.
    func scenario() throws -> Scenario {
        guard gpus >= 32 else { throw CLIError("--gpus: at least 32 (a rack of 4 nodes of 8), got \(gpus)") }
        guard jobs >= 1, days >= 1, load >= 1, load <= 1000 else {
            throw CLIError("--jobs and --days: at least 1; --load: 1 to 1000 (percent)")
        }
        let racks = gpus / 32
        // Wall kW for the racks: GPUs x 1,403 W x PUE 1.25, plus a watt so rounding keeps them all.
        let kw = (Int64(racks * 32) * 1403 * 1250 / 1000 + 1000) / 1000
        let perDay = Double(jobs) / Double(days)
        // Sizes: 1: 30%, 8: 40%, 64: 25%, 512: 5% -> 45.1 GPUs on average.
        let meanGPUs = 0.3 + 3.2 + 16 + 25.6
        let meanSeconds = Double(load) / 100 * Double(racks * 32) * 86400 / (perDay * meanGPUs)
        guard meanSeconds >= 60, meanSeconds <= Double(Limits.maxJobDurationSeconds) else {
            throw CLIError(
                "--jobs: \(jobs) jobs over \(days) day\(days == 1 ? "" : "s") filling \(load)% of \(racks * 32) GPUs would each run \(Int(meanSeconds)) s on average; jobs run 1m to \(Limits.maxJobDurationSeconds / 86400)d (change --jobs, --days, --gpus or --load)"
            )
        }
        // 70% of the arrivals on-demand, 30% spot, each spread over 1,000 orgs (YAML flow style).
        let streams = [("od", "on_demand", 0.7), ("spot", "spot", 0.3)].map { name, tier, share in
            "  - {name: \(name), tier: \(tier), gpu_model: H100, arrivals_per_day: \(String(format: "%.3f", perDay * share)), "
                + "sizes: {1: 30%, 8: 40%, 64: 25%, 512: 5%}, mean_duration: \(Int(meanSeconds))s, orgs: 1000, patience: 30d}"
        }.joined(separator: "\n")
        let yaml = """
            name: bench
            seed: \(seed)
            start: 2027-01-01
            horizon_days: \(days)
            scheduler: {interval: 60s, preemption_notice: 2m}
            sites:
              - name: big
                pue: 1.25
                build_out: [{at: 2027-01-01, mw: \(DecimalText.format(kw, scale: 1000)), gpu_model: H100}]
            demand:
            \(streams)
            """
        return try Scenario.parse(SpecDocument.parseYAML(yaml))
    }

    static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss * 1024
    }

    func run() async throws {
        try await cli {
            let clock = ContinuousClock()
            let t0 = clock.now
            let s = try scenario()
            var config = Simulation.Config(scenario: s)
            // Jobs are forgotten a day after they end (their money is in the ledger), as a
            // long-running control plane would, so memory follows the live work.
            config.retainJobsSeconds = 86_400
            var sim = try Simulation(config)
            let summary = try sim.run { p in
                guard Sim.terminal else { return }
                let rate = Double(p.events) / max(0.001, Sim.seconds(clock.now - t0))
                FileHandle.standardError.write(
                    Data(
                        "\rbench sim: \(p.doneBasisPoints / 100)%  \(String(p.now.description.prefix(10)))  \(p.arrived) jobs, \(p.queued) queued, \(Int(rate)) events/s   "
                            .utf8))
            }
            let wall = Sim.seconds(clock.now - t0)
            if Sim.terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            var phillyRun: Report.Philly?
            if !philly.isEmpty {
                let text = try String(contentsOfFile: philly, encoding: .utf8)
                let p0 = clock.now
                let trace = try PhillyTrace.parse(text)
                var config = Simulation.Config(fleet: .uniform(gpus: phillyGPUs), jobs: trace)
                config.gpusPerNode = 8
                var p = try Simulation(config)
                _ = try p.run()
                phillyRun = .init(jobs: trace.count, wallS: (Sim.seconds(clock.now - p0) * 10).rounded() / 10)
            }
            let report = Report(
                gpus: summary.gpus, jobs: summary.jobs, completed: summary.completed, simulatedDays: summary.simulatedDays,
                events: summary.events, eventsPerS: (Double(summary.events) / max(0.001, wall)).rounded(),
                wallS: (wall * 10).rounded() / 10, peakRssBytes: Self.peakRSS(),
                utilizationBasisPoints: summary.utilizationBasisPoints, philly: phillyRun)
            print(String(decoding: try Sim.json(report), as: UTF8.self))
        }
    }
}
