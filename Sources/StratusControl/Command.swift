import StratusCore
import StratusLedger
import StratusScheduler

/// Every change to the control plane is one of these, appended to the log before it
/// is applied. Commands carry everything they need (IDs chosen by the shell, hashes,
/// decisions): applying a command never generates randomness or reads a clock.
public enum Command: Codable, Equatable, Sendable {
    /// First start: the internal org with its default project and the operator key.
    case bootstrap(CreateKey)
    case createOrg(CreateOrg)
    case updateOrg(UpdateOrg)
    case createProject(CreateProject)
    case addMember(AddMember)
    case createKey(CreateKey)
    case revokeKey(RevokeKey)
    case applyFleet(FleetSpec)
    /// Sets (or with a nil limit, removes) one quota rule.
    case setQuota(SetQuota)
    /// Sets (or with an empty series, removes) the internal reserve of a model (and site).
    case setInternalReserve(InternalReserve)
    case submitJob(SubmitJob)
    case cancelJob(CancelJob)
    /// The tiers this deployment offers, highest priority first.
    case setTiers(SetTiers)
    /// A capacity block, accepted only if it can be guaranteed.
    case createReservation(CreateReservation)
    case cancelReservation(CancelReservation)
    /// A scheduler decision, recorded so that replay never re-runs the scheduler.
    case applyPlan(Plan)
    case allocationStarted(AllocationStarted)
    case allocationExited(AllocationExited)
    /// Agents' reports that arrive together, as one command.
    case agentReports(AgentReports)
    /// List prices (effective-dated) and negotiated org prices.
    case setPrices(SetPrices)
    /// A batch of usage events from a meter or an outside source, counted once each.
    case recordUsage(RecordUsage)
    /// Invoices every org for the months up to a period.
    case closePeriod(ClosePeriod)
    /// Money received into an org's prepaid wallet.
    case deposit(Deposit)
    /// A credit granted to an org, shown on its next invoice.
    case grantCredit(GrantCredit)
    /// Caps what an org may owe (nil removes the cap).
    case setCreditLimit(SetCreditLimit)
    /// A project's monthly budget and its alert thresholds.
    case setBudget(Budget)
    /// New spot prices from the market; spot jobs bidding less are preempted with notice.
    case setSpotPrices(SetSpotPrices)
    /// A spend commitment for a discount; shortfalls are invoiced at the end of the term.
    case createCommitment(CreateCommitment)
    /// A service level the system checks; a breach credits the tenant.
    case createSLA(CreateSLA)
    /// What capacity bought from another cloud cost (cost -> payable), or a payment of it (payable -> cash).
    case recordProviderCost(ProviderCost)
    /// A credential for node agents (its secret's hash), issued by an operator.
    case createAgentToken(CreateAgentToken)
    case revokeAgentToken(RevokeAgentToken)
    /// A node agent registered, or registered again: its GPUs, address and labels.
    case registerNode(RegisterNode)
    /// A node's agent stopped heartbeating: its work ends as `node_lost` when it was last heard from.
    case nodeLost(NodeLost)
    /// Cordon, drain or return a node to service.
    case setNodeState(SetNodeState)
    /// Forget jobs that ended before a moment, with their usage records (their money is
    /// in the ledger; the usage book keeps their totals), like Slurm's `MinJobAge`.
    case retireJobs(RetireJobs)

    public var name: String {
        switch self {
        case .bootstrap: "bootstrap"
        case .createOrg: "create_org"
        case .updateOrg: "update_org"
        case .createProject: "create_project"
        case .addMember: "add_member"
        case .createKey: "create_key"
        case .revokeKey: "revoke_key"
        case .applyFleet: "apply_fleet"
        case .setQuota: "set_quota"
        case .setInternalReserve: "set_internal_reserve"
        case .submitJob: "submit_job"
        case .setTiers: "set_tiers"
        case .createReservation: "create_reservation"
        case .cancelReservation: "cancel_reservation"
        case .cancelJob: "cancel_job"
        case .applyPlan: "apply_plan"
        case .allocationStarted: "allocation_started"
        case .allocationExited: "allocation_exited"
        case .agentReports: "agent_reports"
        case .setPrices: "set_prices"
        case .recordUsage: "record_usage"
        case .closePeriod: "close_period"
        case .deposit: "deposit"
        case .grantCredit: "grant_credit"
        case .setCreditLimit: "set_credit_limit"
        case .setBudget: "set_budget"
        case .setSpotPrices: "set_spot_prices"
        case .createCommitment: "create_commitment"
        case .createSLA: "create_sla"
        case .recordProviderCost: "record_provider_cost"
        case .createAgentToken: "create_agent_token"
        case .revokeAgentToken: "revoke_agent_token"
        case .registerNode: "register_node"
        case .nodeLost: "node_lost"
        case .setNodeState: "set_node_state"
        case .retireJobs: "retire_jobs"
        }
    }
}

