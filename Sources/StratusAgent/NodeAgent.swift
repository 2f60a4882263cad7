import Foundation
import Logging
import StratusCore

#if canImport(Glibc)
    import Glibc
#endif

/// Runs one node's assignments as child processes and keeps the control plane told.
///
/// Each workload runs under a small shell wrapper in its own process group (Foundation's
/// `Process` makes the child a group leader), so stopping a job signals its whole tree;
/// the wrapper records the job's exit status in a file, and the agent records the run
/// (pid, start time, assignment) beside it. A restarted agent reads those records and
/// adopts what still runs, or reports precisely how it ended: nothing runs twice and
/// nothing is lost. Runs the control plane has given up (the node was lost, the job was
/// requeued) are killed.
public struct NodeAgent: Sendable {
    public let node: NodeID
    public let link: any AgentLink
    public let files: JobFiles
    /// How often the agent checks its processes (assignment changes arrive by long-poll).
    public var tickInterval: Duration = .milliseconds(200)
    /// Longest an assignments long-poll waits.
    public var longPoll: Duration = .seconds(25)
    public var heartbeatInterval: Duration = .seconds(Limits.defaultHeartbeatSeconds)
    /// How often GPU utilization is sampled (nvidia-smi only).
    public var sampleInterval: Duration = .seconds(10)
    /// Time between SIGTERM and SIGKILL when stopping a job without a deadline.
    public var stopGraceSeconds: Double = 5
    /// Address of rank 0 when the control plane does not know it (in-process agents).
    public var masterAddress = "127.0.0.1"
    /// GPUs to register (networked agents); empty for in-process agents.
    public var gpus: [GPUDevice] = []
    /// Samples GPU utilization when set.
    public var smi: NvidiaSMI?
    public var logger: Logger

    /// What a process on a fraction of one GPU (`milli` thousandths) is told: the share
    /// (`STRATUS_GPU_SHARE`, e.g. 0.25), and the limits an MPS client obeys, as AWS ECS sets
    /// them for MPS containers: that share of the GPU's threads, and of its memory when the
    /// agent knows it (`memoryMib`, from nvidia-smi or the declared GPUs). They bind where
    /// the node runs the MPS control daemon (`nvidia-cuda-mps-control -d`); elsewhere CUDA
    /// ignores them and the share is the job's to keep.
    public static func shareEnvironment(milli: Int, memoryMib: Int64?) -> [String: String] {
        var env = [
            "STRATUS_GPU_SHARE": DecimalText.format(Int64(milli), scale: 1000),
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": DecimalText.format(Int64(milli), scale: 10),
        ]
        // Device 0: the one GPU the process sees (CUDA_VISIBLE_DEVICES names only it).
        if let memoryMib, memoryMib > 0 { env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = "0=\(memoryMib * Int64(milli) / 1000)M" }
        return env
    }

    public init(node: NodeID, link: any AgentLink, files: JobFiles, logger: Logger) {
        self.node = node
        self.link = link
        self.files = files
        self.logger = logger
    }

    /// Runs until the task is cancelled, then stops its processes and reports them.
    public func run() async {
        let runtime = AgentRuntime(agent: self)
        await runtime.adopt()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await runtime.pollAssignments() }
            group.addTask { await runtime.heartbeats() }
            if smi != nil { group.addTask { await runtime.samples() } }
            await runtime.ticks()
            group.cancelAll()
        }
        await runtime.shutdown()
    }
}

