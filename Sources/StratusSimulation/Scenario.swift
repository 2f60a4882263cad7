import StratusCore

/// A whole AI cloud to simulate, as `stratus sim scenario.yaml` reads it: sites that come
/// online in phases, the GPUs they hold and what they cost, capacity bought from others,
/// the operator's own demand (inference with a daily cycle, training runs), external
/// demand per tier that answers to price, SLAs, faults, the horizon and the seed.
/// docs/simulation.md documents every field; examples/sim/ holds worked scenarios.
///
/// Money and shares are exact (micro-dollars, basis points, thousandths); only the random
/// draws of arrivals and durations use floating point, from a seeded generator.
public struct Scenario: Equatable, Sendable {
    public var name: String
    public var seed: UInt64
    public var start: Timestamp
    public var horizonDays: Int64
    /// How often the scheduler runs (Slurm's `sched_interval`); 0: after every change.
    public var schedulingIntervalSeconds: Int64
    public var preemptionNoticeSeconds: Int64
    public var electricityPerMWh: Money
    /// Yearly cost of capital on GPU capex (basis points); an economic cost, not cash.
    public var capitalBasisPoints: Int64
    public var models: [String: ModelCost]
    public var sites: [Site]
    public var contracts: [Contract]
    /// List prices per GPU-hour by model (the price book's defaults otherwise).
    public var prices: [Price]
    public var inference: Inference?
    public var training: [Training]
    public var demand: [Demand]
    public var slas: [SLA]
    public var faults: Faults?

    public var end: Timestamp { start.adding(seconds: horizonDays * 86400) }

    /// What a GPU model costs to own: capex (its share of servers and network), IT power
    /// per GPU (server share plus network and storage), useful life, yearly O&M, and how
    /// it is packaged (GPUs per node, nodes per rack; a rack is one NVLink domain for
    /// NVL72 systems).
    public struct ModelCost: Equatable, Sendable {
        public var name: String
        public var capex: Money
        public var itWatts: Int64
        public var lifeYears: Int64
        public var omBasisPoints: Int64
        public var gpusPerNode: Int
        public var nodesPerRack: Int
        /// Each node's CPU and memory (`node_cpus`, `node_memory`); nil: not limited.
        public var nodeResources: NodeResources?
    }

    public struct Site: Equatable, Sendable {
        public var name: String
        public var region: String
        public var pueMilli: Int64
        /// Facility capex per MW of IT (critical) load.
        public var facilityCapexPerMW: Money
        public var facilityLifeYears: Int64
        public var facilityOMBasisPoints: Int64
        public var phases: [Phase]
    }

    /// Power coming online at a date, filled with one GPU model: GPUs = kW at the wall /
    /// (IT watts per GPU x PUE), in whole racks of nodes.
    public struct Phase: Equatable, Sendable {
        public var at: Timestamp
        public var kilowatts: Int64
        public var model: String
    }

    /// Capacity bought from another cloud: GPUs delivered on a ramp (months from the
    /// contract's start), paid per delivered GPU-hour; `commitment` is the total the
    /// buyer promised over the term; take-or-pay means a shortfall is paid anyway.
    public struct Contract: Equatable, Sendable {
        public var name: String
        public var model: String
        public var region: String
        public var startMonth: Int
        public var termMonths: Int
        public var pricePerGPUHour: Money
        public var commitment: Money?
        public var takeOrPay: Bool
        public var ramp: [(month: Int, gpus: Int)]

        public static func == (a: Contract, b: Contract) -> Bool {
            a.name == b.name && a.model == b.model && a.region == b.region && a.startMonth == b.startMonth
                && a.termMonths == b.termMonths && a.pricePerGPUHour == b.pricePerGPUHour && a.commitment == b.commitment
                && a.takeOrPay == b.takeOrPay && a.ramp.map(\.month) == b.ramp.map(\.month)
                && a.ramp.map(\.gpus) == b.ramp.map(\.gpus)
        }
    }

    public struct Price: Equatable, Sendable {
        public var model: String
        public var onDemand: Money
        public var reserved: Money?
        public var spot: Money?
    }

