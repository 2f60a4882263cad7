import StratusCore

/// When could a job start? Running work with a time limit ends at its expected end;
/// the job starts at the first such moment at which it fits (queued work ahead of it is
/// not counted, so this is the earliest possible start, not a promise).
public struct StartEstimate: Sendable, Equatable {
    public let at: Timestamp
    public let nodes: [NodeAssignment]
}

extension TieredScheduler {
    public func earliestStart(_ job: SchedulingSnapshot.PendingJob, in snapshot: SchedulingSnapshot, now: Timestamp)
        -> StartEstimate?
    {
        let probe = snapshot.replacingPending([])
        guard let estimate = Self.earliestStart(job, from: Round(probe, now: now), now: now) else { return nil }
        // A job in a capacity block starts no earlier than the block.
        if let id = job.reservation, let block = snapshot.reservations[id], block.start > estimate.at {
            return StartEstimate(at: block.start, nodes: estimate.nodes)
        }
        return estimate
    }

    /// The same, from a round part-way through planning (its placements count as work
    /// with no known end). `failedNow`: the job was just fitted to `start` as it is and
    /// did not fit, so the estimate begins at the first end (when no running work has a
    /// known end, there is none, and the round is not copied at all: on a full cloud
    /// every queued job asks).
    static func earliestStart(
        _ job: SchedulingSnapshot.PendingJob, from start: Round, now: Timestamp, failedNow: Bool = false
    ) -> StartEstimate? {
        let skipsNow = failedNow && start.blocked.isEmpty
        let snapshot = start.snapshot
        let ends = snapshot.table.ends
        if skipsNow, ends.isEmpty { return nil }
        var round = start
        round.blocked = []
        var cursor = 0
        var time = now
        var steps = 0
        while true {
            if steps > 0 || !skipsNow, case .success(let choice) = round.fit(job) {
                return StartEstimate(
                    at: time, nodes: choice.nodes.map { NodeAssignment(node: snapshot.nodes[$0.0].id, gpus: $0.1) })
            }
            steps += 1
            guard cursor < ends.count, steps <= Limits.maxEstimateSteps else { return nil }
            time = max(ends[cursor].at, now)
            while cursor < ends.count, max(ends[cursor].at, now) == time {
                round.release(snapshot.table[ends[cursor].job])
                cursor += 1
            }
        }
    }
}

extension Round {
    /// Frees what a running job holds, as if it had ended.
    mutating func release(_ r: SchedulingSnapshot.RunningJob) {
        for a in r.allocations {
            guard let i = index[a.node] else { continue }
            capacity.give(i, a.gpus)
            if let id = r.reservation {
                reservationUsed[id, default: 0] -= a.gpus.count
            } else if r.tier != .spot, outside[snapshot.nodes[i].gpuModel] != nil {
                outside.add(-a.gpus.count, model: snapshot.nodes[i].gpuModel, site: snapshot.nodes[i].site)
            }
            // Its CPU and memory too (taken less than nothing: more than the snapshot's free).
            if !r.resources.isZero { resourcesTaken[i] = resourcesTaken[i, default: .zero] - r.resources }
            let site = snapshot.nodes[i].site
            if site < powerLeft.count { powerLeft[site] += watts(i, gpus: a.gpus.count) }
            if r.tier == .onDemand || r.tier == .reserved, reserve[snapshot.nodes[i].gpuModel] != nil {
                sold.add(-a.gpus.count, model: snapshot.nodes[i].gpuModel, site: site)
            }
            if !snapshot.quotas.isEmpty {
                for scope in QuotaScope.all(
                    org: r.org, project: r.project, gpuModel: snapshot.nodes[i].gpuModel, region: region(i))
                where snapshot.quotas[scope] != nil {
                    quotaUsed[scope, default: 0] -= a.gpus.count
                }
            }
        }
    }
}
