/// Inventory: regions hold sites, sites hold racks (each rack is one NVLink/topology
/// domain), racks hold nodes, nodes hold GPUs of one model.
public struct Region: Codable, Equatable, Sendable {
    public let id: RegionID
    public init(id: RegionID) { self.id = id }
}

public struct Site: Codable, Equatable, Sendable {
    public init(id: SiteID, region: RegionID, powerBudgetKW: Int64, pueMilli: Int64) {
        self.id = id
        self.region = region
        self.powerBudgetKW = powerBudgetKW
        self.pueMilli = pueMilli
    }

    public let id: SiteID
    public var region: RegionID
    /// Power budget of the site in kilowatts (the spec says MW with up to 3 decimals).
    public var powerBudgetKW: Int64
    /// Power usage effectiveness in thousandths (1.25 is 1250).
    public var pueMilli: Int64
}

public struct Rack: Codable, Equatable, Sendable {
    public init(id: RackID, site: SiteID, block: String? = nil) {
        self.id = id
        self.site = site
        self.block = block
    }

    public let id: RackID
    public var site: SiteID
    /// The block (a group of racks on one network spine) it belongs to, if any.
    public var block: String?
}

/// What the operator wants of a node. Whether it is alive is separate (`Node.lostAt`).
public enum NodeState: String, Codable, Sendable, CaseIterable {
    case ready
    /// No new work; running work goes on.
    case cordoned
    /// No new work; running work finishes (or, when drained with `requeue`, is stopped
    /// with notice and requeued). A draining node with no work left is drained.
    case draining
    case down
}

public struct Node: Codable, Equatable, Sendable {
    public init(
        id: NodeID, rack: RackID, gpuModel: String, gpuCount: Int, labels: [String: String], state: NodeState,
        agent: NodeAgentInfo? = nil
    ) {
        self.id = id
        self.rack = rack
        self.gpuModel = gpuModel
        self.gpuCount = gpuCount
        self.labels = labels
        self.state = state
        self.agent = agent
    }

    public let id: NodeID
    public var rack: RackID
    public var gpuModel: String
    public var gpuCount: Int
    public var labels: [String: String]
    public var state: NodeState
    /// Why the operator set the state (cordon, drain), if they said.
    public var stateReason: String?
    /// Set once an agent has registered the node over the network; such a node is lost
    /// when its heartbeats stop.
    public var agent: NodeAgentInfo?
    /// CPU and memory jobs may ask for here; nil: not declared, so not limited.
    public var resources: NodeResources?
    /// When its agent was last heard from, if the node was declared lost; cleared when the
    /// agent registers again.
    public var lostAt: Timestamp?

    /// Whether the scheduler may place new work here.
    public var isSchedulable: Bool { state == .ready && lostAt == nil }
}

/// A declarative fleet file: `stratus fleet apply` adds what is new and updates what
/// changed; it never removes (removal needs draining, a later capability).
public struct FleetSpec: Codable, Equatable, Sendable {
    public struct SiteSpec: Codable, Equatable, Sendable {
        public init(id: SiteID, region: RegionID, powerBudgetKW: Int64, pueMilli: Int64) {
            self.id = id
            self.region = region
            self.powerBudgetKW = powerBudgetKW
            self.pueMilli = pueMilli
        }

        public var id: SiteID
        public var region: RegionID
        public var powerBudgetKW: Int64
        public var pueMilli: Int64
    }
    public struct RackSpec: Codable, Equatable, Sendable {
        public init(id: RackID, site: SiteID, block: String? = nil) {
            self.id = id
            self.site = site
            self.block = block
        }

        public var id: RackID
        public var site: SiteID
        public var block: String?
    }
    public struct NodeSpec: Codable, Equatable, Sendable {
        public init(id: NodeID, rack: RackID, gpuModel: String, gpuCount: Int, labels: [String: String]) {
            self.id = id
            self.rack = rack
            self.gpuModel = gpuModel
            self.gpuCount = gpuCount
            self.labels = labels
        }

        public var id: NodeID
        public var rack: RackID
        public var gpuModel: String
        public var gpuCount: Int
        public var labels: [String: String]
        /// CPU and memory (`cpus`, `memory`); nil: not declared, so not limited.
        public var resources: NodeResources?
    }

    public var regions: [RegionID] = []
    public var sites: [SiteSpec] = []
    public var racks: [RackSpec] = []
    public var nodes: [NodeSpec] = []

    public init() {}