    /// The operator's own inference: replicas of `replicaGPUs` scaled every hour along a
    /// daily cycle, `peakGPUs` at `peakHour` (UTC) and peak / `peakToTroughMilli` x 1000 at
    /// the opposite hour (a cosine between them).
    public struct Inference: Equatable, Sendable {
        public var model: String
        public var peakGPUs: Int
        public var peakToTroughMilli: Int64
        public var peakHour: Int
        public var replicaGPUs: Int
        /// GPUs held back from on-demand and reserved sales for internal work.
        public var reserveGPUs: Int?
    }

    /// Internal training runs: a gang of `gpus` every `everySeconds`, each running
    /// `durationSeconds`, the first `firstAfterSeconds` after the start.
    public struct Training: Equatable, Sendable {
        public var name: String
        public var model: String
        public var gpus: Int
        public var everySeconds: Int64
        public var durationSeconds: Int64
        public var firstAfterSeconds: Int64
    }

    /// External demand of one tier: Poisson arrivals at `arrivalsPerDayMilli` / 1000 a day
    /// when the tier's price is `referencePrice`, scaled by (reference / price) ^
    /// elasticity as the price moves; sizes drawn from `sizes` (thousandths of a GPU, so
    /// that a fraction of one GPU is a size too; weight); durations
    /// exponential with mean `meanSeconds`; spread over `orgs` organizations. For the
    /// reserved tier each arrival buys a capacity block of `blockSeconds` starting
    /// `leadSeconds` later and runs a job in it.
    public struct Demand: Equatable, Sendable {
        public var name: String
        public var tier: Tier
        public var model: String
        public var arrivalsPerDayMilli: Int64
        public var sizes: [(milliGPUs: Int, weight: Int)]
        public var meanSeconds: Int64
        public var elasticityMilli: Int64
        public var referencePrice: Money?
        public var orgs: Int
        public var blockSeconds: Int64
        public var leadSeconds: Int64
        /// How long a job waits in the queue before its owner gives up and cancels it.
        public var patienceSeconds: Int64
        /// CPU and memory each job asks for per GPU (`cpus_per_gpu`, `memory_per_gpu`).
        public var perGPU: NodeResources?

        public static func == (a: Demand, b: Demand) -> Bool {
            a.name == b.name && a.tier == b.tier && a.model == b.model && a.arrivalsPerDayMilli == b.arrivalsPerDayMilli
                && a.sizes.map(\.milliGPUs) == b.sizes.map(\.milliGPUs) && a.sizes.map(\.weight) == b.sizes.map(\.weight)
                && a.perGPU == b.perGPU
                && a.meanSeconds == b.meanSeconds && a.elasticityMilli == b.elasticityMilli
                && a.referencePrice == b.referencePrice && a.orgs == b.orgs && a.blockSeconds == b.blockSeconds
                && a.leadSeconds == b.leadSeconds && a.patienceSeconds == b.patienceSeconds
        }
    }

    public struct SLA: Equatable, Sendable {
        /// Each capacity block delivers this share of its GPU-hours a month (thousandths).
        public var reservedAvailabilityPermille: Int64
        public var creditPercent: Int
    }

    /// Node failures: Poisson per node at `perGPUYearMilli` / 1000 failures per GPU-year;
    /// a failed node is lost (its work requeued per retry policy) and back after
    /// `repairSeconds`.
    public struct Faults: Equatable, Sendable {
        public var perGPUYearMilli: Int64
        public var repairSeconds: Int64
    }

    // MARK: limits

    public static let maxHorizonDays: Int64 = 3660
    public static let maxPhases = 100
    public static let maxStreams = 100
    public static let maxOrgsPerStream = 10_000
    public static let maxGPUs = 2_000_000

    // MARK: defaults (economics.md)

    /// economics.md: HGX H100 at ~$47.5k per GPU with its fabric; 10.2 kW per 8 GPUs plus
    /// 10% for network and storage = 1,403 W of IT load per GPU; 5-year life; O&M 5% of IT
    /// capex a year. GB200: ~$3.0M per NVL72 rack = $41,666.67 per GPU; 132 kW per 72 GPUs
    /// + 10% = 2,017 W; nodes of 4 GPUs, 18 to a rack.
    public static let defaultModels: [String: ModelCost] = [
        "H100": ModelCost(
            name: "H100", capex: Money(micros: 47_500_000_000), itWatts: 1403, lifeYears: 5, omBasisPoints: 500,
            gpusPerNode: 8, nodesPerRack: 4),
        "GB200": ModelCost(
            name: "GB200", capex: Money(micros: 41_666_670_000), itWatts: 2017, lifeYears: 5, omBasisPoints: 500,
            gpusPerNode: 4, nodesPerRack: 18),
    ]

