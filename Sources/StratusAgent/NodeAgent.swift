import Foundation
import Logging
import StratusCore

#if canImport(Glibc)
    import Glibc
#endif

/// Runs one node's assignments as child processes. Each process gets its own process
/// group (Foundation's `Process` makes the child a group leader), so stopping a job
/// signals its whole tree. Only the loop in `run()` touches the process table.
public struct NodeAgent: Sendable {
    public let node: NodeID
    public let link: any AgentLink
    public let files: JobFiles
    /// How often the agent asks for assignments and checks its processes.
    public var pollInterval: Duration = .milliseconds(200)
    /// Time between SIGTERM and SIGKILL when stopping a job.
    public var stopGraceSeconds: Double = 5
    /// Host name other ranks use to reach rank 0 (all demo nodes are this machine).
    public var masterAddress = "127.0.0.1"
    public var logger: Logger

    public init(node: NodeID, link: any AgentLink, files: JobFiles, logger: Logger) {
        self.node = node
        self.link = link
        self.files = files
        self.logger = logger
    }

    final class Running {
        let assignment: Assignment
        let process: Process
        let startedWall: ContinuousClock.Instant
        var termSentAt: ContinuousClock.Instant?
        /// For a preemption: when to kill, from the notice's deadline.
        var killAt: ContinuousClock.Instant?
        var endReason: String?

        init(assignment: Assignment, process: Process, startedWall: ContinuousClock.Instant) {
            self.assignment = assignment
            self.process = process
            self.startedWall = startedWall
        }
    }

    /// Loops until the task is cancelled, then stops its processes and reports them.
    public func run() async {
        var running: [JobID: Running] = [:]
        let clock = ContinuousClock()
        var adopted = false
        while !Task.isCancelled {
            do {
                let assignments = try await link.assignments(node: node)
                if !adopted {
                    // Work this agent started before a restart is gone with the old process
                    // tree: kill any leftover process group and say so precisely.
                    for a in assignments where a.started {
                        killLeftover(a)
                        try await link.reportExited(
                            job: a.job, node: node, exitCode: nil, reason: "lost: control plane restarted while running")
                    }
                    adopted = true
                    continue
                }
                for a in assignments {
                    if let r = running[a.job] {
                        if a.stopRequested, r.termSentAt == nil {
                            r.endReason = r.endReason ?? a.stopReason.map { "stopped: \($0)" } ?? "stopped on request"
                            if let deadline = a.stopDeadline {
                                writeNotice(a, deadline: deadline)
                                let left = WallClock.now().milliseconds(until: deadline)
                                r.killAt = clock.now + .milliseconds(left)
                            }
                            signal(r, SIGTERM)
                            r.termSentAt = clock.now
                        }
                    } else if a.stopRequested {
                        try await link.reportExited(job: a.job, node: node, exitCode: nil, reason: "stopped before start")
                    } else if !a.started {
                        if let r = start(a, clock: clock) {
                            running[a.job] = r
                            try await link.reportStarted(job: a.job, node: node)
                        } else {
                            try await link.reportExited(
                                job: a.job, node: node, exitCode: nil, reason: "could not start process")
                        }
                    }
                }
                for (job, r) in running {
                    if r.process.isRunning {
                        enforceDeadlines(r, clock: clock)
                        continue
                    }
                    running[job] = nil
                    try? FileManager.default.removeItem(atPath: files.pidPath(job: job, node: node))
                    let (code, reason) = exitStatus(r)
                    try await link.reportExited(job: job, node: node, exitCode: code, reason: reason)
                }
            } catch is CancellationError {
                break
            } catch {
                logger.warning("agent \(node): \(error)")
            }
            try? await Task.sleep(for: pollInterval)
        }
        await shutdown(running)
    }

    private func start(_ a: Assignment, clock: ContinuousClock) -> Running? {
        let fm = FileManager.default
        let logPath = files.logPath(job: a.job, node: node)
        let workDir = files.workDir(job: a.job, node: node)
        do {
            try fm.createDirectory(atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: workDir, withIntermediateDirectories: true)
            // Append: a requeued job's earlier attempts stay in its log.
            if !fm.fileExists(atPath: logPath), !fm.createFile(atPath: logPath, contents: nil) {
                throw StratusError(.internal, "cannot create \(logPath)")
            }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            defer { try? log.close() }
            try log.seekToEnd()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", a.run]
            p.currentDirectoryURL = URL(fileURLWithPath: workDir)
            p.environment = environment(for: a)
            p.standardOutput = log
            p.standardError = log
            p.standardInput = FileHandle.nullDevice
            try p.run()
            try? String(p.processIdentifier).write(
                toFile: files.pidPath(job: a.job, node: node), atomically: true, encoding: .utf8)
            logger.info("agent \(node): started \(a.job) pid \(p.processIdentifier) on GPUs \(a.gpus)")
            return Running(assignment: a, process: p, startedWall: clock.now)
        } catch {
            logger.error("agent \(node): cannot start \(a.job): \(error)")
            return nil
        }
    }

