import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import StratusAgent
import StratusCore
import StratusServer

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's settings: flags first, then environment (`STRATUS_SERVER`,
/// `STRATUS_AGENT_TOKEN_FILE`, `STRATUS_AGENT_TOKEN`, `STRATUS_NODE`), then the config file.
struct AgentConfig {
    var server: String?
    var tokenFile: String?
    var node: String?
    var address: String?
    var rack: String?
    var labels: [String: String] = [:]
    var workDir: String?
    var gpuModel: String?
    /// Declared GPUs, for machines without an NVIDIA driver (demos, tests).
    var declaredGPUs: Int?
    var nvidiaSMI: String?
    var sampleSeconds: Int64?

    /// ```yaml
    /// server: http://10.0.0.1:8080
    /// token_file: /etc/stratus/agent.token
    /// node: gpu-017            # default: the host name
    /// address: 10.0.1.17       # how other nodes reach this one (MASTER_ADDR); default: the host name
    /// rack: rack-a             # for a node the fleet does not declare yet
    /// labels: {pool: training}
    /// work_dir: /var/lib/stratus-agent
    /// nvidia_smi: nvidia-smi   # "none" to ignore the driver
    /// sample_interval: 10s
    /// gpus: {model: H100, count: 8}   # only without nvidia-smi
    /// ```
    static func parse(_ value: SpecValue) throws(StratusError) -> AgentConfig {
        var o = try SpecObject(value, path: "")
        var c = AgentConfig()
        c.server = try o.string("server")
        c.tokenFile = try o.string("token_file")
        c.node = try o.string("node")
        c.address = try o.string("address")
        c.rack = try o.string("rack")
        c.labels = try o.stringMap("labels") ?? [:]
        c.workDir = try o.string("work_dir")
        c.nvidiaSMI = try o.string("nvidia_smi")
        if let text = try o.string("sample_interval") {
            c.sampleSeconds = try DurationText.parseSeconds(text, field: "sample_interval")
        }
        if let g = o.value("gpus") {
            var gpus = try SpecObject(g, path: "gpus")
            c.gpuModel = try GPUCatalog.require(try gpus.requiredString("model"), field: "gpus.model").name
            c.declaredGPUs = Int(clamping: try gpus.int("count") ?? 8)
            try gpus.finish()
        }
        if let model = try o.string("gpu_model") { c.gpuModel = try GPUCatalog.require(model, field: "gpu_model").name }
        try o.finish()
        return c
    }
}

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the node agent: register this machine's GPUs, run its assignments, report usage.",
        discussion: """
            Needs the server URL and an agent token (stratus nodes token create). GPUs come from
            nvidia-smi when the NVIDIA driver is present, else from --gpus (e.g. H100:8).
            Running jobs survive an agent restart: the next agent adopts them.
            """)

    @Option(name: .long, help: "Control plane URL (or $STRATUS_SERVER, or server: in the config).")
    var server: String?
    @Option(
        name: .long, help: "File holding the agent token (or $STRATUS_AGENT_TOKEN_FILE; $STRATUS_AGENT_TOKEN holds it directly).")
    var tokenFile: String?
    @Option(name: .long, help: "YAML config file (flags and environment override it).")
    var config: String?
    @Option(name: .long, help: "Node name (default: $STRATUS_NODE or the host name).")
    var node: String?
    @Option(name: .long, help: "Address other nodes reach this one at, for MASTER_ADDR (default: the host name).")
    var address: String?
    @Option(name: .long, help: "Rack a node the fleet does not declare yet joins.")
    var rack: String?
    @Option(name: .long, help: "Label for the node, key=value (repeatable).")
    var label: [String] = []
    @Option(name: .long, help: "Directory for job working directories, logs and run records.")
    var workDir: String?
    @Option(name: .long, help: "GPUs to declare when there is no NVIDIA driver, MODEL:COUNT (e.g. H100:8).")
    var gpus: String?
    @Option(name: .long, help: "nvidia-smi to use ('none' ignores the driver).")
    var nvidiaSmi: String?
    @Option(name: .long, help: "How often GPU utilization is sampled (e.g. 10s).")
    var sampleInterval: String?

    func run() async throws {
        var logger = Logger(label: "stratus-agent")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        do {
            try await start(logger: logger)
        } catch let e as StratusError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        } catch let e as CLIError {
            FileHandle.standardError.write(Data("error: \(e)\n".utf8))
            throw ExitCode(1)
        }
    }

    func start(logger: Logger) async throws {
        let env = ProcessInfo.processInfo.environment
        var c = AgentConfig()
        if let config { c = try AgentConfig.parse(try readSpecFile(config)) }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init)?.lowercased() ?? "node"
        guard
            let serverURL = (server ?? env["STRATUS_SERVER"].flatMap { $0.isEmpty ? nil : $0 } ?? c.server)
                .map({ $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
        else { throw CLIError("give the control plane URL: --server URL, $STRATUS_SERVER or server: in --config") }
        let token: String
        if let file = tokenFile ?? env["STRATUS_AGENT_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) ?? c.tokenFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw CLIError("\(file): cannot read file")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let direct = env["STRATUS_AGENT_TOKEN"], !direct.isEmpty {
            token = direct
        } else {
            throw CLIError("give an agent token: --token-file F, $STRATUS_AGENT_TOKEN_FILE or $STRATUS_AGENT_TOKEN")
        }
        guard token.hasPrefix(AgentTokenSecret.prefix) else {
            throw CLIError(
                "that is not an agent token (they start with \(AgentTokenSecret.prefix); create one with stratus nodes token create)"
            )
        }
        let nodeName = node ?? env["STRATUS_NODE"].flatMap { $0.isEmpty ? nil : $0 } ?? c.node ?? host
        try Name.validate(nodeName, field: "--node")
        var labels = c.labels
        for item in label {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw CLIError("--label: '\(item)' is not key=value") }
            labels[parts[0]] = parts[1]
        }
        let workDir = workDir ?? c.workDir ?? "\(NSHomeDirectory())/.stratus-agent"
        let absolute = URL(fileURLWithPath: workDir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            .standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: absolute, withIntermediateDirectories: true)

        // GPUs: the driver's, or declared ones.
        let smiPath = nvidiaSmi ?? c.nvidiaSMI ?? "nvidia-smi"
        let smi = smiPath == "none" ? nil : NvidiaSMI(path: smiPath)
        var model = c.gpuModel
        var devices: [GPUDevice] = []
        if let found = smi?.discover(), !found.isEmpty {
            devices = found
            for d in found {
                logger.info(
                    "GPU \(d.index): \(d.name) \(d.uuid) \(d.memoryMib) MiB, power limit \(d.powerLimitWatts.map { "\($0) W" } ?? "n/a")"
                )
            }
        } else if let declared = gpus ?? c.declaredGPUs.map({ "\(c.gpuModel ?? "H100"):\($0)" }) {
            let parts = declared.split(separator: ":").map(String.init)
            guard parts.count == 2, let count = Int(parts[1]), count >= 1, count <= Limits.maxGPUsPerNode else {
                throw CLIError("--gpus: '\(declared)' is not MODEL:COUNT (1 to \(Limits.maxGPUsPerNode))")
            }
            let m = try GPUCatalog.require(parts[0], field: "--gpus")
            model = m.name
            devices = (0..<count).map {
                GPUDevice(
                    index: $0, uuid: "declared-\(nodeName)-\($0)", name: m.name, memoryMib: Int64(m.memoryGiB) * 1024,
                    powerLimitWatts: Int64(m.powerWatts))
            }
            logger.info("no NVIDIA driver found; declared \(count) x \(m.name)")
        } else {
            throw CLIError("no GPUs: nvidia-smi found none; declare them with --gpus MODEL:COUNT (or gpus: in --config)")
        }

        let link = HTTPAgentLink(
            server: serverURL, token: token, address: address ?? c.address ?? host, rack: rack ?? c.rack, labels: labels,
            gpuModel: model, resources: HTTPAgentLink.machineResources(), logger: logger)
        var agent = NodeAgent(node: NodeID(nodeName), link: link, files: JobFiles(root: absolute), logger: logger)
        agent.gpus = devices
        agent.smi = devices.first?.uuid.hasPrefix("declared-") == true ? nil : smi
        if let s = try sampleInterval.map({ text throws(StratusError) in
            try DurationText.parseSeconds(text, field: "--sample-interval")
        })
            ?? c.sampleSeconds
        {
            agent.sampleInterval = .seconds(max(1, s))
        }
        // Register first, so a bad token or a mismatched node fails at once with the reason.
        let registered = try await link.registerNow(node: NodeID(nodeName), gpus: devices)
        agent.heartbeatInterval = .seconds(registered.heartbeat)
        print(
            "Stratus agent for node \(nodeName): \(devices.count) x \(registered.model), server \(serverURL), work in \(absolute)"
        )
        fflush(nil)

        let task = Task { await agent.run() }
        // SIGTERM / SIGINT stop the agent; its jobs keep running for the next agent to adopt.
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                logger.info("signal \(sig): stopping the agent; running jobs keep running and the next agent adopts them")
                task.cancel()
            }
            source.resume()
            sources.append(source)
        }
        await task.value
        sources.forEach { $0.cancel() }
    }
}