    /// GPUs a phase adds: whole racks that fit in its power.
    public func gpus(of phase: Phase, in site: Site) -> Int {
        let m = models[phase.model]!
        let wallMilliwattsPerGPU = m.itWatts * site.pueMilli
        let gpus = Int(phase.kilowatts * 1_000_000 / wallMilliwattsPerGPU)
        let rack = m.gpusPerNode * m.nodesPerRack
        return gpus / rack * rack
    }

    /// What one installed GPU of `model` in `site` costs a year (economics.md's model;
    /// power at the wall to the watt).
    public func economics(model: String, site: Site) -> GPUEconomics {
        let m = models[model]!
        return GPUEconomics(
            gpuCapex: m.capex, gpuLifeYears: m.lifeYears,
            facilityCapexPerGPU: Money(micros: site.facilityCapexPerMW.micros * m.itWatts / 1_000_000),
            facilityLifeYears: site.facilityLifeYears, gpuOMBasisPoints: m.omBasisPoints,
            facilityOMBasisPoints: site.facilityOMBasisPoints, wallWatts: (m.itWatts * site.pueMilli + 500) / 1000,
            electricityPerMWh: electricityPerMWh, capitalBasisPoints: capitalBasisPoints)
    }
}

// MARK: parsing

extension Scenario {
    /// Reads a scenario document (YAML or JSON, as a `SpecValue`) strictly: unknown
    /// fields, bad values and inconsistent references are errors naming the field.
    public static func parse(_ value: SpecValue) throws(StratusError) -> Scenario {
        var o = try SpecObject(value, path: "")
        let name = try o.string("name") ?? "scenario"
        guard name.utf8.count <= 200 else { throw StratusError(.invalidArgument, "name: longer than 200 bytes") }
        let seed = try o.int("seed") ?? 1
        guard seed >= 0 else { throw StratusError(.invalidArgument, "seed: must be 0 or more") }
        let start = try date(o.requiredString("start"), field: "start")
        let horizon = try o.int("horizon_days") ?? 365
        guard horizon >= 1, horizon <= maxHorizonDays else {
            throw StratusError(.invalidArgument, "horizon_days: between 1 and \(maxHorizonDays), got \(horizon)")
        }
        var scenario = Scenario(
            name: name, seed: UInt64(seed), start: start, horizonDays: horizon, schedulingIntervalSeconds: 60,
            preemptionNoticeSeconds: Limits.defaultPreemptionNoticeSeconds, electricityPerMWh: Money(micros: 80_000_000),
            capitalBasisPoints: 0, models: defaultModels, sites: [], contracts: [], prices: [], inference: nil,
            training: [], demand: [], slas: [], faults: nil)
        if var s = try o.object("scheduler") {
            if let v = try s.string("interval") {
                scenario.schedulingIntervalSeconds = try DurationText.parseSeconds(v, field: s.field("interval"))
            }
            if let v = try s.string("preemption_notice") {
                scenario.preemptionNoticeSeconds = try DurationText.parseSeconds(v, field: s.field("preemption_notice"))
            }
            try s.finish()
            guard scenario.schedulingIntervalSeconds <= 3600 else {
                throw StratusError(.invalidArgument, "scheduler.interval: at most 1h")
            }
        }
        if var f = try o.object("finance") {
            if let m = try money(&f, "electricity_per_mwh") { scenario.electricityPerMWh = m }
            if let c = try percent(&f, "cost_of_capital") { scenario.capitalBasisPoints = c }
            try f.finish()
        }
        for (i, item) in (try o.array("gpu_models") ?? []).enumerated() {
            let m = try parseModel(item, path: "gpu_models[\(i)]")
            scenario.models[m.name] = m
        }
        for (i, item) in (try o.array("sites") ?? []).enumerated() {
            scenario.sites.append(try parseSite(item, path: "sites[\(i)]", models: scenario.models))
        }
        for (i, item) in (try o.array("contracts") ?? []).enumerated() {
            scenario.contracts.append(try parseContract(item, path: "contracts[\(i)]", models: scenario.models))
        }
        for (i, item) in (try o.array("prices") ?? []).enumerated() {
            var p = try SpecObject(item, path: "prices[\(i)]")
            let model = try GPUCatalog.require(p.requiredString("gpu_model"), field: p.field("gpu_model")).name
            let od = try requiredMoney(&p, "on_demand")
            let reserved = try money(&p, "reserved")
            let spot = try money(&p, "spot")
            try p.finish()
            scenario.prices.append(Price(model: model, onDemand: od, reserved: reserved, spot: spot))
        }
        if var internalDemand = try o.object("internal") {
            if let inf = internalDemand.value("inference") {
                scenario.inference = try parseInference(inf, path: internalDemand.field("inference"), models: scenario.models)
            }
            for (i, item) in (try internalDemand.array("training") ?? []).enumerated() {
                scenario.training.append(
                    try parseTraining(item, path: internalDemand.field("training[\(i)]"), models: scenario.models))
            }
            try internalDemand.finish()
        }
        for (i, item) in (try o.array("demand") ?? []).enumerated() {
            scenario.demand.append(try parseDemand(item, path: "demand[\(i)]", models: scenario.models))
        }
        for (i, item) in (try o.array("slas") ?? []).enumerated() {
            var s = try SpecObject(item, path: "slas[\(i)]")
            let objective = try s.requiredString("objective")
            guard objective == "reserved_availability" else {
                throw StratusError(.invalidArgument, "\(s.field("objective")): only reserved_availability is simulated")
            }
            let target = try requiredPercent(&s, "target")
            let credit = try requiredPercent(&s, "credit")
            try s.finish()
            guard target % 10 == 0, target > 0, target <= 10_000, credit % 100 == 0, credit <= 10_000 else {
                throw StratusError(
                    .invalidArgument, "slas[\(i)]: target to 0.1% (e.g. 99.5%) and credit in whole percent, at most 100%")
            }
            scenario.slas.append(SLA(reservedAvailabilityPermille: target / 10, creditPercent: Int(credit / 100)))
        }
        if var f = try o.object("faults") {
            let rate = try f.decimal("failures_per_gpu_year", scale: 1000) ?? 170
            let repair = try DurationText.parseSeconds(f.string("repair") ?? "24h", field: f.field("repair"))
            try f.finish()
            guard rate >= 0, rate <= 100_000, repair >= 60 else {
                throw StratusError(
                    .invalidArgument, "faults: failures_per_gpu_year between 0 and 100, repair at least 1m")
            }
            scenario.faults = Faults(perGPUYearMilli: rate, repairSeconds: repair)
        }
        try o.finish()
        try scenario.check()
        return scenario
    }

