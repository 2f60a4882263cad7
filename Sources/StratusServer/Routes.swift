import Foundation
import Hummingbird
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger

/// The HTTP API. Every tenant-owned object is looked up and then checked against the
/// caller: another org's objects are reported as not found.
public struct API: Sendable {
    public let plane: ControlPlane
    public let files: JobFiles
    /// What agents are told: how often to heartbeat, and when a silent node is lost.
    public var heartbeatSeconds = Limits.defaultHeartbeatSeconds
    public var nodeLostSeconds = Limits.defaultNodeLostSeconds

    public init(plane: ControlPlane, files: JobFiles) {
        self.plane = plane
        self.files = files
    }

    public func router() -> Router<StratusContext> {
        let router = Router(context: StratusContext.self)
        router.add(middleware: ErrorMiddleware())
        router.get("/healthz") { _, _ in JSON.response(["status": "ok"]) }
        addAgentEndpoints(router.group("v1/agent").add(middleware: AgentAuthMiddleware(plane: plane)))
        let v1 = router.group("v1").add(middleware: AuthMiddleware(plane: plane))
        v1.get("whoami") { _, ctx in
            let p = try ctx.caller()
            return JSON.response(["key": p.key.rawValue, "org": p.org?.rawValue ?? "", "role": p.role.rawValue])
        }
        addTenancy(v1)
        addFleet(v1)
        addQuotas(v1)
        addReserves(v1)
        addJobs(v1)
        addReservations(v1)
        addBilling(v1)
        addNodeAdmin(v1)
        v1.get("usage") { req, ctx in try await usage(req, ctx.caller()) }
        v1.get("tiers") { _, ctx in
            _ = try ctx.caller()
            let tiers = await plane.read { $0.tiers }
            return JSON.response(Page(items: tiers.map(\.rawValue), nextCursor: nil))
        }
        return router
    }

    // MARK: tenancy

    func addTenancy(_ v1: RouterGroup<StratusContext>) {
        v1.get("orgs") { req, ctx in
            let p = try ctx.caller()
            let orgs = await plane.read { s in s.orgs.values.filter { p.canRead($0.id) }.sorted { $0.id < $1.id } }
            return JSON.response(try Pagination.page(orgs, key: \.id.rawValue, request: req, view: OrgView.init))
        }
        v1.post("orgs") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("creating an org")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let name = try body.requiredString("name")
            let display = try body.string("display_name") ?? name
            let weight = try body.int("weight").map { Int(clamping: $0) }
            try body.finish()
            try await plane.execute(.createOrg(CreateOrg(id: OrgID(name), displayName: display, weight: weight)))
            let org = await plane.read { $0.orgs[OrgID(name)]! }
            return JSON.response(OrgView(org), status: .created)
        }
        v1.patch("orgs/:org") { req, ctx in
            let p = try ctx.caller()
            let id = OrgID(try ctx.parameters.require("org"))
            try p.requireRead(id, "org", id.rawValue)
            try p.requireOperator("changing an org")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let update = UpdateOrg(
                id: id, displayName: try body.string("display_name"), weight: try body.int("weight").map { Int(clamping: $0) })
            try body.finish()
            try await plane.execute(.updateOrg(update))
            return JSON.response(OrgView(await plane.read { $0.orgs[id]! }))
        }
        v1.get("fairshare") { _, ctx in
            let p = try ctx.caller()
            let rows = await plane.fairShareStandings().filter { p.canRead($0.org) }
            return JSON.response(Page(items: rows.map(FairShareView.init), nextCursor: nil))
        }
        v1.get("orgs/:org") { _, ctx in
            let p = try ctx.caller()
            let id = OrgID(try ctx.parameters.require("org"))
            try p.requireRead(id, "org", id.rawValue)
            guard let org = await plane.read({ $0.orgs[id] }) else { throw StratusError.notFound("org", id.rawValue) }
            return JSON.response(OrgView(org))
        }

