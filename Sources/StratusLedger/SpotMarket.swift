import StratusCore

/// The spot price of one GPU model in one region, from how much of it is spoken for.
///
/// Every `Limits.spotPriceIntervalSeconds` (5 minutes) the control plane computes, per
/// model and region:
///
///     committed = GPUs held by internal, reserved and on-demand work
///               + the part of the internal reserve (forecast) that internal work does not use yet
///     u         = min(1, committed / GPUs in service)                         (basis points)
///     target    = floor + (ceiling - floor) x u^2
///     next      = current + (target - current) / 4, rounded to the cent
///
/// `floor` and `ceiling` are shares of the on-demand list price (defaults 25% and 100%).
/// The square keeps spot cheap while there is plenty of surplus and steep as it runs out;
/// moving a quarter of the way each step makes the price slow-moving (half the gap closes
/// in about 12 minutes), like AWS's spot price since 2017. A price is recorded only when it
/// moves by a cent or more, so history stays small when nothing changes.
public struct SpotMarket: Codable, Equatable, Sendable {
    public var floorPercent: Int64 = 25
    public var ceilingPercent: Int64 = 100
    /// Share of the gap to the target closed per step, in percent.
    public var stepPercent: Int64 = 25

    public init() {}

    public struct Supply: Equatable, Sendable {
        public var gpus: Int
        public var committed: Int
        public init(gpus: Int, committed: Int) {
            self.gpus = gpus
            self.committed = committed
        }
    }

    /// Utilization in basis points (0...10_000).
    public static func utilizationBasisPoints(_ s: Supply) -> Int64 {
        guard s.gpus > 0 else { return 10_000 }
        return min(10_000, Int64(max(0, s.committed)) * 10_000 / Int64(s.gpus))
    }

    public func target(onDemand: Money, _ s: Supply) -> Money {
        let floor = onDemand.micros * floorPercent / 100
        let ceiling = onDemand.micros * ceilingPercent / 100
        let u = Self.utilizationBasisPoints(s)
        let price = Int128(floor) + Int128(ceiling - floor) * Int128(u * u) / 100_000_000
        return Money(micros: Int64(price))
    }

    /// The next price from the current one (nil: start at the target), to the cent.
    public func next(current: Money?, onDemand: Money, _ s: Supply) -> Money {
        let target = self.target(onDemand: onDemand, s)
        guard let current else { return Self.cents(target) }
        let moved = current.micros + (target.micros - current.micros) * stepPercent / 100
        var next = Self.cents(Money(micros: moved))
        // Always make progress of at least a cent toward a target a cent or more away.
        if next == current, abs(target.micros - current.micros) >= Money.microsPerCent {
            next = Money(micros: current.micros + (target > current ? Money.microsPerCent : -Money.microsPerCent))
        }
        return next
    }

    static func cents(_ m: Money) -> Money {
        Money(micros: (m.micros + Money.microsPerCent / 2) / Money.microsPerCent * Money.microsPerCent)
    }
}
