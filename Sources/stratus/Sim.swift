import ArgumentParser
import Foundation
import StratusCore
import StratusServer
import StratusSimulation

/// `stratus sim`: the digital twin. Runs a scenario (a whole cloud: sites, contracts,
/// demand, faults) or a workload trace on a uniform fleet through the production
/// scheduler and ledger on a simulated clock, and writes a report directory.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a cloud on the real scheduler and ledger, on a simulated clock.",
        discussion: """
            Examples:
              stratus sim examples/sim/h100-30mw.yaml --out sim-out
              stratus sim examples/sim/h100-30mw.yaml --compare examples/sim/h100-30mw-idle.yaml --out what-if
              stratus sim --philly ../shared/traces/philly/philly.csv --gpus 2000 --out sim-out
            Writes summary.json, series.csv, months.csv and report.html (with --compare: a/ and b/ with
            each run's files, and report.html and comparison.json side by side). docs/simulation.md
            documents the scenario file.
            """)

    @Argument(help: "A scenario file (YAML). See docs/simulation.md and examples/sim/.") var scenario: String?
    @Option(name: .long, help: "A second scenario to compare with the first (a what-if).") var compare: String?
    @Option(name: .long, help: "Override the scenario's seed.") var seed: UInt64?
    @Option(name: .long, help: "A Philly trace (timestamp,duration,num_gpus,gpu_time,cluster) instead of a scenario.")
    var philly: String?
    @Option(name: .long, help: "A trace in Stratus' CSV format (submit,duration_seconds,gpus,org,tier) instead of a scenario.")
    var trace: String?
    @Option(name: .long, help: "An Alibaba cluster-trace-gpu-v2023 pod table instead of a scenario.") var alibabaPods: String?
    @Option(name: .long, help: "With --alibaba-pods: its node table, for the fleet's shape (H100 GPUs).") var alibabaNodes:
        String?
    @Option(name: .long, help: "With a trace: GPUs of the simulated fleet (H100 in nodes of 8, racks of 4).") var gpus = 2000
    @Option(name: .long, help: "With a trace: only the first N jobs of the trace.") var jobs: Int?
    @Option(
        name: .long,
        help:
            "With --philly: packing experiment: jobs never leave, and arrive until they ask for this share of the GPUs (e.g. 130%)."
    )
    var packing: String?
    @Option(name: .long, help: "Directory for the report.") var out = "sim-out"
    @Flag(
        name: .long,
        help:
            "Inject faults (agent restarts, duplicated, late and reordered reports, control-plane crashes replayed from the log) and check every invariant after every step."
    )
    var faults = false
    @Flag(name: .long, help: "Run random small scenarios with --faults; with --seed, just that one.") var fuzz = false
    @Option(name: .long, help: "With --fuzz: how many seeds (from --first-seed).") var seeds = 100
    @Option(name: .long, help: "With --fuzz: the first seed.") var firstSeed: UInt64 = 1

    func run() async throws {
        try await cli {
            if fuzz { return try runFuzz() }
            guard [scenario, philly, trace, alibabaPods].compactMap({ $0 }).count == 1 else {
                throw CLIError("give one of: a scenario file, --philly TRACE, --trace TRACE, --alibaba-pods PODS")
            }
            if compare != nil, scenario == nil { throw CLIError("--compare: compares two scenarios; give the first one too") }
            let a = try config(scenario: scenario)
            guard let compare else {
                let run = try simulate(a, label: scenario ?? philly ?? trace ?? alibabaPods!)
                try write(run, to: out)
                print(String(decoding: try Sim.json(run.summary), as: UTF8.self))
                print(
                    "wrote \(out)/summary.json, series.csv, months.csv and report.html; \(run.summary.events) events in \(String(format: "%.1f", run.wall)) s of wall time"
                )
                return
            }
            let b = try config(scenario: compare)
            let runA = try simulate(a, label: scenario!)
            let runB = try simulate(b, label: compare)
            try write(runA, to: "\(out)/a")
            try write(runB, to: "\(out)/b")
            let labelA = runA.summary.name ?? scenario!
            let labelB = runB.summary.name ?? compare
            try SimulationReport.comparison([(labelA, runA.summary, runA.series), (labelB, runB.summary, runB.series)])
                .write(toFile: "\(out)/report.html", atomically: true, encoding: .utf8)
            struct Comparison: Encodable {
                let a: Simulation.Summary
                let b: Simulation.Summary
            }
            try Sim.json(Comparison(a: runA.summary, b: runB.summary)).write(to: URL(fileURLWithPath: "\(out)/comparison.json"))
            for (label, s) in [(labelA, runA.summary), (labelB, runB.summary)] {
                print(
                    "\(label): margin \(s.economics.margin), cost per used GPU-hour \(s.economics.costPerUsedGpuHour ?? "-"), utilization \(Double(s.utilizationBasisPoints) / 100)%, payback \(s.finance.paybackMonths.map { "\($0) months" + (s.finance.paybackProjected ? " (projected)" : "") } ?? "not in sight")"
                )
            }
            print("wrote \(out)/report.html and comparison.json (each run's files in \(out)/a and \(out)/b)")
        }
    }

    struct Run {
        let summary: Simulation.Summary
        let series: Simulation.Series
        let wall: Double
    }

    func config(scenario path: String?) throws -> Simulation.Config {
        if let path {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CLIError("\(path): cannot read file")
            }
            switch Sim.load(text) {
            case .success(var s):
                if let seed { s.seed = seed }
                var config = Simulation.Config(scenario: s)
                config.chaos = faults
                return config
            case .failure(let e):
                throw CLIError("\(path): \(e.message)")
            }
        }
        guard gpus >= 8, gpus <= Limits.maxReservationGPUs else {
            throw CLIError("--gpus: between 8 and \(Limits.maxReservationGPUs)")
        }
        func read(_ path: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CLIError("\(path): cannot read file")
            }
            return text
        }
        var jobs: [TraceJob]
        var fleet = FleetSpec.uniform(gpus: gpus)
        if let philly {
            jobs = try PhillyTrace.parse(read(philly))
        } else if let trace {
            jobs = try StratusTrace.parse(read(trace))
        } else {
            let imported = try AlibabaTrace.parsePods(read(alibabaPods!), start: Timestamp(seconds: 1_798_761_600))
            FileHandle.standardError.write(
                Data(
                    "\(alibabaPods!): \(imported.jobs.count) GPU pods (\(imported.fractional) on a fraction of one GPU, \(imported.typed) limited to some GPU types; \(imported.skipped) pods without GPUs or that never ran skipped)\n"
                        .utf8))
            jobs = imported.jobs
            if let nodes = alibabaNodes {
                fleet = try AlibabaTrace.parseNodes(read(nodes), model: "H100")
            } else if imported.typed > 0 {
                // Without the node table no node has a GPU type: the pods' gpu_spec is ignored.
                FileHandle.standardError.write(
                    Data("without --alibaba-nodes, gpu_spec is ignored (no node has a GPU type)\n".utf8))
                for k in jobs.indices { jobs[k].placement = nil }
            }
        }
        if let limit = self.jobs { jobs = Array(jobs.prefix(max(0, limit))) }
        var config = Simulation.Config(fleet: fleet, jobs: jobs)
        if let packing {
            let text = packing.hasSuffix("%") ? String(packing.dropLast()) : packing
            guard let percent = Int64(text), percent >= 1, percent <= 1000 else {
                throw CLIError("--packing: '\(packing)' is not a whole percentage between 1% and 1000%")
            }
            config.packingBasisPoints = percent * 100
        }
        config.chaos = faults
        return config
    }

    /// `--fuzz`: random small scenarios with faults injected and invariants checked
    /// after every step; prints each failing seed (which reproduces it exactly).
    func runFuzz() throws {
        guard scenario == nil, philly == nil else { throw CLIError("--fuzz makes its own scenarios; give no file") }
        guard seeds >= 1, seeds <= 1_000_000 else { throw CLIError("--seeds: between 1 and 1000000") }
        let list: [UInt64] = seed.map { [$0] } ?? (0..<UInt64(seeds)).map { firstSeed &+ $0 }
        let clock = ContinuousClock()
        let t0 = clock.now
        var failed: [UInt64] = []
        var events = 0
        var checks = 0
        for (k, s) in list.enumerated() {
            do {
                let summary = try Simulation.fuzz(seed: s)
                events += summary.events
                checks += summary.chaos?.checks ?? 0
            } catch {
                failed.append(s)
                FileHandle.standardError.write(Data("\rFAIL \(error)\n".utf8))
            }
            // A progress line on a terminal; a line per 100 seeds in a log.
            if Sim.terminal ? (k % 10 == 9 || k == list.count - 1) : (k % 100 == 99) {
                let line = "fuzz: \(k + 1)/\(list.count) seeds, \(failed.count) failed, \(events) events"
                FileHandle.standardError.write(Data((Sim.terminal ? "\r\(line)   " : "\(line)\n").utf8))
            }
        }
        if Sim.terminal { FileHandle.standardError.write(Data("\n".utf8)) }
        let wall = Sim.seconds(clock.now - t0)
        print(
            "fuzz: \(list.count) seeds, \(events) events, invariants checked \(checks) times, \(failed.count) failed, \(String(format: "%.1f", wall)) s"
        )
        if !failed.isEmpty {
            print("failing seeds: \(failed.map(String.init).joined(separator: " ")) (reproduce: stratus sim --fuzz --seed N)")
            throw ExitCode(1)
        }
    }

    static func load(_ text: String) -> Result<Scenario, StratusError> {
        Result { () throws(StratusError) -> Scenario in try Scenario.parse(SpecDocument.parseYAML(text)) }
    }

    /// Runs one simulation with a progress bar on stderr (simulated date, share done, events/s).
    func simulate(_ config: Simulation.Config, label: String) throws -> Run {
        let clock = ContinuousClock()
        let t0 = clock.now
        var sim = try Simulation(config)
        let summary = try sim.run { p in
            guard Sim.terminal else { return }
            let rate = Double(p.events) / max(0.001, Sim.seconds(clock.now - t0))
            let filled = Int(p.doneBasisPoints / 500)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: max(0, 20 - filled))
            let date = String(p.now.description.prefix(10))
            let line =
                "\r\(label): [\(bar)] \(p.doneBasisPoints / 100)%  \(date)  \(p.finished) jobs done, \(p.queued) queued, \(Int(rate)) events/s   "
            FileHandle.standardError.write(Data(line.utf8))
        }
        let wall = Sim.seconds(clock.now - t0)
        FileHandle.standardError.write(
            Data(
                "\r\(label): [####################] 100%  \(summary.events) events in \(String(format: "%.1f", wall)) s\(String(repeating: " ", count: 30))\n"
                    .utf8))
        return Run(summary: summary, series: sim.series, wall: wall)
    }

    func write(_ run: Run, to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Sim.json(run.summary).write(to: URL(fileURLWithPath: "\(dir)/summary.json"))
        try SimulationReport.csv(run.series).write(toFile: "\(dir)/series.csv", atomically: true, encoding: .utf8)
        try SimulationReport.monthsCSV(run.summary.finance).write(toFile: "\(dir)/months.csv", atomically: true, encoding: .utf8)
        try SimulationReport.html(run.summary, run.series).write(toFile: "\(dir)/report.html", atomically: true, encoding: .utf8)
    }

    static func json<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(value)
    }

    /// Whether stderr is a terminal (progress redraws in place there).
    static let terminal = isatty(2) != 0

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
