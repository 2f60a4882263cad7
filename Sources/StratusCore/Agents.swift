/// One GPU as a node agent found it (from `nvidia-smi`) or as its config declares it.
public struct GPUDevice: Codable, Equatable, Sendable {
    public var index: Int
    /// The driver's UUID (`GPU-...`); declared GPUs get `declared-<node>-<index>`.
    public var uuid: String
    /// The product name the driver reports ("NVIDIA H100 80GB HBM3").
    public var name: String
    public var memoryMib: Int64
    public var powerLimitWatts: Int64?

    public init(index: Int, uuid: String, name: String, memoryMib: Int64, powerLimitWatts: Int64? = nil) {
        self.index = index
        self.uuid = uuid
        self.name = name
        self.memoryMib = memoryMib
        self.powerLimitWatts = powerLimitWatts
    }
}

/// What the control plane knows about the agent that runs a node.
public struct NodeAgentInfo: Codable, Equatable, Sendable {
    /// Host name or address other nodes of a gang reach this one at (`MASTER_ADDR`).
    public var address: String
    public var gpus: [GPUDevice]
    public var registeredAt: Timestamp
    public var version: String
    /// The agent token it registered with.
    public var token: AgentTokenID

    public init(address: String, gpus: [GPUDevice], registeredAt: Timestamp, version: String, token: AgentTokenID) {
        self.address = address
        self.gpus = gpus
        self.registeredAt = registeredAt
        self.version = version
        self.token = token
    }
}

/// A credential for node agents, separate from tenant API keys: it can call the agent
/// endpoints only, and an API key cannot call them. Bound to one node, or (unbound) to
/// any node, for provisioning systems that start many agents.
public struct AgentToken: Codable, Equatable, Sendable {
    public let id: AgentTokenID
    public let name: String
    public let node: NodeID?
    /// Lowercase hex SHA-256 of the whole secret.
    public let secretHash: String
    public let hint: String
    public let createdAt: Timestamp
    public var revokedAt: Timestamp?

    public init(
        id: AgentTokenID, name: String, node: NodeID?, secretHash: String, hint: String, createdAt: Timestamp,
        revokedAt: Timestamp? = nil
    ) {
        self.id = id
        self.name = name
        self.node = node
        self.secretHash = secretHash
        self.hint = hint
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    /// Whether this token may act for `node`.
    public func allows(_ node: NodeID) -> Bool { revokedAt == nil && (self.node == nil || self.node == node) }
}

extension GPUCatalog {
    /// The catalog model a driver's product name names: "NVIDIA H100 80GB HBM3" is H100,
    /// "NVIDIA A100-SXM4-80GB" is A100, "NVIDIA GB200" is GB200. The name is split into
    /// words at anything but letters and digits, and a word must equal a model's name.
    public static func model(productName: String) -> GPUModel? {
        let words = productName.uppercased().split { !($0.isLetter || $0.isNumber) }
        for word in words {
            if let m = model(named: String(word)) { return m }
        }
        return nil
    }
}

/// One reading of one GPU of a running job, taken by its node's agent (`nvidia-smi`).
public struct GPUSample: Codable, Equatable, Sendable {
    public var job: JobID
    public var node: NodeID
    public var gpuIndex: Int
    public var gpuUuid: String
    public var at: Timestamp
    /// Percent of time a kernel ran over the driver's last sample period (0-100).
    public var utilizationPct: Int
    public var memoryUsedMib: Int64
    public var memoryTotalMib: Int64
    public var powerWatts: Int64?

    public init(
        job: JobID, node: NodeID, gpuIndex: Int, gpuUuid: String, at: Timestamp, utilizationPct: Int, memoryUsedMib: Int64,
        memoryTotalMib: Int64, powerWatts: Int64? = nil
    ) {
        self.job = job
        self.node = node
        self.gpuIndex = gpuIndex
        self.gpuUuid = gpuUuid
        self.at = at
        self.utilizationPct = utilizationPct
        self.memoryUsedMib = memoryUsedMib
        self.memoryTotalMib = memoryTotalMib
        self.powerWatts = powerWatts
    }
}

/// The recent samples of one job, per GPU (by UUID), newest last, at most
/// `Limits.maxSamplesPerGPU` each.
public struct JobSamples: Sendable {
    public private(set) var byGPU: [String: [GPUSample]] = [:]

    public init() {}

    public mutating func add(_ s: GPUSample) {
        var list = byGPU[s.gpuUuid] ?? []
        if let last = list.last, last.at >= s.at { return }  // resent or out of order
        list.append(s)
        if list.count > Limits.maxSamplesPerGPU { list.removeFirst(list.count - Limits.maxSamplesPerGPU) }
        byGPU[s.gpuUuid] = list
    }
}

/// The version agents report when they register.
public enum StratusVersion {
    public static let current = "0.5.0"
}
