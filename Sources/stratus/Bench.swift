import ArgumentParser
import Foundation
import StratusCore
import StratusScheduler

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print numbers (build with -c release).",
        subcommands: [SchedulerBench.self, LedgerBench.self, SimBench.self])
}

/// Measures `TieredScheduler.plan` on a synthetic fleet: half H100 in 8-GPU nodes (racks
/// of 4 nodes), half GB200 in NVL72 racks (18 nodes of 4 GPUs), over 8 sites, with
/// occupancy from a seeded generator (per GPU for single-node jobs, per node for gangs;
/// 95% per GPU for preemption, where every used GPU is preemptible spot). Prints JSON.
struct SchedulerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scheduler")

    @Option(help: "GPUs in the synthetic fleet.") var gpus = 1_048_576
    @Option(help: "Share of GPUs in use before each stream (0-1).") var occupancy = 0.7
    @Option(help: "Decisions timed one by one per stream (latency percentiles).") var decisions = 1000
    @Option(
        help:
            "Single-node jobs in the batched round (throughput); gangs of 8 use a tenth, of 64 a hundredth, preemption a twentieth."
    ) var batch = 10_000
    @Option(help: "Batched rounds per stream; the median is reported.") var rounds = 5
    @Option(help: "Streams to measure, comma-separated (the others print zeros).")
    var streams = "single_node,gang_8,gang_64,preemption"
    @Option var seed: UInt64 = 42

    /// A fleet snapshot at the given occupancy; used GPUs are held by spot jobs (so that
    /// preemption has victims), one job per node.
    func fleet(occupancy: Double, wholeNodes: Bool = false, rng: inout SeededRandom) -> (
        nodes: [SchedulingSnapshot.NodeView], running: [SchedulingSnapshot.RunningJob]
    ) {
        var nodes: [SchedulingSnapshot.NodeView] = []
        var running: [SchedulingSnapshot.RunningJob] = []
        let h100Nodes = gpus / 2 / 8
        let gbNodes = (gpus - h100Nodes * 8) / 4
        nodes.reserveCapacity(h100Nodes + gbNodes)
        func add(_ id: String, model: String, count: Int, rack: Int, site: Int) {
            let used =
                wholeNodes
                ? (Double.random(in: 0..<1, using: &rng) < occupancy ? count : 0)
                : (0..<count).filter { _ in Double.random(in: 0..<1, using: &rng) < occupancy }.count
            let free = Array(used..<count)
            nodes.append(
                .init(id: NodeID(id), gpuModel: model, schedulable: true, freeGPUs: free, gpuCount: count, rack: rack, site: site)
            )
            if used > 0 {
                running.append(
                    .init(
                        id: JobID("s-\(id)"), tier: .spot, org: "bench", project: "default",
                        startedAt: Timestamp(seconds: Int64(running.count)),
                        allocations: [NodeAssignment(node: NodeID(id), gpus: Array(0..<used))],
                        stopping: false))
            }
        }
        for n in 0..<h100Nodes { add("h\(n)", model: "H100", count: 8, rack: n / 4, site: n % 8) }
        let h100Racks = (h100Nodes + 3) / 4
        for n in 0..<gbNodes { add("g\(n)", model: "GB200", count: 4, rack: h100Racks + n / 18, site: (n / 18) % 8) }
        return (nodes, running)
    }

    /// Builds the snapshot (and its indexes) from the fleet, timing it.
    func snapshot(_ fleet: (nodes: [SchedulingSnapshot.NodeView], running: [SchedulingSnapshot.RunningJob])) -> (
        SchedulingSnapshot, Double
    ) {
        var snap: SchedulingSnapshot?
        let took = ContinuousClock().measure {
            snap = SchedulingSnapshot(nodes: fleet.nodes, pending: [], running: fleet.running)
        }
        return (snap!, micros(took) / 1000)
    }

    struct Stream: Encodable {
        struct Latency: Encodable {
            let p50: Double
            let p99: Double
            let p999: Double
        }
        let placementsPerS: Double
        let latencyUs: Latency
        let decisionsTimed: Int
        let placed: Int
    }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    func micros(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12
    }

    func stream(
        _ name: String, _ base: SchedulingSnapshot, scheduler: TieredScheduler, job: (Int) -> SchedulingSnapshot.PendingJob,
        batchSize: Int,
        expectPreemption: Bool = false
    ) -> Stream {
        guard streams.split(separator: ",").contains(Substring(name)) else {
            return Stream(placementsPerS: 0, latencyUs: .init(p50: 0, p99: 0, p999: 0), decisionsTimed: 0, placed: 0)
        }
        let clock = ContinuousClock()
        // Latency: one decision per plan, on the same fleet.
        var latencies: [Double] = []
        var placed = 0
        for i in 0..<decisions {
            let snap = base.replacingPending([job(i)])
            var plan = Plan()
            let took = clock.measure { plan = scheduler.plan(snap, now: .zero) }
            latencies.append(micros(took))
            placed += expectPreemption ? plan.preemptions.count : plan.placements.count
        }
        latencies.sort()
        // Throughput: a batch of decisions in one round.
        let pending = (0..<batchSize).map(job)
        let snap = base.replacingPending(pending)
        var rates: [Double] = []
        for _ in 0..<max(1, rounds) {
            var plan = Plan()
            let took = clock.measure { plan = scheduler.plan(snap, now: .zero) }
            let decided = expectPreemption ? plan.preemptions.count : plan.placements.count
            rates.append(Double(decided) / max(micros(took) / 1e6, 1e-9))
        }
        rates.sort()
        return Stream(
            placementsPerS: rates[rates.count / 2],
            latencyUs: .init(
                p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), p999: percentile(latencies, 0.999)),
            decisionsTimed: decisions, placed: placed)
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
            let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    struct Report: Encodable {
        let gpus: Int
        let nodes: Int
        let occupancy: Double
        let singleNode: Stream
        let gang8: Stream
        let gang64: Stream
        let preemption: Stream
        let stateBytes: Int
        let snapshotBuildMs: Double
        let note: String

        enum CodingKeys: String, CodingKey {
            case gpus, nodes, occupancy, preemption, note
            case singleNode = "single_node"
            case gang8 = "gang_8"
            case gang64 = "gang_64"
            case stateBytes = "state_bytes"
            case snapshotBuildMs = "snapshot_build_ms"
        }
    }

    func run() async throws {
        var rng = SeededRandom(seed: seed)
        let before = Self.residentBytes()
        let (base, buildMs) = snapshot(fleet(occupancy: occupancy, rng: &rng))
        let stateBytes = Self.residentBytes() - before
        let scheduler = TieredScheduler()
        FileHandle.standardError.write(Data("fleet: \(base.nodes.count) nodes, \(gpus) GPUs; measuring...\n".utf8))
        let single = stream(
            "single_node", base, scheduler: scheduler,
            job: { i in
                .init(id: JobID("j\(i)"), tier: .onDemand, gpuModel: "H100", gpusPerNode: 1 + i % 8, numNodes: 1)
            }, batchSize: batch)
        // Gangs take whole nodes; their fleet is occupied by whole nodes too.
        let (emptier, _) = snapshot(fleet(occupancy: occupancy, wholeNodes: true, rng: &rng))
        let gang8 = stream(
            "gang_8", emptier, scheduler: scheduler,
            job: { i in
                .init(
                    id: JobID("g\(i)"), tier: .onDemand, gpuModel: i % 2 == 0 ? "H100" : "GB200", gpusPerNode: i % 2 == 0 ? 8 : 4,
                    numNodes: 8)
            }, batchSize: max(1, batch / 10))
        let gang64 = stream(
            "gang_64", emptier, scheduler: scheduler,
            job: { i in
                .init(id: JobID("G\(i)"), tier: .onDemand, gpuModel: "H100", gpusPerNode: 8, numNodes: 64, topology: .site)
            }, batchSize: max(1, batch / 100))
        let (full, _) = snapshot(fleet(occupancy: 0.95, rng: &rng))
        let preemption = stream(
            "preemption", full, scheduler: scheduler,
            job: { i in
                .init(id: JobID("p\(i)"), tier: .onDemand, gpuModel: "H100", gpusPerNode: 8, numNodes: 1)
            }, batchSize: max(1, batch / 20), expectPreemption: true)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let report = Report(
            gpus: gpus, nodes: base.nodes.count, occupancy: occupancy, singleNode: single, gang8: gang8, gang64: gang64,
            preemption: preemption, stateBytes: stateBytes, snapshotBuildMs: buildMs,
            note:
                "latency: one plan() per decision on a prebuilt snapshot; placements_per_s: one round with a batch of jobs; snapshot_build_ms: building the snapshot and its indexes from the fleet, once per round"
        )
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
    }
}
