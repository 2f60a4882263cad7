import StratusCore

/// The placement policy. `plan` is a pure function of its inputs: the same snapshot
/// and time always give the same plan.
public protocol Scheduler: Sendable {
    func plan(_ snapshot: SchedulingSnapshot, now: Timestamp) -> Plan
}

/// First fit on whole GPUs: jobs in tier order, then submission order; each job takes
/// the first `numNodes` schedulable nodes of its GPU model with enough free GPUs, lowest
/// GPU indices first, all or nothing. A job that does not fit waits and does not block
/// smaller jobs behind it (no reservations or backfill guarantees yet).
public struct FirstFitScheduler: Scheduler {
    public init() {}

    public func plan(_ snapshot: SchedulingSnapshot, now: Timestamp) -> Plan {
        var free: [[Int]] = snapshot.nodes.map(\.freeGPUs)
        var plan = Plan()
        let ordered = snapshot.pending.enumerated()
            .sorted { a, b in
                a.element.tier.rank != b.element.tier.rank
                    ? a.element.tier.rank < b.element.tier.rank : a.offset < b.offset
            }
            .prefix(Limits.maxJobsPerPlan)
            .map(\.element)

        for job in ordered {
            var chosen: [(index: Int, gpus: [Int])] = []
            var scanned = 0
            for (i, node) in snapshot.nodes.enumerated() {
                if chosen.count == job.numNodes || scanned == Limits.maxNodesScannedPerJob { break }
                scanned += 1
                guard node.schedulable, node.gpuModel == job.gpuModel, free[i].count >= job.gpusPerNode else {
                    continue
                }
                chosen.append((i, Array(free[i].prefix(job.gpusPerNode))))
            }
            if chosen.count == job.numNodes {
                for c in chosen { free[c.index].removeFirst(job.gpusPerNode) }
                let nodes = chosen.map { NodeAssignment(node: snapshot.nodes[$0.index].id, gpus: $0.gpus) }
                plan.placements.append(
                    Placement(
                        job: job.id, nodes: nodes,
                        reason: "first fit: \(job.numNodes) node(s) with \(job.gpusPerNode) free \(job.gpuModel)"))
            } else {
                plan.waits.append(Wait(job: job.id, reason: waitReason(job, snapshot: snapshot, free: free)))
            }
        }
        return plan
    }

    private func waitReason(_ job: SchedulingSnapshot.PendingJob, snapshot: SchedulingSnapshot, free: [[Int]]) -> String {
        var ofModel = 0
        var bigEnough = 0
        var fitNow = 0
        var freeGPUs = 0
        for (i, node) in snapshot.nodes.enumerated() where node.gpuModel == job.gpuModel {
            ofModel += 1
            guard node.schedulable else { continue }
            freeGPUs += free[i].count
            if node.gpuCount >= job.gpusPerNode { bigEnough += 1 }
            if free[i].count >= job.gpusPerNode { fitNow += 1 }
        }
        if ofModel == 0 { return "capacity: no \(job.gpuModel) nodes in the fleet" }
        if bigEnough < job.numNodes {
            return
                "capacity: needs \(job.numNodes) node(s) with \(job.gpusPerNode) \(job.gpuModel); the fleet has \(bigEnough) schedulable"
        }
        return
            "capacity: needs \(job.numNodes) node(s) with \(job.gpusPerNode) free \(job.gpuModel); \(fitNow) have that now (\(freeGPUs) \(job.gpuModel) free in all)"
    }
}
