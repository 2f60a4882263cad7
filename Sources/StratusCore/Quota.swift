/// What a quota limits: GPUs held at once by an org, or by one of its projects,
/// optionally only of one GPU model and/or in one region.
public struct QuotaScope: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let org: OrgID
    /// Project name within the org; nil for the org as a whole.
    public let project: String?
    public let gpuModel: String?
    public let region: String?

    public init(org: OrgID, project: String? = nil, gpuModel: String? = nil, region: String? = nil) {
        self.org = org
        self.project = project
        self.gpuModel = gpuModel
        self.region = region
    }

    public static func < (a: Self, b: Self) -> Bool { a.sortKey < b.sortKey }

    var sortKey: String { "\(org)|\(project ?? "")|\(gpuModel ?? "")|\(region ?? "")" }

    /// "project acme/research H100 in us-east", "org acme GPUs".
    public var description: String {
        let who = project.map { "project \(org)/\($0)" } ?? "org \(org)"
        return "\(who) \(gpuModel ?? "GPUs")\(region.map { " in \($0)" } ?? "")"
    }

    /// The scopes a placement of (org, project, model, region) counts against: every
    /// combination of project-or-org, model-or-all and region-or-all.
    public static func all(org: OrgID, project: String, gpuModel: String, region: String) -> [QuotaScope] {
        var out: [QuotaScope] = []
        for p in [nil, project] {
            for m in [nil, gpuModel] {
                for r in [nil, region] { out.append(QuotaScope(org: org, project: p, gpuModel: m, region: r)) }
            }
        }
        return out
    }
}
