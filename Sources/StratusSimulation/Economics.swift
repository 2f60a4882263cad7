import StratusCore

/// What one installed GPU costs a year, from capex, useful life, facility, O&M, power and
/// the cost of capital, in exact integer micro-dollars. The model of economics.md:
///
///     GPU capex / life + facility capex per GPU / facility life
///       + O&M (a share of GPU capex and of facility capex, each year)
///       + power (kW per GPU at the wall x 8,760 h x price per MWh / 1,000)
///       + cost of capital (a rate on the GPU capex, when set)
public struct GPUEconomics: Codable, Equatable, Sendable {
    public var gpuCapex: Money
    public var gpuLifeYears: Int64
    public var facilityCapexPerGPU: Money
    public var facilityLifeYears: Int64
    /// Yearly O&M as basis points of the GPU capex and of the facility capex.
    public var gpuOMBasisPoints: Int64
    public var facilityOMBasisPoints: Int64
    /// Power per GPU at the wall (PUE included), in watts.
    public var wallWatts: Int64
    public var electricityPerMWh: Money
    /// Yearly cost of capital as basis points of the GPU capex (0: none).
    public var capitalBasisPoints: Int64

    public init(
        gpuCapex: Money, gpuLifeYears: Int64, facilityCapexPerGPU: Money, facilityLifeYears: Int64,
        gpuOMBasisPoints: Int64, facilityOMBasisPoints: Int64, wallWatts: Int64, electricityPerMWh: Money,
        capitalBasisPoints: Int64 = 0
    ) {
        self.gpuCapex = gpuCapex
        self.gpuLifeYears = gpuLifeYears
        self.facilityCapexPerGPU = facilityCapexPerGPU
        self.facilityLifeYears = facilityLifeYears
        self.gpuOMBasisPoints = gpuOMBasisPoints
        self.facilityOMBasisPoints = facilityOMBasisPoints
        self.wallWatts = wallWatts
        self.electricityPerMWh = electricityPerMWh
        self.capitalBasisPoints = capitalBasisPoints
    }

    public static let hoursPerYear: Int64 = 8760

    /// The H100 of economics.md: $47.5k with its share of the fabric, 5 years; facility
    /// $16.8k per GPU over 15 years; O&M 5% of IT and 2% of facility a year; 1.75 kW at
    /// the wall; $80 per MWh.
    public static let h100 = GPUEconomics(
        gpuCapex: Money(micros: 47_500_000_000), gpuLifeYears: 5, facilityCapexPerGPU: Money(micros: 16_800_000_000),
        facilityLifeYears: 15, gpuOMBasisPoints: 500, facilityOMBasisPoints: 200, wallWatts: 1750,
        electricityPerMWh: Money(micros: 80_000_000))

    public struct Breakdown: Codable, Equatable, Sendable {
        public let depreciation: Money
        public let facility: Money
        public let operations: Money
        public let power: Money
        public let capital: Money
        public var total: Money {
            Money(micros: depreciation.micros + facility.micros + operations.micros + power.micros + capital.micros)
        }
    }

    /// The cost of one installed GPU for a year, by kind.
    public var yearly: Breakdown {
        let power = Int128(wallWatts) * Int128(Self.hoursPerYear) * Int128(electricityPerMWh.micros) / 1_000_000
        return Breakdown(
            depreciation: Money(micros: gpuCapex.micros / gpuLifeYears),
            facility: Money(micros: facilityCapexPerGPU.micros / facilityLifeYears),
            operations: Money(
                micros: (gpuCapex.micros * gpuOMBasisPoints + facilityCapexPerGPU.micros * facilityOMBasisPoints) / 10_000),
            power: Money(micros: Int64(power)),
            capital: Money(micros: gpuCapex.micros * capitalBasisPoints / 10_000))
    }

    /// Per installed GPU-hour, in micro-dollars (rounded down).
    public var perInstalledHour: Money { Money(micros: yearly.total.micros / Self.hoursPerYear) }

    /// Per used GPU-hour at `utilizationBasisPoints` of the hours (7,000 is 70%).
    public func perUsedHour(utilizationBasisPoints: Int64) -> Money {
        precondition(utilizationBasisPoints > 0)
        return Money(micros: yearly.total.micros * 10_000 / (Self.hoursPerYear * utilizationBasisPoints))
    }
}
