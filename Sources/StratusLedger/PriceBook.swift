import StratusCore

/// What a list price is for: GPU model x region x tier. `region` may be `*` (every
/// region without a price of its own).
public struct SKU: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public var gpuModel: String
    public var region: String
    public var tier: Tier

    /// What hash tables use: the fields through `WordDigest`, keyed by the table's seed.
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(gpuModel)
        h.add(region)
        h.add(UInt64(tier.rank))
        return h.tableHash
    }

    public init(gpuModel: String, region: String, tier: Tier) {
        self.gpuModel = gpuModel
        self.region = region
        self.tier = tier
    }

    public static let anyRegion = "*"

    public static func < (a: SKU, b: SKU) -> Bool {
        (a.gpuModel, a.region, a.tier.rank) < (b.gpuModel, b.region, b.tier.rank)
    }

    public var description: String { "\(gpuModel) in \(region) (\(tier.rawValue))" }
}

/// One price from a moment on: history is a list of these, newest last.
public struct PricePoint: Codable, Equatable, Sendable {
    public var from: Timestamp
    /// Per GPU-hour.
    public var price: Money
    public init(from: Timestamp, price: Money) {
        self.from = from
        self.price = price
    }
}

/// A negotiated price or discount for one org, effective from `from`. `gpuModel` and
/// `region` may be `*`.
public struct OrgPrice: Codable, Equatable, Sendable {
    public var org: OrgID
    public var gpuModel: String
    public var region: String
    public var tier: Tier
    public var from: Timestamp
    /// A fixed price per GPU-hour, or
    public var price: Money?
    /// a discount off the list price, in basis points (1500 = 15%).
    public var discountBasisPoints: Int?

    public init(
        org: OrgID, gpuModel: String = "*", region: String = "*", tier: Tier, from: Timestamp, price: Money? = nil,
        discountBasisPoints: Int? = nil
    ) {
        self.org = org
        self.gpuModel = gpuModel
        self.region = region
        self.tier = tier
        self.from = from
        self.price = price
        self.discountBasisPoints = discountBasisPoints
    }

    /// How specific the override is: an exact model and region wins over wildcards.
    var specificity: Int { (gpuModel == "*" ? 0 : 2) + (region == "*" ? 0 : 1) }

    func matches(_ sku: SKU) -> Bool {
        tier == sku.tier && (gpuModel == "*" || gpuModel == sku.gpuModel) && (region == "*" || region == sku.region)
    }
}

/// List prices per SKU with their history, and per-org overrides. Effective-dated: a
/// change applies from its `from`; nothing is ever rewritten, so usage is always rated
/// at the price in force when it happened.
public struct PriceBook: Codable, Equatable, Sendable {
    public private(set) var list: [SKU: [PricePoint]] = [:]
    public private(set) var overrides: [OrgID: [OrgPrice]] = [:]

    public init() {}

    /// Checks one list price change without making it.
    public func check(_ sku: SKU, _ point: PricePoint) throws(StratusError) {
        _ = try GPUCatalog.require(sku.gpuModel, field: "gpu")
        if sku.region != SKU.anyRegion { try Name.validate(sku.region, field: "region") }
        try point.price.checkAmount(field: "price")
        guard point.from.milliseconds % 1000 == 0 else {
            throw StratusError(.invalidArgument, "from: prices change on whole seconds")
        }
        if let last = list[sku]?.last, point.from < last.from {
            throw StratusError(
                .failedPrecondition,
                "from: \(point.from) is before the latest price of \(sku) (from \(last.from)); history is not rewritten")
        }
        guard (list[sku]?.count ?? 0) < Limits.maxPricePointsPerSKU || list[sku]!.last!.from == point.from else {
            throw StratusError(.limitExceeded, "prices: \(sku) already has \(Limits.maxPricePointsPerSKU) points")
        }
    }

    public mutating func set(_ sku: SKU, _ point: PricePoint) {
        // In place: a SKU's history can be long (spot prices), and copying it per change
        // made each change cost as much as the whole history.
        if let last = list[sku]?.last, last.from == point.from {
            list[sku]![list[sku]!.count - 1] = point
        } else {
            list[sku, default: []].append(point)
        }
    }

    public func check(_ o: OrgPrice) throws(StratusError) {
        if o.gpuModel != "*" { _ = try GPUCatalog.require(o.gpuModel, field: "gpu") }
        if o.region != "*" { try Name.validate(o.region, field: "region") }
        guard (o.price == nil) != (o.discountBasisPoints == nil) else {
            throw StratusError(.invalidArgument, "an org price sets either price or discount, not both or neither")
        }
        if let p = o.price { try p.checkAmount(field: "price") }
        if let d = o.discountBasisPoints, !(0...10_000).contains(d) {
            throw StratusError(.invalidArgument, "discount: must be between 0% and 100%")
        }
        guard o.from.milliseconds % 1000 == 0 else {
            throw StratusError(.invalidArgument, "from: prices change on whole seconds")
        }
        guard (overrides[o.org]?.count ?? 0) < Limits.maxOrgPrices else {
            throw StratusError(.limitExceeded, "prices: org \(o.org) already has \(Limits.maxOrgPrices) negotiated prices")
        }
    }

    public mutating func set(_ o: OrgPrice) {
        overrides[o.org, default: []].append(o)
    }

