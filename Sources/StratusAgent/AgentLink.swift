import StratusCore

/// How an agent talks to the control plane. `stratus up` links in-process agents
/// directly; a networked agent implements the same calls over HTTP.
public protocol AgentLink: Sendable {
    func assignments(node: NodeID) async throws -> [Assignment]
    func reportStarted(job: JobID, node: NodeID) async throws
    func reportExited(job: JobID, node: NodeID, exitCode: Int32?, reason: String?) async throws
}

/// Where job output and working directories live under the data directory.
public struct JobFiles: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public func logPath(job: JobID, node: NodeID) -> String { "\(root)/logs/\(job)/\(node).log" }
    public func workDir(job: JobID, node: NodeID) -> String { "\(root)/work/\(job)/\(node)" }
    public func pidPath(job: JobID, node: NodeID) -> String { "\(root)/work/\(job)/\(node).pid" }
    /// Written when the job is preempted; its path is in `STRATUS_PREEMPTION_NOTICE_FILE`.
    public func noticePath(job: JobID, node: NodeID) -> String { "\(workDir(job: job, node: node))/.stratus-preemption-notice" }
}
