import ArgumentParser
import Foundation
import StratusCore
import StratusSimulation

/// `stratus sim`: the digital twin. This first cut runs a workload trace on a uniform
/// fleet through the production scheduler and ledger on a simulated clock and writes
/// `summary.json`, `series.csv` and `report.html`.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a cloud on the real scheduler and ledger: a trace on a fleet, on a simulated clock.",
        discussion: "Example: stratus sim --philly ../shared/traces/philly/philly.csv --gpus 2000 --out sim-out")

    @Option(name: .long, help: "A Philly trace (timestamp,duration,num_gpus,gpu_time,cluster).") var philly: String
    @Option(name: .long, help: "GPUs of the simulated fleet (H100 in nodes of 8, racks of 4).") var gpus = 2000
    @Option(name: .long, help: "Only the first N jobs of the trace.") var jobs: Int?
    @Option(
        name: .long,
        help: "Packing experiment: jobs never leave, and arrive until they ask for this share of the GPUs (e.g. 130%).")
    var packing: String?
    @Option(name: .long, help: "Directory for summary.json, series.csv and report.html.") var out = "sim-out"

    func run() async throws {
        try await cli {
            guard gpus >= 8, gpus <= Limits.maxReservationGPUs else {
                throw CLIError("--gpus: between 8 and \(Limits.maxReservationGPUs)")
            }
            guard let text = try? String(contentsOfFile: philly, encoding: .utf8) else {
                throw CLIError("\(philly): cannot read file")
            }
            var trace = try PhillyTrace.parse(text)
            if let jobs { trace = Array(trace.prefix(max(0, jobs))) }
            let clock = ContinuousClock()
            let t0 = clock.now
            var config = Simulation.Config(fleet: .uniform(gpus: gpus), jobs: trace)
            if let packing {
                let text = packing.hasSuffix("%") ? String(packing.dropLast()) : packing
                guard let percent = Int64(text), percent >= 1, percent <= 1000 else {
                    throw CLIError("--packing: '\(packing)' is not a whole percentage between 1% and 1000%")
                }
                config.packingBasisPoints = percent * 100
            }
            var sim = try Simulation(config)
            let total = trace.count
            let summary = try sim.run { p in
                let rate = Double(p.events) / max(0.001, Sim.seconds(clock.now - t0))
                let line = "\r\(p.now)  \(p.finished)/\(total) jobs done, \(p.queued) queued, \(Int(rate)) events/s   "
                FileHandle.standardError.write(Data(line.utf8))
            }
            let wall = Sim.seconds(clock.now - t0)
            FileHandle.standardError.write(Data("\n".utf8))
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(summary)
            try data.write(to: URL(fileURLWithPath: "\(out)/summary.json"))
            try SimulationReport.csv(sim.series).write(toFile: "\(out)/series.csv", atomically: true, encoding: .utf8)
            try SimulationReport.html(summary, sim.series).write(toFile: "\(out)/report.html", atomically: true, encoding: .utf8)
            print(String(decoding: data, as: UTF8.self))
            print(
                "wrote \(out)/summary.json, series.csv and report.html; \(summary.events) events in \(String(format: "%.1f", wall)) s of wall time"
            )
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
