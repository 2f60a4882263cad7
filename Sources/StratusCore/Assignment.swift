/// What an agent must run on its node: one allocation of a job, with everything the
/// process needs. Built by the control plane from its state.
public struct Assignment: Codable, Equatable, Sendable {
    public let job: JobID
    public let node: NodeID
    public let rank: Int
    public let gpus: [Int]
    public let numNodes: Int
    public let run: String
    public let envs: [String: String]
    public let maxDurationSeconds: Int64?
    /// Node of rank 0, for `MASTER_ADDR`.
    public let masterNode: NodeID
    public let started: Bool
    public let stopRequested: Bool
    /// Set for a preemption: kill the process at this time if it has not exited.
    public let stopDeadline: Timestamp?
    /// Why the process must stop, for the notice the job reads.
    public let stopReason: String?
    /// Which run of the job this is (0 first; a requeue starts the next). Reports name it.
    public var attempt: Int = 0
    /// Where rank 0 is reached (`MASTER_ADDR`): its agent's registered address.
    public var masterAddress: String?
    /// UUIDs of `gpus` when the node's agent registered them, in the same order.
    public var gpuUuids: [String]?
    /// The job's fraction of its one GPU, in thousandths; nil: whole GPUs.
    public var gpuShareMilli: Int?

    public init(
        job: JobID, node: NodeID, rank: Int, gpus: [Int], numNodes: Int, run: String, envs: [String: String],
        maxDurationSeconds: Int64?, masterNode: NodeID, started: Bool, stopRequested: Bool,
        stopDeadline: Timestamp? = nil, stopReason: String? = nil
    ) {
        self.job = job
        self.node = node
        self.rank = rank
        self.gpus = gpus
        self.numNodes = numNodes
        self.run = run
        self.envs = envs
        self.maxDurationSeconds = maxDurationSeconds
        self.masterNode = masterNode
        self.started = started
        self.stopRequested = stopRequested
        self.stopDeadline = stopDeadline
        self.stopReason = stopReason
    }
}
