import StratusCore

/// A node's assignments as the control plane last answered, with their digest (an
/// agent sends the digest back so the next long-poll answers only on change).
public struct AssignmentUpdate: Sendable {
    public let digest: String
    public let items: [Assignment]
    public init(digest: String, items: [Assignment]) {
        self.digest = digest
        self.items = items
    }
}

/// One run of a job on this node: runs of a requeued job have different attempts.
public struct RunKey: Hashable, Sendable, CustomStringConvertible {
    public let job: JobID
    public let attempt: Int
    public init(job: JobID, attempt: Int) {
        self.job = job
        self.attempt = attempt
    }
    public var description: String { "\(job)#\(attempt + 1)" }
}

/// What the control plane answers a heartbeat.
public struct HeartbeatAnswer: Sendable {
    /// False when the node was declared lost: the agent must register again.
    public let registered: Bool
    /// Runs the control plane has given up: kill them, report nothing.
    public let kill: [RunKey]
    public init(registered: Bool, kill: [RunKey]) {
        self.registered = registered
        self.kill = kill
    }
}

/// A refusal from the control plane (4xx): retrying the same report cannot succeed.
public struct AgentRefusal: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How an agent talks to the control plane. `stratus up` links in-process agents
/// directly; `stratus agent` implements the same calls over HTTP. Calls that only a
/// networked agent needs (registration, heartbeats, log upload, samples) default to
/// nothing.
public protocol AgentLink: Sendable {
    /// The node's assignments, once they differ from `known` or `wait` has passed.
    func assignments(node: NodeID, known: String?, wait: Duration) async throws -> AssignmentUpdate
    func reportStarted(_ a: Assignment) async throws
    func reportExited(_ a: Assignment, exitCode: Int32?, reason: String?) async throws
    /// Registers the node with what it runs; returns the runs to kill.
    func register(node: NodeID, gpus: [GPUDevice], running: [RunKey]) async throws -> [RunKey]
    func heartbeat(node: NodeID, running: [RunKey], health: String) async throws -> HeartbeatAnswer
    /// Sends bytes of a job's output from `offset`; returns how much the server has.
    func uploadLog(_ run: RunKey, node: NodeID, offset: Int, _ data: [UInt8]) async throws -> Int
    func postSamples(_ samples: [GPUSample], attempts: [JobID: Int]) async throws
    /// Whether logs must be uploaded (false when the agent writes into the server's files).
    var uploadsLogs: Bool { get }
}

extension AgentLink {
    public func register(node: NodeID, gpus: [GPUDevice], running: [RunKey]) async throws -> [RunKey] { [] }
    public func heartbeat(node: NodeID, running: [RunKey], health: String) async throws -> HeartbeatAnswer {
        HeartbeatAnswer(registered: true, kill: [])
    }
    public func uploadLog(_ run: RunKey, node: NodeID, offset: Int, _ data: [UInt8]) async throws -> Int {
        offset + data.count
    }
    public func postSamples(_ samples: [GPUSample], attempts: [JobID: Int]) async throws {}
    public var uploadsLogs: Bool { false }
}

/// Where job output and working directories live under the agent's directory (for
/// in-process agents, the server's data directory).
public struct JobFiles: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public func logPath(job: JobID, node: NodeID) -> String { "\(root)/logs/\(job)/\(node).log" }
    public func workDir(job: JobID, node: NodeID) -> String { "\(root)/work/\(job)/\(node)" }
    public func pidPath(job: JobID, node: NodeID) -> String { "\(root)/work/\(job)/\(node).pid" }
    /// What the agent remembers of a run it started, so a restarted agent can adopt it.
    public func runPath(job: JobID, node: NodeID) -> String { "\(workDir(job: job, node: node))/.stratus-run.json" }
    /// Written by the wrapper around the job with the job's exit status.
    public func exitPath(job: JobID, node: NodeID) -> String { "\(workDir(job: job, node: node))/.stratus-exit" }
    /// Written when the job is preempted; its path is in `STRATUS_PREEMPTION_NOTICE_FILE`.
    public func noticePath(job: JobID, node: NodeID) -> String { "\(workDir(job: job, node: node))/.stratus-preemption-notice" }
}
