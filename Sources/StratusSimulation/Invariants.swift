import StratusControl
import StratusCore
import StratusLedger

/// What must hold of the state after every step, whatever faults were injected: no GPU
/// allocated twice (and the GPU table agrees with the jobs), the ledger balances, every
/// usage record is unique and their GPU time is exactly what the simulated agents ran,
/// tiers and capacity blocks are respected, and the queue holds exactly the queued jobs.
public enum Invariants {
    /// The simulator's own count of the work its agents ran and ended.
    public struct Ran: Sendable, Equatable {
        public var allocations = 0
        public var gpuMilliseconds: Int64 = 0
        public init() {}
    }

    /// The violations, empty when everything holds.
    /// With `recount`, the counters the state keeps (power, spot supply, node views, the
    /// capacity index) are also compared with a recount over the whole fleet: the costly
    /// part, so callers may do it on a sample of steps (a missed update stays wrong until
    /// the node changes again, so a later sample still sees it).
    public static func check(_ s: State, ran: Ran?, now: Timestamp, recount: Bool = true) -> [String] {
        var problems: [String] = []
        // The GPU table and the jobs' live allocations describe the same assignment.
        var live: [NodeID: [Int: JobID]] = [:]
        var resources: [NodeID: NodeResources] = [:]
        var shares: [NodeID: [Int: GPUShare]] = [:]
        for (id, job) in s.jobs {
            let running = job.allocations.filter { !$0.isEnded }
            if job.state.isTerminal, !running.isEmpty {
                problems.append("\(id) is \(job.state.rawValue) but holds GPUs on \(running.map(\.node.rawValue))")
            }
            if job.spec.tier == .internal, job.org != InternalOrg.id {
                problems.append("\(id) runs at the internal tier for org \(job.org)")
            }
            for a in running {
                if let need = job.spec.nodeResources { resources[a.node] = resources[a.node, default: .zero] + need }
                if let milli = job.spec.gpuShareMilli, let g = a.gpus.first {
                    var share = shares[a.node]?[g] ?? GPUShare(org: job.org, tier: job.spec.tier, milli: 0, jobs: [])
                    if share.org != job.org || share.tier != job.spec.tier {
                        problems.append("GPU \(g) of \(a.node) is shared by \(share.org)/\(share.tier.rawValue) and \(id)")
                    }
                    share.milli += milli
                    share.jobs.append(id)
                    shares[a.node, default: [:]][g] = share
                    continue
                }
                for g in a.gpus {
                    if let other = live[a.node]?[g] {
                        problems.append("GPU \(g) of \(a.node) is allocated to both \(other) and \(id)")
                    }
                    live[a.node, default: [:]][g] = id
                }
            }
        }
        for (node, holders) in s.gpuHolders {
            guard let n = s.nodes[node] else {
                problems.append("GPUs held on \(node), which does not exist")
                continue
            }
            if holders.count != n.gpuCount { problems.append("\(node) has \(n.gpuCount) GPUs but \(holders.count) slots") }
            for (g, holder) in holders.enumerated() where holder != live[node]?[g] {
                problems.append(
                    "GPU \(g) of \(node): the table says \(holder?.rawValue ?? "free"), the jobs say \(live[node]?[g]?.rawValue ?? "free")"
                )
            }
            if n.lostAt != nil, holders.contains(where: { $0 != nil }) { problems.append("\(node) is lost but holds work") }
        }
        // Shared GPUs: the table holds exactly the jobs on fractions, within the whole GPU,
        // and no whole holder.
        for node in Set(shares.keys).union(s.gpuShares.keys) {
            let table = s.gpuShares[node] ?? [:]
            let jobs = shares[node] ?? [:]
            for g in Set(table.keys).union(jobs.keys) {
                let t = table[g]
                let j = jobs[g]
                if t?.milli != j?.milli || Set(t?.jobs ?? []) != Set(j?.jobs ?? []) || t?.jobs.count != j?.jobs.count {
                    problems.append(
                        "GPU \(g) of \(node): the share table says \(String(describing: t)), the jobs \(String(describing: j))")
                }
                if let t, t.milli > 1000 {
                    problems.append("GPU \(g) of \(node) is shared beyond the whole GPU: \(t.milli)/1000")
                }
                if s.gpuHolders[node]?[g] != nil, t != nil {
                    problems.append("GPU \(g) of \(node) is both shared and held whole")
                }
                if live[node]?[g] != nil, j != nil { problems.append("GPU \(g) of \(node) is both shared and allocated whole") }
            }
        }
        // Power and spot supply kept as commands apply equal a count over the fleet.
        if recount { problems += s.counterProblems() }
        // CPU and memory: the table is the sum of the live allocations, within each node's own.
        for node in Set(resources.keys).union(s.resourcesInUse.keys) {
            let table = s.resourcesInUse[node] ?? .zero
            let jobs = resources[node] ?? .zero
            if table != jobs { problems.append("\(node): resources in use say \(table), the jobs hold \(jobs)") }
            if let has = s.nodes[node]?.resources, !has.covers(jobs) {
                problems.append("\(node): jobs hold \(jobs), more than its \(has)")
            }
        }
        for (node, gpus) in live where s.gpuHolders[node] == nil {
            problems.append("jobs hold \(gpus.count) GPUs of \(node), which has no GPU table")
        }
        // The queue is exactly the queued jobs, each once.
        let queued = Set(s.jobs.values.filter { $0.state == .queued }.map(\.id))
        if s.queue.count != Set(s.queue).count { problems.append("a job is in the queue twice") }
        if Set(s.queue) != queued { problems.append("the queue and the queued jobs differ") }
        // Capacity blocks: their jobs use at most the block, within its window.
        var inBlock: [ReservationID: Int] = [:]
        for job in s.jobs.values {
            guard let r = job.spec.reservation else { continue }
            let gpus = job.allocations.filter { !$0.isEnded }.reduce(0) { $0 + $1.gpus.count }
            guard gpus > 0 else { continue }
            inBlock[r, default: 0] += gpus
            if let block = s.reservations[r], now > block.end {
                problems.append("\(job.id) runs in \(r) after the block ended at \(block.end)")
            }
            if job.spec.tier != .reserved { problems.append("\(job.id) runs in \(r) at tier \(job.spec.tier.rawValue)") }
        }
        for (r, gpus) in inBlock where gpus > (s.reservations[r]?.gpus ?? 0) {
            problems.append("\(r) holds \(s.reservations[r]?.gpus ?? 0) GPUs but its jobs use \(gpus)")
        }
        // Money: the ledger balances; usage is recorded once, and is what ran.
        if !s.billing.ledger.checkBalanced() { problems.append("the ledger does not balance") }
        let records = s.usage.records
        if Set(records.map(\.id)).count != records.count { problems.append("a usage record is counted twice") }
        if let ran {
            // Records of retired jobs count by their kept totals.
            let total = records.reduce(s.usage.retiredGPUMilliseconds) { $0 + $1.gpuMilliseconds }
            let count = records.count + s.usage.retiredRecords
            if count != ran.allocations || total != ran.gpuMilliseconds {
                problems.append(
                    "usage: \(count) records of \(total) GPU-ms, but the agents ran \(ran.allocations) of \(ran.gpuMilliseconds)"
                )
            }
        }
        return problems.sorted()
    }
}

/// A failure of the simulated cloud: an invariant broke, or a replay gave another state.
public struct SimulationFailure: Error, CustomStringConvertible, Sendable {
    public let seed: UInt64
    public let at: Timestamp
    public let step: Int
    public let problems: [String]
    public var description: String {
        "seed \(seed): at \(at) (step \(step)): " + problems.prefix(5).joined(separator: "; ")
    }
}
