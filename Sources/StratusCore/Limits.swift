/// Every limit in one place, named, so that tests and docs can refer to them.
public enum Limits {
    /// Largest HTTP request body the API reads.
    public static let maxRequestBodyBytes = 1 << 20
    /// Largest job spec or fleet file the CLI reads.
    public static let maxSpecFileBytes = 1 << 20
    /// Longest name of an org, project, region, site, rack or node.
    public static let maxNameLength = 63
    /// Longest `run` command of a job.
    public static let maxRunCommandBytes = 64 << 10
    /// Most environment variables a job may set.
    public static let maxJobEnvs = 128
    /// Longest value of one environment variable.
    public static let maxEnvValueBytes = 8 << 10
    /// Most nodes one job may span.
    public static let maxNodesPerJob = 1024
    /// Longest `max_duration` a job may ask for (30 days).
    public static let maxJobDurationSeconds: Int64 = 30 * 24 * 3600
    /// Queued jobs the control plane holds; beyond it submissions are refused.
    public static let maxQueuedJobs = 100_000
    /// Jobs the scheduler considers in one plan.
    public static let maxJobsPerPlan = 10_000
    /// Nodes the scheduler scans for one job before giving up on it for this round.
    public static let maxNodesScannedPerJob = 100_000
    /// Moments (ends of running work) the start estimate tries before it gives up.
    public static let maxEstimateSteps = 10_000
    /// Default and largest page of a list endpoint.
    public static let defaultPageSize = 100
    public static let maxPageSize = 1000
    /// Longest idempotency key accepted.
    public static let maxIdempotencyKeyLength = 255
    /// Bytes of job logs returned by one logs request.
    public static let maxLogBytesPerRequest = 1 << 20
    /// Most nodes (and regions, sites, racks together) one fleet file may declare.
    public static let maxFleetObjects = 200_000
    /// GPUs on one node.
    public static let maxGPUsPerNode = 72
    /// Most CPU (1,024 cores) and memory (64 TiB) a node may declare or a job ask for per node.
    public static let maxNodeResources = NodeResources(cpuMilli: 1_024_000, memoryMiB: 64 << 20)
    /// Log entries between two snapshots.
    public static let snapshotEveryCommands = 10_000
    /// Events kept per job (the oldest are dropped first).
    public static let maxJobEvents = 100
    /// Values one node-selector label may accept (`{gpu: [a, b]}`).
    public static let maxSelectorValues = 64
    /// Nodes a job event names (a large gang's placement names the first, then a count).
    public static let nodesNamedPerEvent = 16
    /// Jobs one `retire_jobs` command forgets at most (the oldest first).
    public static let maxJobsRetiredPerCommand = 100_000
    /// How long the server keeps a job after it ended (`stratus up --retain-jobs`), and
    /// the shortest retention it accepts.
    public static let defaultJobRetentionSeconds: Int64 = 90 * 86_400
    public static let minJobRetentionSeconds: Int64 = 3_600
    /// Agents' reports one `agent_reports` command carries at most.
    public static let maxReportsPerCommand = 65_536
    /// Most times a job may be requeued by its retry policy.
    public static let maxRetries = 100
    /// Requeues after node losses a job gets by default (its spec's `retry` may say otherwise).
    public static let defaultNodeLostRetries = 3
    /// Default seconds between a node agent's heartbeats.
    public static let defaultHeartbeatSeconds: Int64 = 10
    /// Default seconds without a heartbeat after which a node is lost (five missed heartbeats).
    public static let defaultNodeLostSeconds: Int64 = 50
    /// Longest an assignments long-poll waits before answering "no change".
    public static let maxAssignmentWaitSeconds: Int64 = 60
    /// Agent tokens the control plane holds, revoked ones included.
    public static let maxAgentTokens = 100_000
    /// Longest address an agent may register (a DNS name is at most 253 characters).
    public static let maxAgentAddressLength = 253
    /// GPU utilization samples kept per running job and GPU (in memory; the newest).
    public static let maxSamplesPerGPU = 360
    /// Samples one report may carry.
    public static let maxSamplesPerReport = 1000
    /// Largest chunk of job output one log upload may carry.
    public static let maxLogChunkBytes = 512 << 10
    /// Default notice running work gets when a node is drained with requeue.
    public static let defaultDrainNoticeSeconds: Int64 = 120
    /// Default notice a preempted spot job gets before it is killed.
    public static let defaultPreemptionNoticeSeconds: Int64 = 120
    /// Days of per-org usage history kept for fair share.
    public static let usageHistoryDays: Int64 = 90
    /// Largest fair-share weight of an org.
    public static let maxFairShareWeight = 1000
    /// Default fair-share half-life (7 days).
    public static let defaultFairShareHalfLifeSeconds: Int64 = 7 * 86400
    /// Quota rules the control plane holds.
    public static let maxQuotaRules = 100_000
    /// Reservations (capacity blocks) the control plane holds, ended ones included.
    public static let maxReservations = 10_000
    /// Longest reservation (one year) and the most GPUs one may hold.
    public static let maxReservationSeconds: Int64 = 366 * 86400
    public static let maxReservationGPUs = 1_048_576
    /// Most whole racks one reservation may hold.
    public static let maxReservationRacks = 1024
    /// How far ahead a reservation may start (one year).
    public static let maxReservationLeadSeconds: Int64 = 366 * 86400
    /// Points in one internal-reserve forecast series.
    public static let maxReserveSeriesPoints = 10_000
    /// Points of price history kept per SKU (spot prices move every few minutes).
    public static let maxPricePointsPerSKU = 200_000
    /// Negotiated prices one org may have.
    public static let maxOrgPrices = 1000
    /// Longest id, source or subject of a usage event.
    public static let maxUsageIDBytes = 255
    /// GPUs one usage event may cover.
    public static let maxGPUsPerUsageEvent = 1_048_576
    /// Longest span one usage event may cover (31 days).
    public static let maxUsageEventSeconds: Int64 = 31 * 86400
    /// Usage events in one batch (one request, one log entry).
    public static let maxUsageEventsPerBatch = 10_000
    /// How far in the future an event may end (clock skew between a source and us).
    public static let usageClockSkewSeconds: Int64 = 300
    /// How late a usage event may arrive by default (35 days).
    public static let defaultLateUsageWindowSeconds: Int64 = 35 * 86400
    /// Transfers kept in memory for the journal view; all of them are in the log.
    public static let journalKept = 10_000
    /// Settled holds kept before they are pruned.
    public static let holdsKept = 100_000
    /// Prices (list and org) one request may set.
    public static let maxPricesPerCommand = 10_000
    /// Largest usage batch request body (10,000 CloudEvents fit comfortably).
    public static let maxUsageBodyBytes = 16 << 20
    /// How long after a month ends the server waits for late usage before it closes the
    /// month and issues invoices (usage later than that becomes an adjustment).
    public static let defaultInvoiceGraceSeconds: Int64 = 86400
    /// Project budgets the control plane holds.
    public static let maxBudgets = 100_000
    /// Budget alerts kept (the oldest are dropped first).
    public static let maxBudgetAlertsKept = 10_000
    /// How often the server recomputes spot prices.
    public static let spotPriceIntervalSeconds: Int64 = 300
    /// Spend commitments one org may have open at once.
    public static let maxCommitmentsPerOrg = 10
    /// SLAs the control plane checks.
    public static let maxSLAs = 1000
}