    func check() throws(StratusError) {
        guard !sites.isEmpty || !contracts.isEmpty else {
            throw StratusError(.invalidArgument, "sites: a scenario needs at least one site or contract")
        }
        var names = Set<String>()
        for s in sites {
            guard names.insert(s.name).inserted else { throw StratusError(.alreadyExists, "sites: '\(s.name)' twice") }
        }
        for c in contracts {
            guard names.insert(c.name).inserted else {
                throw StratusError(.alreadyExists, "contracts: '\(c.name)' is also the name of a site or contract")
            }
        }
        var gpus = 0
        for s in sites {
            for p in s.phases { gpus += self.gpus(of: p, in: s) }
        }
        for c in contracts { gpus += c.ramp.map(\.gpus).max() ?? 0 }
        guard gpus <= Self.maxGPUs else {
            throw StratusError(.limitExceeded, "the scenario installs \(gpus) GPUs; at most \(Self.maxGPUs)")
        }
        var streams = Set<String>()
        for d in demand {
            guard streams.insert(d.name).inserted else {
                throw StratusError(.alreadyExists, "demand: stream '\(d.name)' twice")
            }
        }
        for t in training {
            guard streams.insert(t.name).inserted else {
                throw StratusError(.alreadyExists, "internal.training: '\(t.name)' is also the name of another stream")
            }
        }
        guard demand.count + training.count <= Self.maxStreams else {
            throw StratusError(.limitExceeded, "at most \(Self.maxStreams) demand and training streams")
        }
    }

