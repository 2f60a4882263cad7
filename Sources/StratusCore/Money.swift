/// An amount of money in micro-units (10^-6) of the deployment's currency. Integers
/// only: arithmetic that would overflow is an error, never a wrap or a rounding.
public struct Money: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public var micros: Int64

    public init(micros: Int64) { self.micros = micros }
    public init(cents: Int64) { self.micros = cents * Self.microsPerCent }

    public static let zero = Money(micros: 0)
    public static let microsPerUnit: Int64 = 1_000_000
    public static let microsPerCent: Int64 = 10_000
    /// The largest amount one price, deposit or limit may state (10^12 units), so that
    /// sums of many stay far from overflow.
    public static let maxAmount = Money(micros: 1_000_000_000_000 * microsPerUnit)

    public static func < (lhs: Money, rhs: Money) -> Bool { lhs.micros < rhs.micros }

    public func adding(_ other: Money) throws(StratusError) -> Money {
        let (sum, overflow) = micros.addingReportingOverflow(other.micros)
        guard !overflow else { throw StratusError(.invalidArgument, "amount overflows: \(self) + \(other)") }
        return Money(micros: sum)
    }

    public func subtracting(_ other: Money) throws(StratusError) -> Money {
        let (diff, overflow) = micros.subtractingReportingOverflow(other.micros)
        guard !overflow else { throw StratusError(.invalidArgument, "amount overflows: \(self) - \(other)") }
        return Money(micros: diff)
    }

    public static prefix func - (m: Money) -> Money { Money(micros: -m.micros) }

    /// `3.5`, `12`, `0.000001`: exact decimal text, at most six decimals.
    public static func parse(_ text: String) -> Money? {
        DecimalText.parse(text, scale: microsPerUnit).map { Money(micros: $0) }
    }

    /// Parses a non-negative amount no larger than `maxAmount`, or says why not.
    public static func parse(_ text: String, field: String) throws(StratusError) -> Money {
        guard let m = parse(text) else {
            let digits = text.drop { $0 == "-" }
            if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                digits.split(separator: ".").first.map({ $0.count > 12 }) == true
            {
                throw StratusError(.invalidArgument, "\(field): \(text) is larger than the limit \(maxAmount)")
            }
            throw StratusError(.invalidArgument, "\(field): '\(text)' is not an amount (e.g. 2.49, at most six decimals)")
        }
        try m.checkAmount(field: field)
        return m
    }

    public func checkAmount(field: String) throws(StratusError) {
        guard micros >= 0 else { throw StratusError(.invalidArgument, "\(field): must not be negative, got \(self)") }
        guard self <= Self.maxAmount else {
            throw StratusError(.invalidArgument, "\(field): \(self) is larger than the limit \(Self.maxAmount)")
        }
    }

    /// Two decimals at least (`12.30`), more only when the amount has them (`0.000691`).
    public var description: String {
        let negative = micros < 0
        let magnitude = micros.magnitude
        let whole = magnitude / UInt64(Self.microsPerUnit)
        var fraction = String(magnitude % UInt64(Self.microsPerUnit))
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.count > 2, fraction.last == "0" { fraction.removeLast() }
        return "\(negative ? "-" : "")\(whole).\(fraction)"
    }

    /// `gpuSeconds` at `pricePerGPUHour`, rounded half up to whole cents: the one rule by
    /// which Stratus turns time into money. Computed in 128 bits, so it cannot overflow
    /// for any amount `checkAmount` allows.
    public static func charge(gpuSeconds: Int64, pricePerGPUHour: Money) -> Money {
        let product = Int128(gpuSeconds) * Int128(pricePerGPUHour.micros)
        let perCent = Int128(3600) * Int128(microsPerCent)
        let cents = (product + perCent / 2) / perCent
        return Money(micros: Int64(clamping: cents * Int128(microsPerCent)))
    }
}

extension Money {
    public init(from decoder: any Decoder) throws {
        micros = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(micros)
    }
}

/// ISO 4217 codes Stratus knows. A deployment bills in one of them.
public enum Currency: String, Codable, Sendable, CaseIterable {
    case usd = "USD"
    case eur = "EUR"
    case gbp = "GBP"
    case jpy = "JPY"
    case chf = "CHF"
    case cad = "CAD"
    case aud = "AUD"
    case sgd = "SGD"

    public static func parse(_ text: String, field: String) throws(StratusError) -> Currency {
        guard let c = Currency(rawValue: text.uppercased()) else {
            throw StratusError(
                .invalidArgument,
                "\(field): unknown currency '\(text)' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return c
    }
}

/// A calendar month in UTC: the billing period.
public struct Period: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    /// Months since January of year 0.
    public let index: Int64

    public init(index: Int64) { self.index = index }

    /// What hash tables use: the index through `WordDigest`, keyed by the table's seed.
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(UInt64(bitPattern: index))
        return h.tableHash
    }

    public init(year: Int64, month: Int64) { self.index = year * 12 + (month - 1) }
    public init(containing t: Timestamp) {
        let (y, m, _) = Civil.date(days: Self.floorDiv(t.milliseconds, 86_400_000))
        self.init(year: y, month: m)
    }

    public var year: Int64 { Self.floorDiv(index, 12) }
    public var month: Int64 { index - year * 12 + 1 }
    public var start: Timestamp { Timestamp(milliseconds: Civil.days(year: year, month: month, day: 1) * 86_400_000) }
    public var end: Timestamp { next.start }
    public var next: Period { Period(index: index + 1) }
    public var previous: Period { Period(index: index - 1) }

    public static func < (lhs: Period, rhs: Period) -> Bool { lhs.index < rhs.index }

    public var description: String { "\(year)-\(month < 10 ? "0" : "")\(month)" }

    /// `2026-11`.
    public static func parse(_ text: String) -> Period? {
        let parts = text.split(separator: "-")
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let y = Int64(parts[0]), let m = Int64(parts[1]),
            (1...12).contains(m)
        else { return nil }
        return Period(year: y, month: m)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let p = Period.parse(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad period \(text)"))
        }
        self = p
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

extension Period: CodingKeyRepresentable {
    public var codingKey: any CodingKey { SpecValue.AnyKey(description) }
    public init?<T: CodingKey>(codingKey: T) {
        guard let p = Period.parse(codingKey.stringValue) else { return nil }
        self = p
    }
}

/// Proleptic Gregorian calendar arithmetic (H. Hinnant's algorithms), without Foundation.
public enum Civil {
    public static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public static func date(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