/// The agent endpoints over HTTP, with the agent token.
struct HTTPAgentLink: AgentLink {
    let server: String
    let token: String
    let address: String
    let rack: String?
    let labels: [String: String]
    let gpuModel: String?
    /// This machine's CPUs and memory, reported at registration.
    let resources: NodeResources
    let logger: Logger

    var uploadsLogs: Bool { true }

    /// The CPUs and memory the operating system reports.
    static func machineResources() -> NodeResources {
        NodeResources(
            cpuMilli: max(1, ProcessInfo.processInfo.activeProcessorCount) * 1000,
            memoryMiB: max(1, Int(ProcessInfo.processInfo.physicalMemory >> 20)))
    }

    struct Registered {
        let model: String
        let heartbeat: Int64
        let kill: [RunKey]
    }

    func registerNow(node: NodeID, gpus: [GPUDevice], running: [RunKey] = []) async throws -> Registered {
        var body: [String: Any] = [
            "node": node.rawValue, "address": address, "labels": labels, "version": StratusVersion.current,
            "gpus": gpus.map { g -> [String: Any] in
                var d: [String: Any] = ["index": g.index, "uuid": g.uuid, "name": g.name, "memory_mib": g.memoryMib]
                if let w = g.powerLimitWatts { d["power_limit_w"] = w }
                return d
            },
            "running": running.map { ["job": $0.job.rawValue, "attempt": $0.attempt] },
        ]
        if let rack { body["rack"] = rack }
        if let gpuModel { body["gpu_model"] = gpuModel }
        body["cpus"] = DecimalText.format(Int64(resources.cpuMilli), scale: 1000)
        body["memory"] = "\(resources.memoryMiB)Mi"
        let reply = try await call(.POST, "/v1/agent/register", json: body)
        return Registered(
            model: reply["gpu_model"] as? String ?? "", heartbeat: (reply["heartbeat_s"] as? Int).map(Int64.init) ?? 10,
            kill: Self.runs(reply["kill"]))
    }