    static func parseModel(_ item: SpecValue, path: String) throws(StratusError) -> ModelCost {
        var m = try SpecObject(item, path: path)
        let model = try GPUCatalog.require(m.requiredString("name"), field: m.field("name")).name
        let base = defaultModels[model]
        let capex = try money(&m, "capex")
        let watts = try m.int("it_watts")
        let life = try m.int("life_years") ?? base?.lifeYears ?? 5
        let om = try percent(&m, "om")
        let perNode = try m.int("gpus_per_node")
        let perRack = try m.int("nodes_per_rack")
        let resources = try NodeResources.parse(
            &m, limit: Limits.maxNodeResources, cpuKey: "node_cpus", memoryKey: "node_memory")
        try m.finish()
        guard let capex = capex ?? base?.capex, let watts = watts ?? base?.itWatts else {
            throw StratusError(.invalidArgument, "\(path): capex and it_watts are required for \(model) (no default)")
        }
        let node = Int(perNode ?? Int64(base?.gpusPerNode ?? 8))
        let rack = Int(perRack ?? Int64(base?.nodesPerRack ?? 4))
        guard capex.micros > 0, watts >= 100, watts <= 100_000, life >= 1, life <= 30, node >= 1,
            node <= Limits.maxGPUsPerNode, rack >= 1, rack <= 1000
        else {
            throw StratusError(
                .invalidArgument,
                "\(path): capex positive, it_watts 100-100000, life_years 1-30, gpus_per_node 1-\(Limits.maxGPUsPerNode), nodes_per_rack 1-1000"
            )
        }
        return ModelCost(
            name: model, capex: capex, itWatts: watts, lifeYears: life, omBasisPoints: om ?? base?.omBasisPoints ?? 500,
            gpusPerNode: node, nodesPerRack: rack, nodeResources: resources.isZero ? nil : resources)
    }

    static func parseSite(_ item: SpecValue, path: String, models: [String: ModelCost]) throws(StratusError) -> Site {
        var s = try SpecObject(item, path: path)
        let name = try s.requiredString("name")
        try Name.validate(name, field: s.field("name"))
        let region = try s.string("region") ?? name
        try Name.validate(region, field: s.field("region"))
        let pue = try s.decimal("pue", scale: 1000) ?? 1250
        guard pue >= 1000, pue <= 3000 else { throw StratusError(.invalidArgument, "\(s.field("pue")): between 1.0 and 3.0") }
        let facility = try money(&s, "facility_capex_per_mw")
        let life = try s.int("facility_life_years") ?? 15
        let om = try percent(&s, "facility_om")
        guard life >= 1, life <= 50 else {
            throw StratusError(.invalidArgument, "\(s.field("facility_life_years")): between 1 and 50")
        }
        var phases: [Phase] = []
        let items = try s.array("build_out") ?? []
        guard !items.isEmpty, items.count <= maxPhases else {
            throw StratusError(.invalidArgument, "\(s.field("build_out")): 1 to \(maxPhases) phases")
        }
        for (i, p) in items.enumerated() {
            var ph = try SpecObject(p, path: s.field("build_out[\(i)]"))
            let at = try date(ph.requiredString("at"), field: ph.field("at"))
            guard let kw = try ph.decimal("mw", scale: 1000), kw > 0, kw <= 10_000_000 else {
                throw StratusError(.invalidArgument, "\(ph.field("mw")): required, above 0 and at most 10000")
            }
            let model = try costedModel(&ph, models)
            try ph.finish()
            phases.append(Phase(at: at, kilowatts: kw, model: model))
        }
        try s.finish()
        return Site(
            name: name, region: region, pueMilli: pue, facilityCapexPerMW: facility ?? Money(micros: 11_700_000_000_000),
            facilityLifeYears: life, facilityOMBasisPoints: om ?? 200, phases: phases.sorted { $0.at < $1.at })
    }