public struct CreateOrg: Codable, Equatable, Sendable {
    public var id: OrgID
    public var displayName: String
    public var weight: Int?
    public init(id: OrgID, displayName: String, weight: Int? = nil) {
        self.id = id
        self.displayName = displayName
        self.weight = weight
    }
}

public struct UpdateOrg: Codable, Equatable, Sendable {
    public var id: OrgID
    public var displayName: String?
    public var weight: Int?
    public init(id: OrgID, displayName: String? = nil, weight: Int? = nil) {
        self.id = id
        self.displayName = displayName
        self.weight = weight
    }
}

public struct CreateProject: Codable, Equatable, Sendable {
    public var org: OrgID
    public var name: String
    public init(org: OrgID, name: String) {
        self.org = org
        self.name = name
    }
}

public struct AddMember: Codable, Equatable, Sendable {
    public var org: OrgID
    public var email: String
    public var role: Role
    public init(org: OrgID, email: String, role: Role) {
        self.org = org
        self.email = email
        self.role = role
    }
}

public struct CreateKey: Codable, Equatable, Sendable {
    public var org: OrgID?
    public var role: Role
    public var name: String
    public var secretHash: String
    public var hint: String
    public init(org: OrgID?, role: Role, name: String, secretHash: String, hint: String) {
        self.org = org
        self.role = role
        self.name = name
        self.secretHash = secretHash
        self.hint = hint
    }
}

public struct RevokeKey: Codable, Equatable, Sendable {
    public var id: KeyID
    public init(id: KeyID) { self.id = id }
}

public struct SubmitJob: Codable, Equatable, Sendable {
    public var org: OrgID
    public var spec: JobSpec
    public var idempotencyKey: String?
    public var by: KeyID
    public init(org: OrgID, spec: JobSpec, idempotencyKey: String?, by: KeyID) {
        self.org = org
        self.spec = spec
        self.idempotencyKey = idempotencyKey
        self.by = by
    }
}

public struct RetireJobs: Codable, Equatable, Sendable {
    /// Jobs that ended before this moment are forgotten.
    public var endedBefore: Timestamp
    public init(endedBefore: Timestamp) {
        self.endedBefore = endedBefore
    }
}

public struct CancelJob: Codable, Equatable, Sendable {
    public var job: JobID
    public var by: KeyID
    public init(job: JobID, by: KeyID) {
        self.job = job
        self.by = by
    }
}

public struct AllocationStarted: Codable, Equatable, Sendable {
    public var job: JobID
    public var node: NodeID
    /// The run of the job the report is about (networked agents say; a report about an
    /// earlier run is refused). nil: the current one.
    public var attempt: Int?
    public init(job: JobID, node: NodeID, attempt: Int? = nil) {
        self.job = job
        self.node = node
        self.attempt = attempt
    }
}

public struct AllocationExited: Codable, Equatable, Sendable {
    public var job: JobID
    public var node: NodeID
    /// nil when the process never started or was killed by a signal.
    public var exitCode: Int32?
    public var reason: String?
    public var attempt: Int?
    public init(job: JobID, node: NodeID, exitCode: Int32?, reason: String?, attempt: Int? = nil) {
        self.job = job
        self.node = node
        self.exitCode = exitCode
        self.reason = reason
        self.attempt = attempt
    }
}