        v1.get("projects") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let items = await plane.read { s in
                s.projects.values.filter { p.canRead($0.org) && (filter == nil || $0.org == filter) }
                    .sorted { $0.id < $1.id }
            }
            return JSON.response(try Pagination.page(items, key: \.id.rawValue, request: req, view: ProjectView.init))
        }
        v1.post("projects") { req, ctx in
            let p = try ctx.caller()
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = try targetOrg(body.string("org"), p)
            let name = try body.requiredString("name")
            try body.finish()
            try p.requireAdmin(org, "project")
            let outcome = try await plane.execute(.createProject(CreateProject(org: org, name: name)))
            let project = await plane.read { $0.projects[ProjectID(outcome.id)]! }
            return JSON.response(ProjectView(project), status: .created)
        }

        v1.get("members") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let items = await plane.read { s in
                s.members.values.filter { p.canRead($0.org) && (filter == nil || $0.org == filter) }
                    .sorted { $0.createdAt == $1.createdAt ? $0.id < $1.id : $0.createdAt < $1.createdAt }
            }
            return JSON.response(try Pagination.page(items, key: \.id.rawValue, request: req, view: MemberView.init))
        }
        v1.post("members") { req, ctx in
            let p = try ctx.caller()
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = try targetOrg(body.string("org"), p)
            let email = try body.requiredString("email")
            let role = try Role.parse(try body.string("role") ?? Role.member.rawValue)
            try body.finish()
            try p.requireAdmin(org, "member")
            let outcome = try await plane.execute(.addMember(AddMember(org: org, email: email, role: role)))
            let member = await plane.read { $0.members[MemberID(outcome.id)]! }
            return JSON.response(MemberView(member), status: .created)
        }

        v1.get("keys") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let items = await plane.read { s in
                s.keys.values.filter { k in
                    let visible = k.org.map { p.canRead($0) } ?? p.isOperator
                    return visible && (filter == nil || k.org == filter)
                }.sorted { $0.createdAt == $1.createdAt ? $0.id < $1.id : $0.createdAt < $1.createdAt }
            }
            guard p.isOperator || p.role == .orgAdmin else {
                throw StratusError(.permissionDenied, "role \(p.role.rawValue) cannot list keys (org-admin required)")
            }
            return JSON.response(try Pagination.page(items, key: \.id.rawValue, request: req, view: { KeyView($0) }))
        }
        v1.post("keys") { req, ctx in
            let p = try ctx.caller()
            var body = try SpecObject(try await JSON.body(req), path: "")
            let role = try Role.parse(try body.string("role") ?? Role.member.rawValue)
            let orgName = try body.string("org")
            let name = try body.string("name") ?? ""
            try body.finish()
            let org: OrgID?
            if role == .operatorAdmin {
                try p.requireOperator("creating an operator key")
                guard orgName == nil else {
                    throw StratusError(.invalidArgument, "org: operator-admin keys belong to no org")
                }
                org = nil
            } else {
                let o = try targetOrg(orgName, p)
                try p.requireAdmin(o, "key")
                org = o
            }
            let secret = APIKeySecret.generate()
            let outcome = try await plane.execute(
                .createKey(
                    CreateKey(
                        org: org, role: role, name: name, secretHash: APIKeySecret.hash(secret),
                        hint: APIKeySecret.hint(secret))))
            let key = await plane.read { $0.keys[KeyID(outcome.id)]! }
            return JSON.response(KeyView(key, secret: secret), status: .created)
        }
        v1.post("keys/:id/revoke") { _, ctx in
            let p = try ctx.caller()
            let id = KeyID(try ctx.parameters.require("id"))
            guard let key = await plane.read({ $0.keys[id] }) else { throw StratusError.notFound("key", id.rawValue) }
            if let org = key.org {
                try p.requireRead(org, "key", id.rawValue)
                try p.requireAdmin(org, "key")
            } else {
                guard p.isOperator else { throw StratusError.notFound("key", id.rawValue) }
            }
            try await plane.execute(.revokeKey(RevokeKey(id: id)))
            let updated = await plane.read { $0.keys[id]! }
            return JSON.response(KeyView(updated))
        }
    }

    /// The org a write is for: the caller's own unless an operator names another.
    /// Operator keys act in the internal org, as they do when launching jobs.
    func targetOrg(_ name: String?, _ p: Principal) throws(StratusError) -> OrgID {
        if let name {
            let org = OrgID(name)
            try p.requireRead(org, "org", name)
            return org
        }
        return p.org ?? InternalOrg.id
    }

    func orgFilter(_ req: Request, _ p: Principal) throws(StratusError) -> OrgID? {
        guard let name = req.query("org") else { return nil }
        let org = OrgID(name)
        try p.requireRead(org, "org", name)
        return org
    }

    // MARK: fleet

    func addFleet(_ v1: RouterGroup<StratusContext>) {
        v1.get("fleet") { _, ctx in
            _ = try ctx.caller()
            return JSON.response(await plane.read { Self.fleetSummary($0) })
        }
        v1.post("fleet") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("changing the fleet")
            let spec = try FleetSpec.parse(try await JSON.body(req))
            try await plane.execute(.applyFleet(spec))
            return JSON.response(await plane.read { Self.fleetSummary($0) })
        }
        v1.get("fleet/nodes") { req, ctx in
            _ = try ctx.caller()
            let heard = await plane.read { s in s.nodeOrder.filter { s.nodes[$0]!.agent != nil } }
            var last: [NodeID: Timestamp] = [:]
            for node in heard { last[node] = await plane.lastHeard(node) }
            let seen = last
            let nodes = await plane.read { s in s.nodeOrder.map { NodeView(s, $0, lastHeard: seen[$0]) } }
            return JSON.response(try Pagination.page(nodes, key: \.name, request: req, view: { $0 }))
        }
    }

    static func fleetSummary(_ s: State) -> FleetSummary {
        var rows: [String: (nodes: Int, gpus: Int, free: Int, unavailable: Int, byTier: [String: Int], byState: [String: Int])] =
            [:]
        for id in s.nodeOrder {
            let n = s.nodes[id]!
            var row = rows[n.gpuModel] ?? (0, 0, 0, 0, [:], [:])
            row.nodes += 1
            row.gpus += n.gpuCount
            row.byState[n.lostAt != nil ? "lost" : n.state.rawValue, default: 0] += 1
            let shares = s.gpuShares[id] ?? [:]
            for (g, holder) in s.gpuHolders[id]!.enumerated() {
                if let job = holder.flatMap({ s.jobs[$0] }) {
                    row.byTier[job.spec.tier.rawValue, default: 0] += 1
                } else if let share = shares[g] {
                    row.byTier[share.tier.rawValue, default: 0] += 1
                } else if n.isSchedulable {
                    row.free += 1
                } else {
                    row.unavailable += 1
                }
            }
            rows[n.gpuModel] = row
        }
        let models = rows.keys.sorted().map { model in
            let r = rows[model]!
            return FleetSummary.ModelRow(
                gpu: model, nodes: r.nodes, gpus: r.gpus, free: r.free, allocated: r.byTier.values.reduce(0, +),
                unavailable: r.unavailable, allocatedByTier: r.byTier, nodesByState: r.byState)
        }
        // One pass over the nodes: racks, nodes and installed GPU watts per site.
        var perSite: [SiteID: (racks: Set<RackID>, nodes: Int, watts: Int64)] = [:]
        for rack in s.racks.values { perSite[rack.site, default: ([], 0, 0)].racks.insert(rack.id) }
        for node in s.nodes.values {
            guard let site = s.racks[node.rack]?.site else { continue }
            perSite[site, default: ([], 0, 0)].nodes += 1
            perSite[site, default: ([], 0, 0)].watts +=
                Int64(node.gpuCount * (GPUCatalog.model(named: node.gpuModel)?.powerWatts ?? 0))
        }
        let sites = s.sites.values.sorted { $0.id < $1.id }.map { site in
            let row = perSite[site.id] ?? ([], 0, 0)
            return FleetSummary.SiteRow(
                name: site.id.rawValue, region: site.region.rawValue,
                powerMw: DecimalText.format(site.powerBudgetKW, scale: 1000), pue: DecimalText.format(site.pueMilli, scale: 1000),
                racks: row.racks.count, nodes: row.nodes,
                gpuPowerKw: DecimalText.format(row.watts * site.pueMilli / 1000, scale: 1000))
        }
        return FleetSummary(regions: s.regions.keys.sorted().map(\.rawValue), sites: sites, models: models)
    }

    // MARK: quotas

    struct QuotaView: Encodable {
        let org: String
        let project: String?
        let gpu: String?
        let region: String?
        let limit: Int
        let used: Int
    }

    func addQuotas(_ v1: RouterGroup<StratusContext>) {
        v1.get("quotas") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let rows = await plane.read { s in
                let used = s.quotaUsage()
                return s.quotas.keys.filter { p.canRead($0.org) && (filter == nil || $0.org == filter) }.sorted().map {
                    QuotaView(
                        org: $0.org.rawValue, project: $0.project, gpu: $0.gpuModel, region: $0.region, limit: s.quotas[$0]!,
                        used: used[$0] ?? 0)
                }
            }
            return JSON.response(Page(items: rows, nextCursor: nil))
        }
        v1.post("quotas") { req, ctx in
            let p = try ctx.caller()
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = try targetOrg(body.string("org"), p)
            let project = try body.string("project")
            let gpu = try body.string("gpu").map { name throws(StratusError) in try GPUCatalog.require(name, field: "gpu").name }
            let region = try body.string("region")
            let limit = try body.int("limit")
            try body.finish()
            if project == nil {
                try p.requireOperator("setting an org quota")
            } else {
                try p.requireAdmin(org, "quota")
            }
            let scope = QuotaScope(org: org, project: project, gpuModel: gpu, region: region)
            try await plane.execute(.setQuota(SetQuota(scope: scope, limit: limit.map { Int(clamping: $0) })))
            let used = await plane.read { $0.quotaUsage()[scope] ?? 0 }
            guard let limit else { return JSON.response(["removed": scope.description]) }
            return JSON.response(
                QuotaView(org: org.rawValue, project: project, gpu: gpu, region: region, limit: Int(clamping: limit), used: used))
        }
    }

    // MARK: capacity protection

    struct ReserveView: Encodable {
        struct Point: Encodable {
            let from: String
            let gpus: Int
        }
        let gpu: String
        let site: String?
        let gpusNow: Int
        let series: [Point]
    }

    func reserveView(_ r: InternalReserve, now: Timestamp) -> ReserveView {
        ReserveView(
            gpu: r.gpuModel, site: r.site, gpusNow: r.gpus(at: now),
            series: r.series.map { .init(from: $0.from.description, gpus: $0.gpus) })
    }

    func addReserves(_ v1: RouterGroup<StratusContext>) {
        v1.get("capacity/reserves") { _, ctx in
            try ctx.caller().requireOperator("reading internal reserves")
            let now = await plane.now
            let rows = await plane.read { s in s.reserves.keys.sorted().map { s.reserves[$0]! } }
            return JSON.response(Page(items: rows.map { reserveView($0, now: now) }, nextCursor: nil))
        }
        v1.post("capacity/reserves") { req, ctx in
            try ctx.caller().requireOperator("setting internal reserves")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let gpu = try GPUCatalog.require(try body.requiredString("gpu"), field: "gpu").name
            let site = try body.string("site")
            var series: [InternalReserve.Point] = []
            if let fixed = try body.int("gpus") { series.append(.init(from: .zero, gpus: Int(clamping: fixed))) }
            for (i, item) in (try body.array("series") ?? []).enumerated() {
                var point = try SpecObject(item, path: "series[\(i)]")
                let from = try point.int("from_unix_ms") ?? 0
                guard let gpus = try point.int("gpus") else {
                    throw StratusError(.invalidArgument, "series[\(i)].gpus: required")
                }
                try point.finish()
                series.append(.init(from: Timestamp(milliseconds: from), gpus: Int(clamping: gpus)))
            }
            try body.finish()
            let reserve = InternalReserve(gpuModel: gpu, site: site, series: series)
            try await plane.execute(.setInternalReserve(reserve))
            return JSON.response(reserveView(reserve, now: await plane.now))
        }
    }

    // MARK: usage

    func usage(_ req: Request, _ p: Principal) async throws -> Response {
        let filter = try orgFilter(req, p)
        let dims: [UsageDimension]
        if let text = req.query("group_by"), !text.isEmpty {
            dims = try text.split(separator: ",").map { name throws(StratusError) -> UsageDimension in
                guard let d = UsageDimension(rawValue: String(name)) else {
                    throw StratusError(
                        .invalidArgument,
                        "group_by: '\(name)' is not one of \(UsageDimension.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return d
            }
        } else {
            dims = [.project, .gpuModel, .tier]
        }
        let projectFilter = req.query("project")
        let jobFilter: JobID? = req.query("job").map { JobID($0) }
        let records = await plane.read { s in
            s.usage.records.filter { (r: UsageRecord) -> Bool in
                guard p.canRead(r.org) else { return false }
                if let filter, r.org != filter { return false }
                if let jobFilter, r.job != jobFilter { return false }
                if let projectFilter {
                    let full = "\(r.org.rawValue)/\(projectFilter)"
                    return r.project.rawValue == projectFilter || r.project.rawValue == full
                }
                return true
            }
        }
        if let jobFilter, records.isEmpty {
            // A job of another org and a job that does not exist look the same.
            let visible = await plane.read { s in s.jobs[jobFilter].map { p.canRead($0.org) } ?? false }
            guard visible else { throw StratusError.notFound("job", jobFilter.rawValue) }
        }
        let groups = UsageReport.group(records, by: dims)
        let total = groups.reduce(Int64(0)) { $0 + $1.gpuMilliseconds }
        return JSON.response(
            UsageView(
                groupBy: dims.map(\.rawValue),
                items: groups.map(Self.usageRow),
                totalGpuMilliseconds: total, totalGpuSeconds: Double(total) / 1000))
    }

    static func usageRow(_ g: UsageGroup) -> UsageView.Row {
        let ms = g.gpuMilliseconds
        return UsageView.Row(
            key: g.key, gpuMilliseconds: ms, gpuSeconds: Double(ms) / 1000, gpuHours: Double(ms) / 3_600_000,
            records: g.records)
    }
}