    /// Everything that prices `sku` for `org`, looked up once: list points of the exact
    /// region and of `*`, and the org's matching overrides.
    public struct Resolved: Sendable {
        let exact: [PricePoint]?
        let any: [PricePoint]?
        let overrides: [OrgPrice]

        /// The list point in force at `at`, for the exact region or else `*`.
        public func listPoint(at: Timestamp) -> PricePoint? { PriceBook.point(exact, at) ?? PriceBook.point(any, at) }

        /// What the org pays per GPU-hour at `at`, or nil when nothing prices it.
        public func price(at: Timestamp) -> Money? { prices(at: at).org }

        /// What the org pays and the list price at `at`.
        public func prices(at: Timestamp) -> (org: Money?, list: Money?) {
            let list = listPoint(at: at)?.price
            return (orgPrice(list, at: at), list)
        }

        private func orgPrice(_ list: Money?, at: Timestamp) -> Money? {
            guard !overrides.isEmpty else { return list }
            var best: OrgPrice?
            for o in overrides where o.from <= at {
                if let b = best, (b.specificity, b.from) > (o.specificity, o.from) { continue }
                best = o
            }
            guard let best else { return list }
            if let p = best.price { return p }
            guard let list else { return nil }
            return Money(micros: Int64(Int128(list.micros) * Int128(10_000 - best.discountBasisPoints!) / 10_000))
        }

        /// Moments in (from, to) at which the price may change.
        public func changes(from: Timestamp, to: Timestamp) -> [Timestamp] {
            var out: [Timestamp] = []
            func add(_ points: [PricePoint]?) {
                guard let points, let last = points.last, last.from > from else { return }
                for p in points.reversed() {
                    if p.from <= from { break }
                    if p.from < to { out.append(p.from) }
                }
            }
            add(exact)
            add(any)
            for o in overrides where o.from > from && o.from < to { out.append(o.from) }
            if out.count > 1 {
                // Sorted, then each moment once (in place: no set, no second list).
                out.sort()
                var kept = 1
                for i in 1..<out.count where out[i] != out[kept - 1] {
                    out[kept] = out[i]
                    kept += 1
                }
                out.removeLast(out.count - kept)
            }
            return out
        }
    }

    public func resolve(org: OrgID, _ sku: SKU) -> Resolved {
        let any = sku.region == SKU.anyRegion ? nil : list[SKU(gpuModel: sku.gpuModel, region: SKU.anyRegion, tier: sku.tier)]
        let mine = overrides.isEmpty ? [] : (overrides[org] ?? []).filter { $0.matches(sku) }
        return Resolved(exact: list[sku], any: any, overrides: mine)
    }

    /// The list point in force at `at`, for the exact region or else `*`.
    public func listPoint(_ sku: SKU, at: Timestamp) -> PricePoint? { resolve(org: OrgID(""), sku).listPoint(at: at) }

    static func point(_ points: [PricePoint]?, _ at: Timestamp) -> PricePoint? {
        guard let points, let first = points.first, first.from <= at else { return nil }
        if points.last!.from <= at { return points.last }
        var lo = 0
        var hi = points.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if points[mid].from <= at { lo = mid } else { hi = mid - 1 }
        }
        return points[lo]
    }

    /// What `org` pays per GPU-hour of `sku` at `at`, or nil when nothing prices it.
    public func price(org: OrgID, _ sku: SKU, at: Timestamp) -> Money? { resolve(org: org, sku).price(at: at) }

    /// Moments in (from, to) at which `org`'s price of `sku` may change.
    public func changes(org: OrgID, _ sku: SKU, from: Timestamp, to: Timestamp) -> [Timestamp] {
        resolve(org: org, sku).changes(from: from, to: to)
    }

    /// Prices a new deployment starts with, per GPU-hour in USD, from the public figures
    /// in docs/economics (CoreWeave list prices for on-demand; reserved at 80% of it; spot
    /// starting at 40%, where CoreWeave's spot sits). Operators change them with `stratus prices set`.
    public static let defaults: [(model: String, onDemand: String)] = [
        ("A100", "2.70"), ("H100", "6.16"), ("H200", "6.31"), ("B200", "8.60"), ("GB200", "10.50"),
    ]

    /// The defaults, effective from the start of the month that the late-usage window
    /// reaches back into, so that usage a source reports late is priced too.
    public static func defaultPoints(at: Timestamp) -> [(SKU, PricePoint)] {
        let from = Period(containing: at.adding(seconds: -Limits.defaultLateUsageWindowSeconds)).start
        return defaults.flatMap { d -> [(SKU, PricePoint)] in
            let od = Money.parse(d.onDemand)!
            func pct(_ p: Int64) -> Money { Money(micros: od.micros * p / 100 / Money.microsPerCent * Money.microsPerCent) }
            return [
                (SKU(gpuModel: d.model, region: SKU.anyRegion, tier: .onDemand), PricePoint(from: from, price: od)),
                (SKU(gpuModel: d.model, region: SKU.anyRegion, tier: .reserved), PricePoint(from: from, price: pct(80))),
                (SKU(gpuModel: d.model, region: SKU.anyRegion, tier: .spot), PricePoint(from: from, price: pct(40))),
            ]
        }
    }
}