/// Reports from node agents that arrive together (several nodes' at one moment, such as
/// every node of a gang ending), applied as one command: first each start, then each
/// exit, each as its own `allocation_started` or `allocation_exited` would be. The whole
/// command is refused when one report would be (its position is named), and changes
/// nothing then. At most `Limits.maxReportsPerCommand` reports, each allocation (job and
/// node) at most once in each list.
public struct AgentReports: Codable, Equatable, Sendable {
    public var started: [AllocationStarted]
    public var exited: [AllocationExited]
    public init(started: [AllocationStarted] = [], exited: [AllocationExited] = []) {
        self.started = started
        self.exited = exited
    }
    public var count: Int { started.count + exited.count }
}

public struct CreateAgentToken: Codable, Equatable, Sendable {
    public var name: String
    /// The node it is confined to; nil: any node.
    public var node: NodeID?
    public var secretHash: String
    public var hint: String
    public init(name: String, node: NodeID?, secretHash: String, hint: String) {
        self.name = name
        self.node = node
        self.secretHash = secretHash
        self.hint = hint
    }
}

public struct RevokeAgentToken: Codable, Equatable, Sendable {
    public var id: AgentTokenID
    public init(id: AgentTokenID) { self.id = id }
}

public struct RegisterNode: Codable, Equatable, Sendable {
    public var node: NodeID
    public var token: AgentTokenID
    public var address: String
    /// Where a node the fleet does not declare yet joins; a declared node must match.
    public var rack: RackID?
    public var labels: [String: String]
    /// The catalog model of its GPUs (all of a node's GPUs are one model).
    public var gpuModel: String
    public var gpus: [GPUDevice]
    public var version: String
    /// The node's CPU and memory, as its agent found them; nil: not reported.
    public var resources: NodeResources?
    public init(
        node: NodeID, token: AgentTokenID, address: String, rack: RackID?, labels: [String: String], gpuModel: String,
        gpus: [GPUDevice], version: String, resources: NodeResources? = nil
    ) {
        self.resources = resources
        self.node = node
        self.token = token
        self.address = address
        self.rack = rack
        self.labels = labels
        self.gpuModel = gpuModel
        self.gpus = gpus
        self.version = version
    }
}

public struct NodeLost: Codable, Equatable, Sendable {
    public var node: NodeID
    /// When its agent was last heard from: usage of its work stops here.
    public var lastSeen: Timestamp
    public init(node: NodeID, lastSeen: Timestamp) {
        self.node = node
        self.lastSeen = lastSeen
    }
}

public struct SetNodeState: Codable, Equatable, Sendable {
    public var node: NodeID
    /// ready (uncordon), cordoned or draining.
    public var state: NodeState
    public var reason: String?
    /// For a drain: stop running work with notice and requeue it, instead of letting it finish.
    public var requeue: Bool
    public var noticeSeconds: Int64
    public var by: KeyID
    public init(node: NodeID, state: NodeState, reason: String?, requeue: Bool, noticeSeconds: Int64, by: KeyID) {
        self.node = node
        self.state = state
        self.reason = reason
        self.requeue = requeue
        self.noticeSeconds = noticeSeconds
        self.by = by
    }
}

/// A command with its place in the log.
public struct LogEntry: Codable, Equatable, Sendable {
    public let seq: UInt64
    public let at: Timestamp
    public let command: Command
    public init(seq: UInt64, at: Timestamp, command: Command) {
        self.seq = seq
        self.at = at
        self.command = command
    }
}

/// What applying a command did.
public enum Outcome: Equatable, Sendable {
    /// The command changed state; the string names what it created or touched.
    case applied(String)
    /// An idempotent retry: nothing changes and nothing is logged.
    case unchanged(String)

    public var id: String {
        switch self {
        case .applied(let s), .unchanged(let s): s
        }
    }
}

public struct SetQuota: Codable, Equatable, Sendable {
    public var scope: QuotaScope
    /// GPUs; nil removes the rule.
    public var limit: Int?
    public init(scope: QuotaScope, limit: Int?) {
        self.scope = scope
        self.limit = limit
    }
}

public struct CreateReservation: Codable, Equatable, Sendable {
    public var org: OrgID
    public var spec: ReservationSpec
    public var by: KeyID
    /// How long before the start its GPUs are held (the deployment's preemption notice).
    public var leadSeconds: Int64
    public init(
        org: OrgID, spec: ReservationSpec, by: KeyID, leadSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds
    ) {
        self.leadSeconds = leadSeconds
        self.org = org
        self.spec = spec
        self.by = by
    }
}