    /// Parses the nested fleet document:
    /// ```yaml
    /// regions:
    ///   - name: us-east
    ///     sites:
    ///       - name: dc1
    ///         power_mw: 30
    ///         pue: 1.25
    ///         racks:
    ///           - name: rack-a
    ///             block: b1        # optional: racks on one spine
    ///             nodes:
    ///               - {name: node-a, gpu: H100, gpus: 8, count: 4, cpus: 192, memory: 2048Gi}
    /// ```
    public static func parse(_ value: SpecValue) throws(StratusError) -> FleetSpec {
        var spec = FleetSpec()
        var root = try SpecObject(value, path: "")
        let regions = try root.array("regions") ?? []
        try root.finish()
        for (ri, regionValue) in regions.enumerated() {
            var region = try SpecObject(regionValue, path: "regions[\(ri)]")
            let regionID = RegionID(try region.requiredString("name"))
            try Name.validate(regionID.rawValue, field: region.field("name"))
            spec.regions.append(regionID)
            for (si, siteValue) in (try region.array("sites") ?? []).enumerated() {
                var site = try SpecObject(siteValue, path: "\(region.path).sites[\(si)]")
                let siteID = SiteID(try site.requiredString("name"))
                try Name.validate(siteID.rawValue, field: site.field("name"))
                guard let powerKW = try site.decimal("power_mw", scale: 1000) else {
                    throw StratusError(.invalidArgument, "\(site.field("power_mw")): required (site power budget in MW)")
                }
                guard powerKW > 0 else {
                    throw StratusError(.invalidArgument, "\(site.field("power_mw")): must be positive")
                }
                let pue = try site.decimal("pue", scale: 1000) ?? 1250
                guard pue >= 1000, pue <= 3000 else {
                    throw StratusError(.invalidArgument, "\(site.field("pue")): must be between 1.0 and 3.0")
                }
                spec.sites.append(SiteSpec(id: siteID, region: regionID, powerBudgetKW: powerKW, pueMilli: pue))
                for (ki, rackValue) in (try site.array("racks") ?? []).enumerated() {
                    var rack = try SpecObject(rackValue, path: "\(site.path).racks[\(ki)]")
                    let rackID = RackID(try rack.requiredString("name"))
                    try Name.validate(rackID.rawValue, field: rack.field("name"))
                    let block = try rack.string("block")
                    if let block { try Name.validate(block, field: rack.field("block")) }
                    spec.racks.append(RackSpec(id: rackID, site: siteID, block: block))
                    for (ni, nodeValue) in (try rack.array("nodes") ?? []).enumerated() {
                        var node = try SpecObject(nodeValue, path: "\(rack.path).nodes[\(ni)]")
                        let name = try node.requiredString("name")
                        try Name.validate(name, field: node.field("name"))
                        let model = try GPUCatalog.require(try node.requiredString("gpu"), field: node.field("gpu"))
                        let gpus = try node.int("gpus") ?? Int64(model.nvlinkDomainSize)
                        guard gpus >= 1, gpus <= Int64(Limits.maxGPUsPerNode) else {
                            throw StratusError(
                                .invalidArgument, "\(node.field("gpus")): must be between 1 and \(Limits.maxGPUsPerNode)")
                        }
                        let count = try node.int("count")
                        let labels = try node.stringMap("labels") ?? [:]
                        let declared = try NodeResources.parse(&node, limit: Limits.maxNodeResources)
                        let resources = declared.isZero ? nil : declared
                        try node.finish()
                        if let count {
                            guard count >= 1, count <= Int64(Limits.maxFleetObjects) else {
                                throw StratusError(
                                    .invalidArgument, "\(node.field("count")): must be between 1 and \(Limits.maxFleetObjects)")
                            }
                            for i in 1...count {
                                var n = NodeSpec(
                                    id: NodeID("\(name)-\(i)"), rack: rackID, gpuModel: model.name, gpuCount: Int(gpus),
                                    labels: labels)
                                n.resources = resources
                                spec.nodes.append(n)
                            }
                        } else {
                            var n = NodeSpec(
                                id: NodeID(name), rack: rackID, gpuModel: model.name, gpuCount: Int(gpus), labels: labels)
                            n.resources = resources
                            spec.nodes.append(n)
                        }
                        guard spec.nodes.count + spec.racks.count + spec.sites.count <= Limits.maxFleetObjects else {
                            throw StratusError(.limitExceeded, "fleet: more than \(Limits.maxFleetObjects) objects")
                        }
                    }
                    try rack.finish()
                }
                try site.finish()
            }
            try region.finish()
        }
        try spec.checkUnique()
        return spec
    }

    public func checkUnique() throws(StratusError) {
        func firstDuplicate<T: Hashable>(_ items: [T]) -> T? {
            var seen = Set<T>()
            for item in items where !seen.insert(item).inserted { return item }
            return nil
        }
        if let d = firstDuplicate(regions) { throw StratusError(.invalidArgument, "region '\(d)' declared twice") }
        if let d = firstDuplicate(sites.map(\.id)) { throw StratusError(.invalidArgument, "site '\(d)' declared twice") }
        if let d = firstDuplicate(racks.map(\.id)) { throw StratusError(.invalidArgument, "rack '\(d)' declared twice") }
        if let d = firstDuplicate(nodes.map(\.id)) { throw StratusError(.invalidArgument, "node '\(d)' declared twice") }
    }

    /// The fleet `stratus up` loads into a new database: one region, one site, two racks,
    /// eight nodes with eight H100 each.
    public static let demo: FleetSpec = {
        var spec = FleetSpec()
        spec.regions = ["local"]
        spec.sites = [SiteSpec(id: "local-dc1", region: "local", powerBudgetKW: 1000, pueMilli: 1250)]
        spec.racks = [RackSpec(id: "rack-a", site: "local-dc1"), RackSpec(id: "rack-b", site: "local-dc1")]
        for i in 1...8 {
            spec.nodes.append(
                NodeSpec(
                    id: NodeID("node-\(i)"), rack: i <= 4 ? "rack-a" : "rack-b", gpuModel: "H100", gpuCount: 8,
                    labels: [:]))
        }
        return spec
    }()
}
