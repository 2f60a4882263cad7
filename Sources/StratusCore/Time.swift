/// A point in time: milliseconds since the Unix epoch. The pure core never reads a
/// clock; the shell stamps every command with one of these.
public struct Timestamp: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public init(seconds: Int64) { self.milliseconds = seconds * 1000 }

    public static let zero = Timestamp(milliseconds: 0)

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public func adding(seconds: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + seconds * 1000) }

    /// Milliseconds from `self` to `later`, never negative.
    public func milliseconds(until later: Timestamp) -> Int64 { max(0, later.milliseconds - milliseconds) }

    public var description: String { ISO8601.format(self) }

    public init(from decoder: any Decoder) throws {
        milliseconds = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(milliseconds)
    }
}

/// RFC 3339 / ISO 8601 in UTC, computed without Foundation (civil-from-days, H. Hinnant).
public enum ISO8601 {
    public static func format(_ t: Timestamp) -> String {
        let ms = t.milliseconds
        var days = ms / 86_400_000
        var rem = ms % 86_400_000
        if rem < 0 {
            rem += 86_400_000
            days -= 1
        }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        let h = rem / 3_600_000
        let mi = rem / 60_000 % 60
        let s = rem / 1000 % 60
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2))Z"
    }
}

/// Durations as people write them in specs: `90`, `90s`, `15m`, `2h`, `1h30m`, `3d`.
public enum DurationText {
    public static func parseSeconds(_ text: String, field: String) throws(StratusError) -> Int64 {
        let trimmed = text.trimmingSpaces()
        guard !trimmed.isEmpty else { throw StratusError(.invalidArgument, "\(field): empty duration") }
        if let plain = Int64(trimmed) { return plain }
        var total: Int64 = 0
        var digits = ""
        var sawUnit = false
        for ch in trimmed {
            if ch.isASCII, ch.isNumber {
                digits.append(ch)
                continue
            }
            let unit: Int64
            switch ch {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default:
                throw StratusError(
                    .invalidArgument, "\(field): '\(text)' is not a duration (use e.g. 90s, 15m, 2h, 1h30m, 3d)")
            }
            guard let value = Int64(digits) else {
                throw StratusError(
                    .invalidArgument, "\(field): '\(text)' is not a duration (use e.g. 90s, 15m, 2h, 1h30m, 3d)")
            }
            // Callers bound durations by what they are for; here only what fits.
            let (seconds, o1) = value.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(seconds)
            guard !o1, !o2 else { throw StratusError(.invalidArgument, "\(field): '\(text)' is too long") }
            total = sum
            digits = ""
            sawUnit = true
        }
        guard digits.isEmpty, sawUnit else {
            throw StratusError(.invalidArgument, "\(field): '\(text)' is not a duration (use e.g. 90s, 15m, 2h, 1h30m, 3d)")
        }
        return total
    }

    public static func format(seconds: Int64) -> String {
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}

extension String {
    package func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