    static func parseContract(_ item: SpecValue, path: String, models: [String: ModelCost]) throws(StratusError)
        -> Contract
    {
        var c = try SpecObject(item, path: path)
        let name = try c.requiredString("name")
        try Name.validate(name, field: c.field("name"))
        let model = try costedModel(&c, models)
        let region = try c.string("region") ?? name
        try Name.validate(region, field: c.field("region"))
        let price = try requiredMoney(&c, "price_per_gpu_hour")
        let term = try c.int("term_months") ?? 12
        let startMonth = try c.int("start_month") ?? 0
        let commitment = try money(&c, "commitment")
        let takeOrPay = try c.bool("take_or_pay") ?? true
        var ramp: [(month: Int, gpus: Int)] = []
        for (i, r) in (try c.array("ramp") ?? []).enumerated() {
            var step = try SpecObject(r, path: c.field("ramp[\(i)]"))
            let month = try step.int("month") ?? 0
            guard let gpus = try step.int("gpus"), gpus >= 0, gpus <= Int64(maxGPUs) else {
                throw StratusError(.invalidArgument, "\(step.field("gpus")): required, 0 to \(maxGPUs)")
            }
            try step.finish()
            guard month >= 0, month < term, ramp.last.map({ $0.month < Int(month) && $0.gpus <= Int(gpus) }) ?? true else {
                throw StratusError(
                    .invalidArgument,
                    "\(step.field("month")): months increase within the term (0 to \(term - 1)) and GPUs never decrease")
            }
            ramp.append((Int(month), Int(gpus)))
        }
        try c.finish()
        guard price.micros > 0, term >= 1, term <= 240, startMonth >= 0, startMonth <= 1200, !ramp.isEmpty,
            (commitment?.micros ?? 1) > 0
        else {
            throw StratusError(
                .invalidArgument,
                "\(path): price_per_gpu_hour positive, term_months 1-240, start_month 0-1200, a ramp of at least one step, commitment positive"
            )
        }
        let m = models[model]!
        for (i, step) in ramp.enumerated() where step.gpus % m.gpusPerNode != 0 {
            throw StratusError(
                .invalidArgument, "\(c.field("ramp[\(i)].gpus")): \(step.gpus) is not whole nodes of \(m.gpusPerNode)")
        }
        return Contract(
            name: name, model: model, region: region, startMonth: Int(startMonth), termMonths: Int(term),
            pricePerGPUHour: price, commitment: commitment, takeOrPay: takeOrPay, ramp: ramp)
    }

    static func parseInference(_ item: SpecValue, path: String, models: [String: ModelCost]) throws(StratusError)
        -> Inference
    {
        var i = try SpecObject(item, path: path)
        let model = try costedModel(&i, models)
        guard let peak = try i.int("gpus_at_peak"), peak >= 1, peak <= Int64(maxGPUs) else {
            throw StratusError(.invalidArgument, "\(i.field("gpus_at_peak")): required, 1 to \(maxGPUs)")
        }
        let ratio = try i.decimal("peak_to_trough", scale: 1000) ?? 2500
        let hour = try i.int("peak_hour") ?? 20
        let replica = try i.int("replica_gpus") ?? Int64(models[model]!.gpusPerNode)
        let reserve = try i.int("reserve_gpus")
        try i.finish()
        guard ratio >= 1000, ratio <= 100_000, (0..<24).contains(hour), replica >= 1,
            replica <= Int64(models[model]!.gpusPerNode), (reserve ?? 0) >= 0
        else {
            throw StratusError(
                .invalidArgument, "\(path): peak_to_trough 1-100, peak_hour 0-23, replica_gpus at most one node")
        }
        return Inference(
            model: model, peakGPUs: Int(peak), peakToTroughMilli: ratio, peakHour: Int(hour), replicaGPUs: Int(replica),
            reserveGPUs: reserve.map { Int($0) })
    }

