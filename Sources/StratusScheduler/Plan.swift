import StratusCore

/// What the scheduler sees: an immutable copy of the facts that decide placement.
public struct SchedulingSnapshot: Sendable {
    public struct NodeView: Sendable {
        public let id: NodeID
        public let gpuModel: String
        public let schedulable: Bool
        /// Free GPU indices on the node, ascending.
        public let freeGPUs: [Int]
        public let gpuCount: Int

        public init(id: NodeID, gpuModel: String, schedulable: Bool, freeGPUs: [Int], gpuCount: Int) {
            self.id = id
            self.gpuModel = gpuModel
            self.schedulable = schedulable
            self.freeGPUs = freeGPUs
            self.gpuCount = gpuCount
        }
    }

    public struct PendingJob: Sendable {
        public let id: JobID
        public let tier: Tier
        public let gpuModel: String
        public let gpusPerNode: Int
        public let numNodes: Int

        public init(id: JobID, tier: Tier, gpuModel: String, gpusPerNode: Int, numNodes: Int) {
            self.id = id
            self.tier = tier
            self.gpuModel = gpuModel
            self.gpusPerNode = gpusPerNode
            self.numNodes = numNodes
        }
    }

    /// Nodes in inventory order.
    public let nodes: [NodeView]
    /// Queued jobs in submission order.
    public let pending: [PendingJob]

    public init(nodes: [NodeView], pending: [PendingJob]) {
        self.nodes = nodes
        self.pending = pending
    }
}

/// One node's part of a placement.
public struct NodeAssignment: Codable, Equatable, Sendable {
    public let node: NodeID
    public let gpus: [Int]

    public init(node: NodeID, gpus: [Int]) {
        self.node = node
        self.gpus = gpus
    }
}

/// A decision with its reason. Placements are applied by the state machine and
/// recorded in the log; waits are kept to answer "why is my job pending".
public struct Placement: Codable, Equatable, Sendable {
    public let job: JobID
    public let nodes: [NodeAssignment]
    public let reason: String

    public init(job: JobID, nodes: [NodeAssignment], reason: String) {
        self.job = job
        self.nodes = nodes
        self.reason = reason
    }
}

public struct Wait: Codable, Equatable, Sendable {
    public let job: JobID
    public let reason: String

    public init(job: JobID, reason: String) {
        self.job = job
        self.reason = reason
    }
}

public struct Plan: Codable, Equatable, Sendable {
    public var placements: [Placement]
    public var waits: [Wait]

    public init(placements: [Placement] = [], waits: [Wait] = []) {
        self.placements = placements
        self.waits = waits
    }

    public var isEmpty: Bool { placements.isEmpty }
}