/// What the agent remembers of a run on disk (`.stratus-run.json` in its work directory).
struct RunRecord: Codable {
    var assignment: Assignment
    var pid: Int32
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`), so a
    /// reused pid is not mistaken for the job.
    var startTicks: UInt64
    /// When the agent started it (ms since the epoch), for max_duration.
    var startedAtMs: Int64
}

final class Workload {
    let assignment: Assignment
    let pid: Int32
    let startTicks: UInt64
    /// Set for processes this agent started; nil for adopted ones.
    let process: Process?
    /// When its max_duration clock started: once the control plane knew it started (so
    /// the run never gets less than its max_duration of billed time).
    var startedAtMs: Int64
    var termSentAtMs: Int64?
    /// For a preemption or drain: when to kill, from the notice's deadline.
    var killAtMs: Int64?
    var endReason: String?
    /// Bytes of its log the server has (uploading agents); nil until asked.
    var shipped: Int?
    var flushTries = 0

    init(assignment: Assignment, pid: Int32, startTicks: UInt64, process: Process?, startedAtMs: Int64) {
        self.assignment = assignment
        self.pid = pid
        self.startTicks = startTicks
        self.process = process
        self.startedAtMs = startedAtMs
    }

    var key: RunKey { RunKey(job: assignment.job, attempt: assignment.attempt) }
}

/// A report the control plane has not acknowledged yet (retried until it is, or refused).
enum PendingReport {
    case started(Assignment)
    case exited(Assignment, Int32?, String?)
}

actor AgentRuntime {
    let agent: NodeAgent
    var node: NodeID { agent.node }
    var latest: AssignmentUpdate?
    var workloads: [RunKey: Workload] = [:]
    /// Runs that ended while the agent was down, to report once assignments are known.
    var endedWhileDown: [(Assignment, Int32?, String?)] = []
    var pending: [PendingReport] = []
    /// Runs whose end was reported (or refused), until the control plane's assignments
    /// catch up, so a lagging assignment list does not look like a lost process.
    var reported: Set<RunKey> = []
    /// Workloads that ended and whose last output is uploaded before their exit is reported.
    var finished: [RunKey: Workload] = [:]
    var registered = false
    var flushing = false

    init(agent: NodeAgent) { self.agent = agent }

    static func nowMs() -> Int64 { WallClock.now().milliseconds }

    // MARK: adoption

    /// Reads the run records this node's agent left: live processes are adopted, ended
    /// ones are reported with the status their wrapper recorded.
    func adopt() {
        let fm = FileManager.default
        let workRoot = "\(agent.files.root)/work"
        for job in (try? fm.contentsOfDirectory(atPath: workRoot)) ?? [] {
            let path = agent.files.runPath(job: JobID(job), node: node)
            guard let data = fm.contents(atPath: path), let record = try? JSONDecoder().decode(RunRecord.self, from: data),
                record.assignment.node == node
            else { continue }
            let a = record.assignment
            if Self.alive(record.pid, startTicks: record.startTicks) {
                let w = Workload(
                    assignment: a, pid: record.pid, startTicks: record.startTicks, process: nil, startedAtMs: record.startedAtMs)
                workloads[w.key] = w
                agent.logger.info("agent \(node): adopted \(w.key) (pid \(record.pid)), still running")
            } else {
                let (code, reason) = exitStatus(a, process: nil, endReason: nil)
                endedWhileDown.append(
                    (a, code, reason ?? (code == nil ? "ended while its agent was down (exit status unknown)" : nil)))
                try? fm.removeItem(atPath: path)
            }
        }
    }

    /// Whether `pid` is still the process the agent started (same start time).
    static func alive(_ pid: Int32, startTicks: UInt64) -> Bool {
        guard pid > 1, kill(pid, 0) == 0 || errno == EPERM else { return false }
        return Self.startTicks(pid) == startTicks
    }

    /// Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
    static func startTicks(_ pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After "pid (comm)" come fields 3, 4, ...; the start time is field 22.
        guard fields.count > 19, let v = UInt64(fields[19]) else { return nil }
        // A zombie still has its stat; it has ended.
        if fields[0] == "Z" { return nil }
        return v
    }

    // MARK: loops

    func pollAssignments() async {
        var backoff = 1.0
        while !Task.isCancelled {
            do {
                if !registered { try await register() }
                let update = try await agent.link.assignments(node: node, known: latest?.digest, wait: agent.longPoll)
                latest = update
                backoff = 1
                tick()
                await flush()
            } catch is CancellationError {
                return
            } catch {
                agent.logger.warning("agent \(node): assignments: \(error)")
                try? await Task.sleep(for: .milliseconds(Int64(backoff * 1000 * Double.random(in: 0.5...1.5))))
                backoff = min(backoff * 2, 30)
            }
        }
    }

    func register() async throws {
        let kill = try await agent.link.register(node: node, gpus: agent.gpus, running: Array(workloads.keys))
        for key in kill { giveUp(key, why: "the control plane gave it up while this agent was away") }
        registered = true
    }

    func heartbeats() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: agent.heartbeatInterval)
            guard registered else { continue }
            do {
                let answer = try await agent.link.heartbeat(node: node, running: Array(workloads.keys), health: "ok")
                if !answer.registered {
                    agent.logger.warning("agent \(node): the control plane declared this node lost; registering again")
                    registered = false
                    latest = nil
                    try await register()
                }
                for key in answer.kill { giveUp(key, why: "the control plane no longer runs it here") }
            } catch is CancellationError {
                return
            } catch {
                agent.logger.warning("agent \(node): heartbeat: \(error)")
            }
        }
    }

    func samples() async {
        guard let smi = agent.smi else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: agent.sampleInterval)
            guard !workloads.isEmpty, let readings = smi.sample() else { continue }
            let at = WallClock.now()
            var batch: [GPUSample] = []
            var attempts: [JobID: Int] = [:]
            for w in workloads.values where w.termSentAtMs == nil {
                attempts[w.assignment.job] = w.assignment.attempt
                for g in w.assignment.gpus {
                    guard let r = readings[g] else { continue }
                    batch.append(
                        GPUSample(
                            job: w.assignment.job, node: node, gpuIndex: g, gpuUuid: r.uuid, at: at,
                            utilizationPct: max(0, min(100, r.utilizationPct)), memoryUsedMib: r.memoryUsedMib,
                            memoryTotalMib: r.memoryTotalMib, powerWatts: r.powerWatts))
                }
            }
            guard !batch.isEmpty else { continue }
            do {
                try await agent.link.postSamples(batch, attempts: attempts)
            } catch {
                agent.logger.warning("agent \(node): samples: \(error)")
            }
        }
    }

    func ticks() async {
        while !Task.isCancelled {
            tick()
            await flush()
            try? await Task.sleep(for: agent.tickInterval)
        }
    }

    // MARK: reconciling

    /// Brings processes in line with the latest assignments (local work only; reports are
    /// queued and sent by `flush`).
    func tick() {
        guard let latest else { return }
        let assigned = Dictionary(
            latest.items.map { (RunKey(job: $0.job, attempt: $0.attempt), $0) }, uniquingKeysWith: { a, _ in a })
        if !endedWhileDown.isEmpty {
            for (a, code, reason) in endedWhileDown { pending.append(.exited(a, code, reason)) }
            endedWhileDown = []
        }
        for (key, a) in assigned {
            if let w = workloads[key] {
                if a.stopRequested, w.termSentAtMs == nil {
                    w.endReason = w.endReason ?? a.stopReason.map { "stopped: \($0)" } ?? "stopped on request"
                    if let deadline = a.stopDeadline {
                        writeNotice(a, deadline: deadline)
                        w.killAtMs = deadline.milliseconds
                    }
                    signal(w, SIGTERM)
                    w.termSentAtMs = Self.nowMs()
                }
            } else if isPending(key) || reported.contains(key) {
                continue
            } else if a.stopRequested {
                pending.append(.exited(a, nil, "stopped before start"))
            } else if !a.started {
                if let w = start(a) {
                    workloads[key] = w
                    pending.append(.started(a))
                } else {
                    pending.append(.exited(a, nil, "could not start process"))
                }
            } else {
                // Started by an agent of this node, yet no process or record of it is here.
                pending.append(.exited(a, nil, "lost: its agent restarted and found no process or record of it"))
            }
        }
        for (key, w) in workloads {
            if assigned[key] == nil, !isPending(key) {
                giveUp(key, why: "no longer assigned to this node")
                continue
            }
            if isRunning(w) {
                enforceDeadlines(w)
                continue
            }
            workloads[key] = nil
            let (code, reason) = exitStatus(w.assignment, process: w.process, endReason: w.endReason)
            pending.append(.exited(w.assignment, code, reason))
            finished[key] = w
        }
        reported = reported.filter { assigned[$0] != nil }
    }

    func isPending(_ key: RunKey) -> Bool {
        pending.contains {
            switch $0 {
            case .started(let a), .exited(let a, _, _): RunKey(job: a.job, attempt: a.attempt) == key
            }
        }
    }

    /// Kills a run the control plane no longer wants, without reporting it.
    func giveUp(_ key: RunKey, why: String) {
        guard let w = workloads.removeValue(forKey: key) else { return }
        agent.logger.warning("agent \(node): killing \(key): \(why)")
        signal(w, SIGKILL)
        try? FileManager.default.removeItem(atPath: agent.files.runPath(job: key.job, node: node))
    }

    /// Uploads new output and sends queued reports, in order; a report the control plane
    /// refuses is dropped, one that fails to arrive is retried on the next tick.
    func flush() async {
        // Called from the tick loop and after each assignments update; the actor is
        // reentrant at every await, so one flush at a time.
        guard !flushing else { return }
        flushing = true
        defer { flushing = false }
        if agent.link.uploadsLogs, latest != nil {
            for w in Array(workloads.values) + Array(finished.values) { await shipLog(w) }
        }
        while let report = pending.first {
            do {
                switch report {
                case .started(let a):
                    try await agent.link.reportStarted(a)
                    if let w = workloads[RunKey(job: a.job, attempt: a.attempt)] {
                        w.startedAtMs = Self.nowMs()
                        saveRecord(w)
                    }
                case .exited(let a, let code, let reason):
                    let key = RunKey(job: a.job, attempt: a.attempt)
                    if let w = finished[key], agent.link.uploadsLogs {
                        await shipLog(w)
                        w.flushTries += 1
                        // The rest next tick; after a minute of failed uploads, report anyway.
                        guard (w.shipped ?? -1) >= logSize(a) || w.flushTries > 300 else { return }
                    }
                    try await agent.link.reportExited(a, exitCode: code, reason: reason)
                    finished[key] = nil
                    reported.insert(key)
                    try? FileManager.default.removeItem(atPath: agent.files.runPath(job: a.job, node: node))
                }
                pending.removeFirst()
            } catch let refusal as AgentRefusal {
                agent.logger.warning("agent \(node): report refused: \(refusal.message)")
                if case .exited(let a, _, _) = report {
                    finished[RunKey(job: a.job, attempt: a.attempt)] = nil
                    reported.insert(RunKey(job: a.job, attempt: a.attempt))
                    try? FileManager.default.removeItem(atPath: agent.files.runPath(job: a.job, node: node))
                }
                pending.removeFirst()
            } catch {
                agent.logger.warning("agent \(node): report failed, will retry: \(error)")
                return
            }
        }
    }

    func logSize(_ a: Assignment) -> Int {
        let path = agent.files.logPath(job: a.job, node: node)
        return ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    func shipLog(_ w: Workload) async {
        let path = agent.files.logPath(job: w.assignment.job, node: node)
        do {
            if w.shipped == nil {
                // Ask the server how much it has (after a restart, or a first upload).
                w.shipped = try await agent.link.uploadLog(w.key, node: node, offset: 0, [])
            }
            guard let handle = FileHandle(forReadingAtPath: path) else { return }
            defer { try? handle.close() }
            for _ in 0..<8 {
                try handle.seek(toOffset: UInt64(w.shipped!))
                let chunk = try handle.read(upToCount: Limits.maxLogChunkBytes) ?? Data()
                if chunk.isEmpty { return }
                w.shipped = try await agent.link.uploadLog(w.key, node: node, offset: w.shipped!, Array(chunk))
            }
        } catch {
            agent.logger.warning("agent \(node): log upload for \(w.key): \(error)")
        }
    }

    // MARK: processes

    func start(_ a: Assignment) -> Workload? {
        let fm = FileManager.default
        let logPath = agent.files.logPath(job: a.job, node: node)
        let workDir = agent.files.workDir(job: a.job, node: node)
        do {
            try fm.createDirectory(atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: workDir, withIntermediateDirectories: true)
            try? fm.removeItem(atPath: agent.files.exitPath(job: a.job, node: node))
            try? fm.removeItem(atPath: agent.files.noticePath(job: a.job, node: node))
            // Append: a requeued job's earlier attempts stay in its log.
            if !fm.fileExists(atPath: logPath), !fm.createFile(atPath: logPath, contents: nil) {
                throw StratusError(.internal, "cannot create \(logPath)")
            }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            defer { try? log.close() }
            try log.seekToEnd()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            // The wrapper waits for the job even through SIGTERM (a trap, not an ignore:
            // the job still gets the signal) and records its status for a restarted agent.
            p.arguments = [
                "-c", #"trap : TERM INT HUP; /bin/sh -c "$0"; c=$?; echo $c > "$1"; exit $c"#, a.run,
                agent.files.exitPath(job: a.job, node: node),
            ]
            p.currentDirectoryURL = URL(fileURLWithPath: workDir)
            p.environment = environment(for: a)
            p.standardOutput = log
            p.standardError = log
            p.standardInput = FileHandle.nullDevice
            try p.run()
            let pid = p.processIdentifier
            let started = Self.nowMs()
            let ticks = Self.startTicks(pid) ?? 0
            let record = RunRecord(assignment: a, pid: pid, startTicks: ticks, startedAtMs: started)
            try JSONEncoder().encode(record).write(
                to: URL(fileURLWithPath: agent.files.runPath(job: a.job, node: node)), options: .atomic)
            try? String(pid).write(toFile: agent.files.pidPath(job: a.job, node: node), atomically: true, encoding: .utf8)
            let gpus = a.gpuUuids?.joined(separator: ",") ?? a.gpus.map(String.init).joined(separator: ",")
            agent.logger.info("agent \(node): started \(a.job) pid \(pid) on GPUs \(gpus)")
            return Workload(assignment: a, pid: pid, startTicks: ticks, process: p, startedAtMs: started)
        } catch {
            agent.logger.error("agent \(node): cannot start \(a.job): \(error)")
            return nil
        }
    }

    func saveRecord(_ w: Workload) {
        let record = RunRecord(assignment: w.assignment, pid: w.pid, startTicks: w.startTicks, startedAtMs: w.startedAtMs)
        let path = agent.files.runPath(job: w.assignment.job, node: node)
        try? JSONEncoder().encode(record).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// The job's environment: a minimal inherited base, the job's own variables, then
    /// what Stratus sets (which the job spec may not override).
    func environment(for a: Assignment) -> [String: String] {
        let parent = ProcessInfo.processInfo.environment
        var env: [String: String] = [:]
        for key in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR", "LD_LIBRARY_PATH"] { env[key] = parent[key] }
        if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        for (k, v) in a.envs { env[k] = v }
        // Only its GPUs: by the driver's UUID when the agent found real ones (stable across
        // renumbering), by index otherwise (declared GPUs).
        let real = a.gpuUuids.flatMap { ids in ids.allSatisfy { $0.hasPrefix("GPU-") || $0.hasPrefix("MIG-") } ? ids : nil }
        let visible = real?.joined(separator: ",") ?? a.gpus.map(String.init).joined(separator: ",")
        env["CUDA_VISIBLE_DEVICES"] = visible
        env["NVIDIA_VISIBLE_DEVICES"] = visible
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        if let ids = a.gpuUuids { env["STRATUS_GPU_UUIDS"] = ids.joined(separator: ",") }
        env["STRATUS_JOB_ID"] = a.job.rawValue
        env["STRATUS_ATTEMPT"] = String(a.attempt)
        env["STRATUS_NODE"] = a.node.rawValue
        env["STRATUS_NODE_RANK"] = String(a.rank)
        env["NODE_RANK"] = String(a.rank)
        env["NNODES"] = String(a.numNodes)
        env["GPUS_PER_NODE"] = String(a.gpus.count)
        if let share = a.gpuShareMilli {
            let memory = a.gpus.first.flatMap { g in agent.gpus.first { $0.index == g }?.memoryMib }
            env.merge(NodeAgent.shareEnvironment(milli: share, memoryMib: memory)) { _, new in new }
        }
        env["WORLD_SIZE"] = String(a.numNodes * a.gpus.count)
        env["MASTER_ADDR"] = a.masterAddress ?? agent.masterAddress
        env["MASTER_PORT"] = String(29500 + Int(Self.stableHash(a.job.rawValue) % 2000))
        env["STRATUS_PREEMPTION_NOTICE_FILE"] = agent.files.noticePath(job: a.job, node: a.node)
        if let limit = a.maxDurationSeconds {
            // When max_duration ends the run (seconds since the epoch).
            env["STRATUS_DEADLINE"] = String(Self.nowMs() / 1000 + limit)
        }
        return env
    }

    func isRunning(_ w: Workload) -> Bool {
        if let p = w.process { return p.isRunning }
        return Self.alive(w.pid, startTicks: w.startTicks)
    }

    func enforceDeadlines(_ w: Workload) {
        let now = Self.nowMs()
        if let limit = w.assignment.maxDurationSeconds, w.termSentAtMs == nil, now - w.startedAtMs >= limit * 1000 {
            w.endReason = "max_duration exceeded (\(DurationText.format(seconds: limit)))"
            signal(w, SIGTERM)
            w.termSentAtMs = now
        }
        if let killAt = w.killAtMs {
            if now >= killAt { signal(w, SIGKILL) }
        } else if let sent = w.termSentAtMs, Double(now - sent) >= agent.stopGraceSeconds * 1000 {
            signal(w, SIGKILL)
        }
    }

    /// The notice a preempted job can read: when it will be killed, and why.
    func writeNotice(_ a: Assignment, deadline: Timestamp) {
        let reason = (a.stopReason ?? "preempted").replacingOccurrences(of: "\"", with: "'")
        let text = #"{"deadline":"\#(deadline)","deadline_unix_ms":\#(deadline.milliseconds),"reason":"\#(reason)"}"# + "\n"
        try? text.write(toFile: agent.files.noticePath(job: a.job, node: a.node), atomically: true, encoding: .utf8)
    }

    func signal(_ w: Workload, _ sig: Int32) {
        if kill(-w.pid, sig) != 0 { _ = kill(w.pid, sig) }
    }

    /// How a run ended: the status its wrapper recorded (the job's own), else what the
    /// process table says; a status of 128+N means signal N.
    func exitStatus(_ a: Assignment, process: Process?, endReason: String?) -> (Int32?, String?) {
        let path = agent.files.exitPath(job: a.job, node: node)
        var status: Int32?
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            status = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        } else if let p = process, !p.isRunning {
            if p.terminationReason == .uncaughtSignal {
                return (nil, endReason ?? "killed by signal \(p.terminationStatus)")
            }
            status = p.terminationStatus
        }
        guard let status else { return (nil, endReason) }
        if status > 128, status < 128 + 65 {
            return (nil, endReason ?? "killed by signal \(status - 128)")
        }
        return (status, endReason)
    }

    /// Stops every process (SIGTERM, then SIGKILL after the grace period) and reports it,
    /// when the agent shuts down with its host process (in-process agents: `stratus up`
    /// stopping). A networked agent stopping leaves its work running (the control plane
    /// decides; the next agent adopts it).
    func shutdown() async {
        guard !workloads.isEmpty else { return }
        if agent.link.uploadsLogs {
            agent.logger.info("agent \(node): stopping; \(workloads.count) jobs keep running and will be adopted")
            return
        }
        for w in workloads.values {
            w.endReason = "stopped: node agent shut down"
            signal(w, SIGTERM)
        }
        let deadline = ContinuousClock.now + .seconds(agent.stopGraceSeconds)
        while workloads.values.contains(where: isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for w in workloads.values where isRunning(w) { signal(w, SIGKILL) }
        for (key, w) in workloads {
            w.process?.waitUntilExit()
            try? FileManager.default.removeItem(atPath: agent.files.pidPath(job: key.job, node: node))
            try? FileManager.default.removeItem(atPath: agent.files.runPath(job: key.job, node: node))
            let (code, reason) = exitStatus(w.assignment, process: w.process, endReason: w.endReason)
            // Report even though we are cancelled: usage must stop at the real end.
            try? await agent.link.reportExited(w.assignment, exitCode: code, reason: reason)
        }
    }

    static func stableHash(_ s: String) -> UInt64 {
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