    static func parseTraining(_ item: SpecValue, path: String, models: [String: ModelCost]) throws(StratusError)
        -> Training
    {
        var t = try SpecObject(item, path: path)
        let name = try t.requiredString("name")
        try Name.validate(name, field: t.field("name"))
        let model = try costedModel(&t, models)
        guard let gpus = try t.int("gpus"), gpus >= 1, gpus <= Int64(maxGPUs) else {
            throw StratusError(.invalidArgument, "\(t.field("gpus")): required, 1 to \(maxGPUs)")
        }
        let every = try DurationText.parseSeconds(t.requiredString("every"), field: t.field("every"))
        let duration = try DurationText.parseSeconds(t.requiredString("duration"), field: t.field("duration"))
        let first = try DurationText.parseSeconds(t.string("first_after") ?? "0", field: t.field("first_after"))
        try t.finish()
        guard every >= 3600, duration >= 60, duration <= Limits.maxJobDurationSeconds, first >= 0 else {
            throw StratusError(
                .invalidArgument, "\(path): every at least 1h, duration 1m to \(Limits.maxJobDurationSeconds / 86400)d")
        }
        let perNode = models[model]!.gpusPerNode
        guard gpus <= perNode || gpus % Int64(perNode) == 0 else {
            throw StratusError(.invalidArgument, "\(t.field("gpus")): \(gpus) is not one node or whole nodes of \(perNode)")
        }
        return Training(
            name: name, model: model, gpus: Int(gpus), everySeconds: every, durationSeconds: duration,
            firstAfterSeconds: first)
    }

    static func parseDemand(_ item: SpecValue, path: String, models: [String: ModelCost]) throws(StratusError) -> Demand {
        var d = try SpecObject(item, path: path)
        let name = try d.requiredString("name")
        try Name.validate(name, field: d.field("name"))
        let tierText = try d.requiredString("tier")
        guard let tier = Tier(rawValue: tierText.replacingUnderscores()), tier != .internal else {
            throw StratusError(.invalidArgument, "\(d.field("tier")): one of on_demand, spot, reserved")
        }
        let model = try costedModel(&d, models)
        let perNode = models[model]!.gpusPerNode
        guard let rate = try d.decimal("arrivals_per_day", scale: 1000), rate > 0, rate <= 100_000_000 else {
            throw StratusError(.invalidArgument, "\(d.field("arrivals_per_day")): required, above 0 and at most 100000")
        }
        var sizes: [(milliGPUs: Int, weight: Int)] = []
        guard let sizeValue = d.value("sizes"), case .object(let pairs) = sizeValue, !pairs.isEmpty, pairs.count <= 32
        else {
            throw StratusError(
                .invalidArgument, "\(d.field("sizes")): required, a mapping of GPUs to shares, e.g. {1: 50%, 8: 50%}")
        }
        for pair in pairs {
            // A fraction of one GPU (0.25), or whole GPUs.
            let milli = DecimalText.parse(pair.key, scale: 1000) ?? 0
            let gpus = Int(milli / 1000)
            guard milli >= 1, milli < 1000 || (milli % 1000 == 0 && (gpus <= perNode || gpus % perNode == 0) && gpus <= 100_000)
            else {
                throw StratusError(
                    .invalidArgument,
                    "\(d.field("sizes")).\(pair.key): GPUs must be a fraction of one, up to one node or whole nodes of \(perNode)"
                )
            }
            if milli < 1000, tier == .reserved {
                throw StratusError(
                    .invalidArgument, "\(d.field("sizes")).\(pair.key): capacity blocks hold whole GPUs, not a fraction of one")
            }
            let share: Int64
            switch pair.value {
            case .string(let s): share = try percent(s, field: "\(d.field("sizes")).\(pair.key)")
            case .int(let i): share = i * 100
            default: throw StratusError(.invalidArgument, "\(d.field("sizes")).\(pair.key): a share such as 40%")
            }
            guard share > 0 else { throw StratusError(.invalidArgument, "\(d.field("sizes")).\(pair.key): above 0%") }
            sizes.append((Int(milli), Int(share)))
        }
        let mean = try DurationText.parseSeconds(d.string("mean_duration") ?? "4h", field: d.field("mean_duration"))
        let elasticity = try d.decimal("elasticity", scale: 1000) ?? 0
        let reference = try money(&d, "reference_price")
        let orgs = try d.int("orgs") ?? 10
        let block = try DurationText.parseSeconds(d.string("block") ?? "7d", field: d.field("block"))
        let lead = try DurationText.parseSeconds(d.string("lead") ?? "1d", field: d.field("lead"))
        let patience = try DurationText.parseSeconds(d.string("patience") ?? "1d", field: d.field("patience"))
        let resources = try NodeResources.parse(
            &d, limit: Limits.maxNodeResources, cpuKey: "cpus_per_gpu", memoryKey: "memory_per_gpu")
        try d.finish()
        guard mean >= 60, mean <= Limits.maxJobDurationSeconds, elasticity >= 0, elasticity <= 10_000, orgs >= 1,
            orgs <= Int64(maxOrgsPerStream), block >= 3600, block <= 182 * 86400, lead >= 0, lead <= 56 * 86400,
            patience >= 60, patience <= 365 * 86400
        else {
            throw StratusError(
                .invalidArgument,
                "\(path): mean_duration 1m to \(Limits.maxJobDurationSeconds / 86400)d, elasticity 0-10, orgs 1-\(maxOrgsPerStream), block 1h-182d, lead 0-56d, patience 1m-365d"
            )
        }
        return Demand(
            name: name, tier: tier, model: model, arrivalsPerDayMilli: rate, sizes: sizes, meanSeconds: mean,
            elasticityMilli: elasticity, referencePrice: reference, orgs: Int(orgs), blockSeconds: block, leadSeconds: lead,
            patienceSeconds: patience, perGPU: resources.isZero ? nil : resources)
    }

