import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusStoreSQLite
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// `stratus up`: the whole cloud in one process on an embedded database.
public struct Server {
    public struct Options: Sendable {
        public var dataDirectory: String
        public var host: String
        public var port: Int
        public var scheduleInterval: Duration = .milliseconds(250)
        /// Notice preempted spot work gets before it is killed.
        public var preemptionNoticeSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds
        /// How borrowed project quota is taken back: by preempting the borrowers, or waiting.
        public var quotaReclaim: TieredScheduler.QuotaReclaim = .preempt
        /// The tiers to offer, highest first; nil keeps what the data directory has.
        public var tiers: [Tier]?
        /// How long after a month ends its invoices are issued.
        public var invoiceGraceSeconds: Int64 = Limits.defaultInvoiceGraceSeconds
        /// What networked agents are told: heartbeat interval, and silence before a node is lost.
        public var heartbeatSeconds: Int64 = Limits.defaultHeartbeatSeconds
        public var nodeLostSeconds: Int64 = Limits.defaultNodeLostSeconds
        /// How long a job is kept after it ended (then `retire_jobs` forgets it).
        public var retainJobsSeconds: Int64 = Limits.defaultJobRetentionSeconds
        /// Load the demo fleet (8 nodes of 8 H100, run by in-process agents) into a new data directory.
        public var demoFleet = true

        public init(dataDirectory: String, host: String, port: Int) {
            self.dataDirectory = dataDirectory
            self.host = host
            self.port = port
        }
    }

    public static func run(_ options: Options, logger: Logger) async throws {
        // Absolute, so that paths handed to jobs (which run in their own directories) work.
        let fm = FileManager.default
        let given = options.dataDirectory
        let data = URL(fileURLWithPath: given, relativeTo: URL(fileURLWithPath: fm.currentDirectoryPath, isDirectory: true))
            .standardizedFileURL.path
        try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
        let lock = try DataLock(path: "\(data)/lock")
        defer { lock.release() }

        let store = try SQLiteStore(path: "\(data)/stratus.db")
        let plane = try ControlPlane(
            store: store,
            scheduler: TieredScheduler(
                preemptionNoticeSeconds: options.preemptionNoticeSeconds, quotaReclaim: options.quotaReclaim),
            clock: { WallClock.now() })
        let state = await plane.state
        if !state.isBootstrapped {
            try await bootstrap(plane, data: data, demoFleet: options.demoFleet)
        } else {
            logger.info(
                "resumed from \(data)/stratus.db at log entry \(state.seq): \(state.jobs.count) jobs, \(state.nodes.count) nodes")
        }

        if await plane.state.billing.prices.list.isEmpty {
            let now = await plane.now
            let defaults = PriceBook.defaultPoints(at: now).map { ListPrice(sku: $0.0, point: $0.1) }
            try await plane.execute(.setPrices(SetPrices(list: defaults)))
            logger.info("prices: the default list (stratus prices shows it; stratus prices set changes it)")
        }
        if let tiers = options.tiers, await plane.state.tiers != tiers {
            try await plane.execute(.setTiers(SetTiers(tiers: tiers)))
            logger.info("tiers: \(tiers.map(\.rawValue).joined(separator: " > "))")
        }
        let files = JobFiles(root: data)
        var api = API(plane: plane, files: files)
        api.heartbeatSeconds = options.heartbeatSeconds
        api.nodeLostSeconds = options.nodeLostSeconds
        let app = Application(
            router: api.router(),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "stratus"),
            services: [
                SchedulerService(plane: plane, interval: options.scheduleInterval, logger: logger),
                LocalAgentsService(plane: plane, files: files, logger: logger),
                BillingService(plane: plane, graceSeconds: options.invoiceGraceSeconds, logger: logger),
                NodeMonitorService(plane: plane, lostAfterSeconds: options.nodeLostSeconds, logger: logger),
                RetentionService(plane: plane, retainSeconds: options.retainJobsSeconds, logger: logger),
            ],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? options.port
                print("Stratus is up: http://\(options.host):\(port)  (data: \(data); Ctrl-C stops)")
                fflush(nil)
            },
            logger: logger)
        try await app.runService(gracefulShutdownSignals: [UnixSignal.sigterm, .sigint])
        try await plane.snapshot()
        let final = await plane.state
        logger.info("stopped cleanly at log entry \(final.seq)")
    }

    /// First start: the internal org, its default project, the operator key and the demo fleet.
    static func bootstrap(_ plane: ControlPlane, data: String, demoFleet: Bool) async throws {
        let secret = APIKeySecret.generate()
        try await plane.execute(
            .bootstrap(
                CreateKey(
                    org: nil, role: .operatorAdmin, name: "operator (created by stratus up)",
                    secretHash: APIKeySecret.hash(secret), hint: APIKeySecret.hint(secret))))
        if demoFleet {
            var demo = FleetSpec.demo
            for i in demo.nodes.indices { demo.nodes[i].labels[LocalAgentsService.label] = "true" }
            try await plane.execute(.applyFleet(demo))
        }
        let keyPath = "\(data)/admin.key"
        guard
            FileManager.default.createFile(
                atPath: keyPath, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw StratusError(.internal, "cannot write \(keyPath)") }
        print(
            """
            New Stratus control plane in \(data)\(demoFleet ? " with a demo fleet (8 nodes x 8 H100)" : " with an empty fleet").
            Operator admin key (shown once, also saved to \(keyPath), mode 0600):

                \(secret)

            """)
        fflush(nil)
    }
}

/// One `stratus up` per data directory, enforced with an advisory lock.
final class DataLock: Sendable {
    let fd: Int32

    init(path: String) throws {
        fd = open(path, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw StratusError(.internal, "cannot open \(path)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StratusError(.failedPrecondition, "another stratus up is using \((path as NSString).deletingLastPathComponent)")
        }
    }

    func release() { close(fd) }
}