public struct CancelReservation: Codable, Equatable, Sendable {
    public var reservation: ReservationID
    public var by: KeyID
    public init(reservation: ReservationID, by: KeyID) {
        self.reservation = reservation
        self.by = by
    }
}

public struct SetTiers: Codable, Equatable, Sendable {
    public var tiers: [Tier]
    public init(tiers: [Tier]) { self.tiers = tiers }
}

public struct ListPrice: Codable, Equatable, Sendable {
    public var sku: SKU
    public var point: PricePoint
    public init(sku: SKU, point: PricePoint) {
        self.sku = sku
        self.point = point
    }
}

public struct SetPrices: Codable, Equatable, Sendable {
    public var list: [ListPrice]
    public var orgPrices: [OrgPrice]
    public init(list: [ListPrice] = [], orgPrices: [OrgPrice] = []) {
        self.list = list
        self.orgPrices = orgPrices
    }
}

public struct RecordUsage: Codable, Equatable, Sendable {
    public var events: [UsageEvent]
    public init(events: [UsageEvent]) { self.events = events }

    // The log holds batches of thousands of events, so they are written compactly: one
    // line per event, tab-separated, in a fixed order (`UsageEventLines`), inside one JSON
    // string. Keyed JSON per event cost more than everything else on the ingest path.
    enum CodingKeys: String, CodingKey { case lines }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        events = try UsageEventLines.decode(try c.decode(String.self, forKey: .lines))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(UsageEventLines.encode(events), forKey: .lines)
    }
}

/// Usage events as lines: `source, id, org, project, gpu model, region, tier, gpus, start
/// ms, end ms, subject`, tab-separated; `\`, tab and newline in text are escaped; an
/// absent subject is `-` and a subject that is `-` is written `\-`.
public enum UsageEventLines {
    public static func encode(_ events: [UsageEvent]) -> String {
        var out = ""
        out.reserveCapacity(events.count * 96)
        for e in events {
            append(e.source, to: &out)
            out += "\t"
            append(e.id, to: &out)
            out += "\t"
            append(e.org.rawValue, to: &out)
            out += "\t"
            append(e.project, to: &out)
            out += "\t"
            append(e.gpuModel, to: &out)
            out += "\t"
            append(e.region, to: &out)
            out += "\t"
            out += e.tier.rawValue
            out += "\t"
            out += String(e.gpus)
            out += "\t"
            out += String(e.start.milliseconds)
            out += "\t"
            out += String(e.end.milliseconds)
            out += "\t"
            if let subject = e.subject {
                if subject == "-" { out += "\\-" } else { append(subject, to: &out) }
            } else {
                out += "-"
            }
            out += "\n"
        }
        return out
    }