    /// The `gpu_model` field: a catalog model that `gpu_models` (or the defaults) cost.
    static func costedModel(_ o: inout SpecObject, _ models: [String: ModelCost]) throws(StratusError) -> String {
        let model = try GPUCatalog.require(o.requiredString("gpu_model"), field: o.field("gpu_model")).name
        guard models[model] != nil else {
            throw StratusError(.invalidArgument, "\(o.field("gpu_model")): \(model) needs an entry in gpu_models")
        }
        return model
    }

    /// `2027-01-01` or `2027-01-01T06:00:00Z`, UTC.
    static func date(_ text: String, field: String) throws(StratusError) -> Timestamp {
        let t = text.trimmingSpaces()
        let day = t.prefix(10)
        if let midnight = PhillyTrace.parseTime(day + " 00:00:00") {
            if t.count == 10 { return midnight }
            if t.count == 20, t.hasSuffix("Z"), let exact = PhillyTrace.parseTime(Substring(String(t.prefix(19)).replacingT())) {
                return exact
            }
        }
        throw StratusError(.invalidArgument, "\(field): '\(text)' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)")
    }

    /// An amount of dollars, as a number or a string (`47500`, `6.16`), exactly.
    static func money(_ o: inout SpecObject, _ key: String) throws(StratusError) -> Money? {
        guard let micros = try o.decimal(key, scale: 1_000_000) else { return nil }
        guard micros >= 0 else { throw StratusError(.invalidArgument, "\(o.field(key)): must not be negative") }
        return Money(micros: micros)
    }

    static func requiredMoney(_ o: inout SpecObject, _ key: String) throws(StratusError) -> Money {
        guard let m = try money(&o, key) else { throw StratusError(.invalidArgument, "\(o.field(key)): required") }
        return m
    }

    static func percent(_ o: inout SpecObject, _ key: String) throws(StratusError) -> Int64? {
        guard let v = o.value(key) else { return nil }
        switch v {
        case .string(let s): return try percent(s, field: o.field(key))
        case .int(let i): return try percent(String(i), field: o.field(key))
        case .double(let d): return try percent(String(d), field: o.field(key))
        default: throw StratusError(.invalidArgument, "\(o.field(key)): expected a percentage such as 5%")
        }
    }

    static func requiredPercent(_ o: inout SpecObject, _ key: String) throws(StratusError) -> Int64 {
        guard let p = try percent(&o, key) else { throw StratusError(.invalidArgument, "\(o.field(key)): required") }
        return p
    }

    /// `5%`, `0.5%` or `5` (percent), in basis points.
    static func percent(_ text: String, field: String) throws(StratusError) -> Int64 {
        var t = text.trimmingSpaces()
        if t.hasSuffix("%") { t.removeLast() }
        guard let v = DecimalText.parse(t, scale: 100), v >= 0, v <= 1_000_000 else {
            throw StratusError(.invalidArgument, "\(field): '\(text)' is not a percentage (e.g. 5% or 0.25%)")
        }
        return v
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
    fileprivate func replacingT() -> String { String(map { $0 == "T" ? " " : $0 }) }
}