    func register(node: NodeID, gpus: [GPUDevice], running: [RunKey]) async throws -> [RunKey] {
        try await registerNow(node: node, gpus: gpus, running: running).kill
    }

    func heartbeat(node: NodeID, running: [RunKey], health: String) async throws -> HeartbeatAnswer {
        let reply = try await call(
            .POST, "/v1/agent/heartbeat",
            json: [
                "node": node.rawValue, "health": health,
                "running": running.map { ["job": $0.job.rawValue, "attempt": $0.attempt] },
            ])
        return HeartbeatAnswer(registered: reply["registered"] as? Bool ?? false, kill: Self.runs(reply["kill"]))
    }

    func assignments(node: NodeID, known: String?, wait: Duration) async throws -> AssignmentUpdate {
        var path = "/v1/agent/assignments?node=\(percentEncode(node.rawValue))&wait=\(wait.components.seconds)"
        if let known { path += "&known=\(percentEncode(known))" }
        let data = try await send(.GET, path, body: nil, timeout: .seconds(wait.components.seconds + 30))
        struct Reply: Decodable {
            let digest: String
            let assignments: [Assignment]
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let reply = try decoder.decode(Reply.self, from: data)
        return AssignmentUpdate(digest: reply.digest, items: reply.assignments)
    }

    func reportStarted(_ a: Assignment) async throws {
        _ = try await call(
            .POST, "/v1/agent/jobs/\(percentEncode(a.job.rawValue))/started",
            json: ["node": a.node.rawValue, "attempt": a.attempt])
    }

    func reportExited(_ a: Assignment, exitCode: Int32?, reason: String?) async throws {
        var body: [String: Any] = ["node": a.node.rawValue, "attempt": a.attempt]
        if let exitCode { body["exit_code"] = Int(exitCode) }
        if let reason { body["reason"] = reason }
        _ = try await call(.POST, "/v1/agent/jobs/\(percentEncode(a.job.rawValue))/exited", json: body)
    }

    func uploadLog(_ run: RunKey, node: NodeID, offset: Int, _ data: [UInt8]) async throws -> Int {
        let path =
            "/v1/agent/jobs/\(percentEncode(run.job.rawValue))/logs?node=\(percentEncode(node.rawValue))&attempt=\(run.attempt)&offset=\(offset)"
        let reply = try await send(.POST, path, body: data, timeout: .seconds(60))
        let obj = try JSONSerialization.jsonObject(with: reply) as? [String: Any] ?? [:]
        guard let size = obj["size"] as? Int else { throw CLIError("log upload: no size in the answer") }
        return size
    }

    func postSamples(_ samples: [GPUSample], attempts: [JobID: Int]) async throws {
        guard let node = samples.first?.node else { return }
        let items = samples.map { s -> [String: Any] in
            var d: [String: Any] = [
                "job": s.job.rawValue, "attempt": attempts[s.job] ?? 0, "gpu_index": s.gpuIndex, "gpu_uuid": s.gpuUuid,
                "at_ms": s.at.milliseconds, "utilization_pct": s.utilizationPct, "memory_used_mib": s.memoryUsedMib,
                "memory_total_mib": s.memoryTotalMib,
            ]
            if let w = s.powerWatts { d["power_w"] = w }
            return d
        }
        _ = try await call(.POST, "/v1/agent/samples", json: ["node": node.rawValue, "samples": items])
    }

    static func runs(_ value: Any?) -> [RunKey] {
        (value as? [[String: Any]] ?? []).compactMap { r in
            guard let job = r["job"] as? String else { return nil }
            return RunKey(job: JobID(job), attempt: r["attempt"] as? Int ?? 0)
        }
    }

    func call(_ method: HTTPMethod, _ path: String, json: [String: Any]) async throws -> [String: Any] {
        let data = try await send(
            method, path, body: Array(try JSONSerialization.data(withJSONObject: json)), timeout: .seconds(30))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    /// One request; a 4xx answer is a refusal (`AgentRefusal`), anything else that fails
    /// is worth retrying.
    func send(_ method: HTTPMethod, _ path: String, body: [UInt8]?, timeout: TimeAmount) async throws -> Data {
        var request = HTTPClientRequest(url: server + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let buffer = try await response.body.collect(upTo: 16 << 20)
        let data = Data(buffer.readableBytesView)
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return data }
        var message = String(decoding: data, as: UTF8.self)
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let err = obj["error"] as? [String: Any] {
            message = err["message"] as? String ?? message
        }
        if (400..<500).contains(status) { throw AgentRefusal("\(message) (HTTP \(status))") }
        throw CLIError("\(method) \(path): HTTP \(status): \(message)")
    }
}