    static func append(_ s: String, to out: inout String) {
        guard s.utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A }) else {
            out += s
            return
        }
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
    }

    static func unescape(_ s: Substring) -> String {
        guard s.utf8.contains(0x5C) else { return String(s) }
        var out = ""
        var escaped = false
        for ch in s.unicodeScalars {
            if escaped {
                switch ch {
                case "t": out += "\t"
                case "n": out += "\n"
                default: out.unicodeScalars.append(ch)
                }
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else {
                out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    struct Malformed: Error, CustomStringConvertible {
        let line: Int
        var description: String { "usage batch: line \(line) is malformed" }
    }

    public static func decode(_ text: String) throws -> [UsageEvent] {
        var events: [UsageEvent] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 11, let tier = Tier(rawValue: String(f[6])), let gpus = Int(f[7]), let start = Int64(f[8]),
                let end = Int64(f[9])
            else { throw Malformed(line: n) }
            events.append(
                UsageEvent(
                    source: unescape(f[0]), id: unescape(f[1]), org: OrgID(unescape(f[2])), project: unescape(f[3]),
                    gpuModel: unescape(f[4]), region: unescape(f[5]), tier: tier, gpus: gpus,
                    start: Timestamp(milliseconds: start), end: Timestamp(milliseconds: end),
                    subject: f[10] == "-" ? nil : unescape(f[10])))
        }
        return events
    }
}

public struct ClosePeriod: Codable, Equatable, Sendable {
    public var period: Period
    public init(period: Period) { self.period = period }
}

public struct Deposit: Codable, Equatable, Sendable {
    public var org: OrgID
    public var amount: Money
    public var currency: Currency
    /// The payment's reference (e.g. a bank transfer id), kept on the ledger transfer.
    public var reference: String
    public init(org: OrgID, amount: Money, currency: Currency, reference: String) {
        self.org = org
        self.amount = amount
        self.currency = currency
        self.reference = reference
    }
}

public struct GrantCredit: Codable, Equatable, Sendable {
    public var org: OrgID
    public var amount: Money
    public var description: String
    public init(org: OrgID, amount: Money, description: String) {
        self.org = org
        self.amount = amount
        self.description = description
    }
}

public struct SetCreditLimit: Codable, Equatable, Sendable {
    public var org: OrgID
    public var limit: Money?
    public init(org: OrgID, limit: Money?) {
        self.org = org
        self.limit = limit
    }
}

public struct SetSpotPrices: Codable, Equatable, Sendable {
    /// Spot SKUs of one region each.
    public var prices: [ListPrice]
    public var noticeSeconds: Int64
    public init(prices: [ListPrice], noticeSeconds: Int64) {
        self.prices = prices
        self.noticeSeconds = noticeSeconds
    }
}

public struct CreateCommitment: Codable, Equatable, Sendable {
    public var org: OrgID
    public var amount: Money
    public var start: Period
    public var months: Int
    public var discountBasisPoints: Int
    public init(org: OrgID, amount: Money, start: Period, months: Int, discountBasisPoints: Int) {
        self.org = org
        self.amount = amount
        self.start = start
        self.months = months
        self.discountBasisPoints = discountBasisPoints
    }
}

/// What an SLA promises.
public enum SLAObjective: Codable, Equatable, Sendable {
    /// An on-demand job starts within this many seconds of its submission.
    case onDemandStartSeconds(Int64)
    /// A preempted spot job gets at least this many seconds of notice.
    case spotNoticeSeconds(Int64)
    /// Each capacity block delivers at least this share (in thousandths: 995 is 99.5%)
    /// of its reserved GPU-hours each month; work interrupted by a lost node is not
    /// delivered from the loss until it runs again.
    case reservedAvailabilityPermille(Int64)

    public var description: String {
        switch self {
        case .onDemandStartSeconds(let s): "on-demand jobs start within \(s) s"
        case .spotNoticeSeconds(let s): "spot preemption notice of at least \(s) s"
        case .reservedAvailabilityPermille(let p): "capacity blocks deliver \(Self.percent(p)) of reserved GPU-hours per month"
        }
    }

    /// 995 as "99.5%".
    public static func percent(_ permille: Int64) -> String {
        permille % 10 == 0 ? "\(permille / 10)%" : "\(permille / 10).\(permille % 10)%"
    }
}

public struct SLA: Codable, Equatable, Sendable {
    public var id: String
    /// nil: every tenant.
    public var org: OrgID?
    public var objective: SLAObjective
    /// Share of the affected work's charges credited on a breach.
    public var creditPercent: Int
    public var createdAt: Timestamp
}

public struct CreateSLA: Codable, Equatable, Sendable {
    public var org: OrgID?
    public var objective: SLAObjective
    public var creditPercent: Int
    public init(org: OrgID?, objective: SLAObjective, creditPercent: Int) {
        self.org = org
        self.objective = objective
        self.creditPercent = creditPercent
    }
}

public struct ProviderCost: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// An invoice from the provider: cost/PROVIDER -> payable/PROVIDER.
        case cost
        /// Money paid to the provider: payable/PROVIDER -> cash.
        case payment
    }
    public var provider: String
    public var kind: Kind
    public var amount: Money
    public var currency: Currency
    public var reference: String
    public init(provider: String, kind: Kind, amount: Money, currency: Currency, reference: String) {
        self.provider = provider
        self.kind = kind
        self.amount = amount
        self.currency = currency
        self.reference = reference
    }
}