    /// The job's environment: a minimal inherited base, the job's own variables, then
    /// what Stratus sets (which the job spec may not override).
    func environment(for a: Assignment) -> [String: String] {
        let parent = ProcessInfo.processInfo.environment
        var env: [String: String] = [:]
        for key in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR"] { env[key] = parent[key] }
        if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        for (k, v) in a.envs { env[k] = v }
        let visible = a.gpus.map(String.init).joined(separator: ",")
        env["CUDA_VISIBLE_DEVICES"] = visible
        env["NVIDIA_VISIBLE_DEVICES"] = visible
        env["STRATUS_JOB_ID"] = a.job.rawValue
        env["STRATUS_NODE"] = a.node.rawValue
        env["STRATUS_NODE_RANK"] = String(a.rank)
        env["NODE_RANK"] = String(a.rank)
        env["NNODES"] = String(a.numNodes)
        env["GPUS_PER_NODE"] = String(a.gpus.count)
        env["WORLD_SIZE"] = String(a.numNodes * a.gpus.count)
        env["MASTER_ADDR"] = masterAddress
        env["MASTER_PORT"] = String(29500 + Int(stableHash(a.job.rawValue) % 2000))
        env["STRATUS_PREEMPTION_NOTICE_FILE"] = files.noticePath(job: a.job, node: a.node)
        return env
    }

    private func enforceDeadlines(_ r: Running, clock: ContinuousClock) {
        if let limit = r.assignment.maxDurationSeconds, r.termSentAt == nil,
            clock.now - r.startedWall >= .seconds(limit)
        {
            r.endReason = "max_duration exceeded (\(DurationText.format(seconds: limit)))"
            signal(r, SIGTERM)
            r.termSentAt = clock.now
        }
        if let killAt = r.killAt {
            if clock.now >= killAt { signal(r, SIGKILL) }
        } else if let sent = r.termSentAt, clock.now - sent >= .seconds(stopGraceSeconds) {
            signal(r, SIGKILL)
        }
    }

    /// The notice a preempted job can read: when it will be killed, and why.
    private func writeNotice(_ a: Assignment, deadline: Timestamp) {
        let reason = (a.stopReason ?? "preempted").replacingOccurrences(of: "\"", with: "'")
        let text = #"{"deadline":"\#(deadline)","deadline_unix_ms":\#(deadline.milliseconds),"reason":"\#(reason)"}"# + "\n"
        try? text.write(toFile: files.noticePath(job: a.job, node: a.node), atomically: true, encoding: .utf8)
    }

    private func signal(_ r: Running, _ sig: Int32) {
        let pid = r.process.processIdentifier
        if kill(-pid, sig) != 0 { _ = kill(pid, sig) }
    }

    private func exitStatus(_ r: Running) -> (Int32?, String?) {
        let status = r.process.terminationStatus
        if r.process.terminationReason == .uncaughtSignal {
            return (nil, r.endReason ?? "killed by signal \(status)")
        }
        return (status, r.endReason)
    }

    private func killLeftover(_ a: Assignment) {
        let path = files.pidPath(job: a.job, node: node)
        if let text = try? String(contentsOfFile: path, encoding: .utf8), let pid = Int32(text), pid > 1 {
            _ = kill(-pid, SIGKILL)
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Stops every process (SIGTERM, then SIGKILL after the grace period) and reports it.
    private func shutdown(_ running: [JobID: Running]) async {
        guard !running.isEmpty else { return }
        for r in running.values {
            r.endReason = "stopped: node agent shut down"
            signal(r, SIGTERM)
        }
        let deadline = ContinuousClock.now + .seconds(stopGraceSeconds)
        while running.values.contains(where: { $0.process.isRunning }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for r in running.values where r.process.isRunning { signal(r, SIGKILL) }
        for (job, r) in running {
            r.process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: files.pidPath(job: job, node: node))
            let (code, reason) = exitStatus(r)
            // Report even though we are cancelled: usage must stop at the real end.
            try? await link.reportExited(job: job, node: node, exitCode: code, reason: reason)
        }
    }

    private func stableHash(_ s: String) -> UInt64 {
        var h: UInt64 = 14_695_981_039_346_656_037
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 1_099_511_628_211
        }
        return h
    }
}

/// The wall clock, for the shell only (the core never reads a clock).
public enum WallClock {
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }
}
