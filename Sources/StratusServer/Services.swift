import Logging
import ServiceLifecycle
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger

/// Runs a scheduling round at a fixed interval; each round that places work appends
/// its plan to the log.
struct SchedulerService: Service {
    let plane: ControlPlane
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let plan = try await plane.schedule()
                    for p in plan.placements {
                        logger.info("placed \(p.job) on \(p.nodes.map { "\($0.node)\($0.gpus)" }.joined(separator: " "))")
                    }
                    for p in plan.preemptions {
                        logger.info(
                            "\(p.job) preempts \(p.victims.map(\.rawValue).joined(separator: ", ")) (\(p.noticeSeconds) s notice)"
                        )
                    }
                } catch {
                    logger.error("scheduling round failed: \(error)")
                }
                // Cancellation (graceful shutdown) ends the sleep and then the loop.
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// The in-process link between local agents and the control plane.
public struct LocalAgentLink: AgentLink {
    let plane: ControlPlane

    public init(plane: ControlPlane) { self.plane = plane }

    public func assignments(node: NodeID, known: String?, wait: Duration) async throws -> AssignmentUpdate {
        let (digest, items) = await plane.assignments(node: node, known: known, wait: wait)
        return AssignmentUpdate(digest: digest, items: items)
    }

    public func reportStarted(_ a: Assignment) async throws {
        try await refusals {
            try await plane.execute(.allocationStarted(AllocationStarted(job: a.job, node: a.node, attempt: a.attempt)))
        }
    }

    public func reportExited(_ a: Assignment, exitCode: Int32?, reason: String?) async throws {
        try await refusals {
            try await plane.execute(
                .allocationExited(
                    AllocationExited(job: a.job, node: a.node, exitCode: exitCode, reason: reason, attempt: a.attempt)))
        }
    }

    /// The control plane's refusals (a report about an ended run) are final.
    private func refusals(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as StratusError where error.code != .internal && error.code != .unavailable {
            throw AgentRefusal(error.message)
        }
    }
}

/// Starts an in-process agent for every node labelled `stratus.local-agent: "true"`,
/// including nodes added while it runs. On shutdown each agent stops its processes and
/// reports their end, so usage stops when the work stopped.
struct LocalAgentsService: Service {
    static let label = "stratus.local-agent"
    let plane: ControlPlane
    let files: JobFiles
    let logger: Logger

    func run() async throws {
        // Cancelling the loop cancels the agents too: each stops its processes,
        // reports their end, and returns before the group does.
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                var started = Set<NodeID>()
                while !Task.isCancelled {
                    let local = await plane.read { s in
                        s.nodeOrder.filter { s.nodes[$0]!.labels[Self.label] == "true" }
                    }
                    for node in local where started.insert(node).inserted {
                        let agent = NodeAgent(node: node, link: LocalAgentLink(plane: plane), files: files, logger: logger)
                        group.addTask { await agent.run() }
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }
}

/// Closes each month once its grace period for late usage has passed, issuing invoices,
/// and moves spot prices every `Limits.spotPriceIntervalSeconds` (see `SpotMarket`).
struct BillingService: Service {
    let plane: ControlPlane
    let market = SpotMarket()
    let graceSeconds: Int64
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastSpot = Timestamp.zero
            while !Task.isCancelled {
                do {
                    let now = await plane.now
                    let last = Period(containing: now.adding(seconds: -graceSeconds)).previous
                    if await plane.read({ !$0.billing.isClosed(last) }) {
                        try await plane.execute(.closePeriod(ClosePeriod(period: last)))
                        let issued = await plane.read { s in s.billing.invoices.values.filter { $0.period == last }.count }
                        logger.info("closed \(last): \(issued) invoices issued")
                    }
                } catch {
                    logger.error("closing the billing period failed: \(error)")
                }
                do {
                    let now = await plane.now
                    if now.milliseconds - lastSpot.milliseconds >= Limits.spotPriceIntervalSeconds * 1000 {
                        lastSpot = now
                        let notice = await plane.reservationLeadSeconds
                        let updates = await plane.read { $0.spotPriceUpdates(market, at: now) }
                        if !updates.isEmpty {
                            try await plane.execute(.setSpotPrices(SetSpotPrices(prices: updates, noticeSeconds: notice)))
                            for u in updates { logger.info("spot price \(u.sku.gpuModel) in \(u.sku.region): \(u.point.price)") }
                        }
                    }
                } catch {
                    logger.error("spot price update failed: \(error)")
                }
                try? await Task.sleep(for: .seconds(30))
            }
        }
    }
}

/// Declares nodes lost when their agents stop heartbeating (`lostAfter` seconds, default
/// 50: five missed heartbeats), and drops GPU samples of jobs that no longer run. On
/// shutdown it answers every waiting long-poll so the server can stop at once.
struct NodeMonitorService: Service {
    let plane: ControlPlane
    let lostAfterSeconds: Int64
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                for (node, last) in await plane.silentNodes(timeout: lostAfterSeconds) {
                    do {
                        try await plane.execute(.nodeLost(NodeLost(node: node, lastSeen: last)))
                        logger.warning("node \(node) lost: no heartbeat since \(last)")
                    } catch {
                        logger.error("declaring \(node) lost failed: \(error)")
                    }
                }
                await plane.pruneSamples()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await plane.releaseWaiters()
    }
}

/// Forgets jobs that ended more than `retainSeconds` ago (their money stays in the
/// ledger and invoices, their GPU time in the usage totals), checking every
/// `min(an hour, retainSeconds / 10)`: like Slurm's MinJobAge, it keeps a long-running
/// control plane's memory to the work of its retention window.
struct RetentionService: Service {
    let plane: ControlPlane
    let retainSeconds: Int64
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let n = try await plane.retireJobs(endedSecondsAgo: retainSeconds)
                    if n > 0 { logger.info("retired \(n) jobs that ended more than \(retainSeconds) s ago") }
                } catch {
                    logger.error("retiring old jobs failed: \(error)")
                }
                try? await Task.sleep(for: .seconds(max(1, min(3_600, retainSeconds / 10))))
            }
        }
    }
}
