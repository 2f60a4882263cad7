/// A parsed YAML or JSON document as a plain tree. The shell turns bytes into a
/// `SpecValue` (Yams for YAML, JSONDecoder for JSON); the core reads specs from it
/// strictly, so both formats get the same validation and the same error messages.
public enum SpecValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([SpecValue])
    case object([(key: String, value: SpecValue)])

    public static func == (lhs: SpecValue, rhs: SpecValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "a mapping"
        }
    }
}

extension SpecValue: Codable {
    public init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var items: [SpecValue] = []
            while !array.isAtEnd { items.append(try array.decode(SpecValue.self)) }
            self = .array(items)
            return
        }
        if let object = try? decoder.container(keyedBy: AnyKey.self) {
            var pairs: [(key: String, value: SpecValue)] = []
            for key in object.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                pairs.append((key.stringValue, try object.decode(SpecValue.self, forKey: key)))
            }
            self = .object(pairs)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let b = try? single.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? single.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? single.decode(Double.self) {
            self = .double(d)
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .int(let i):
            var c = encoder.singleValueContainer()
            try c.encode(i)
        case .double(let d):
            var c = encoder.singleValueContainer()
            try c.encode(d)
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .array(let items):
            var c = encoder.unkeyedContainer()
            for item in items { try c.encode(item) }
        case .object(let pairs):
            var c = encoder.container(keyedBy: AnyKey.self)
            for pair in pairs { try c.encode(pair.value, forKey: AnyKey(pair.key)) }
        }
    }

    package struct AnyKey: CodingKey {
        package var stringValue: String
        package var intValue: Int? { nil }
        package init(_ s: String) { stringValue = s }
        package init?(stringValue: String) { self.stringValue = stringValue }
        package init?(intValue: Int) { nil }
    }
}

/// Reads one mapping of a spec strictly: every key must be known, every value of the
/// right kind; errors name the full path (`resources.accelerators`).
public struct SpecObject {
    public let path: String
    private let pairs: [(key: String, value: SpecValue)]
    private var used: Set<String> = []

    public init(_ value: SpecValue, path: String) throws(StratusError) {
        guard case .object(let pairs) = value else {
            throw StratusError(.invalidArgument, "\(path.isEmpty ? "document" : path): expected a mapping, got \(value.kindName)")
        }
        self.path = path
        self.pairs = pairs
    }

    public func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public mutating func value(_ key: String) -> SpecValue? {
        used.insert(key)
        guard let v = pairs.first(where: { $0.key == key })?.value else { return nil }
        if case .null = v { return nil }
        return v
    }

    public mutating func string(_ key: String) throws(StratusError) -> String? {
        guard let v = value(key) else { return nil }
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: throw StratusError(.invalidArgument, "\(field(key)): expected a string, got \(v.kindName)")
        }
    }

    public mutating func bool(_ key: String) throws(StratusError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else {
            throw StratusError(.invalidArgument, "\(field(key)): expected true or false, got \(v.kindName)")
        }
        return b
    }

    public mutating func requiredString(_ key: String) throws(StratusError) -> String {
        guard let s = try string(key) else { throw StratusError(.invalidArgument, "\(field(key)): required") }
        return s
    }

    public mutating func int(_ key: String) throws(StratusError) -> Int64? {
        guard let v = value(key) else { return nil }
        switch v {
        case .int(let i): return i
        case .string(let s):
            if let i = Int64(s.trimmingSpaces()) { return i }
            fallthrough
        default: throw StratusError(.invalidArgument, "\(field(key)): expected an integer, got \(v.kindName)")
        }
    }

    /// A decimal given as a number or a string, kept exact as an integer count of
    /// `1/scale` units (e.g. `pue: 1.25` with scale 1000 is 1250).
    public mutating func decimal(_ key: String, scale: Int64) throws(StratusError) -> Int64? {
        guard let v = value(key) else { return nil }
        let text: String
        switch v {
        case .int(let i): return i * scale
        case .double(let d): text = String(d)
        case .string(let s): text = s.trimmingSpaces()
        default: throw StratusError(.invalidArgument, "\(field(key)): expected a number, got \(v.kindName)")
        }
        guard let parsed = DecimalText.parse(text, scale: scale) else {
            throw StratusError(
                .invalidArgument, "\(field(key)): '\(text)' is not a number with at most \(String(scale).count - 1) decimals")
        }
        return parsed
    }

    public mutating func array(_ key: String) throws(StratusError) -> [SpecValue]? {
        guard let v = value(key) else { return nil }
        guard case .array(let items) = v else {
            throw StratusError(.invalidArgument, "\(field(key)): expected a list, got \(v.kindName)")
        }
        return items
    }

    public mutating func object(_ key: String) throws(StratusError) -> SpecObject? {
        guard let v = value(key) else { return nil }
        return try SpecObject(v, path: field(key))
    }

    /// A mapping of strings to strings (environment variables, labels).
    public mutating func stringMap(_ key: String) throws(StratusError) -> [String: String]? {
        guard let v = value(key) else { return nil }
        guard case .object(let pairs) = v else {
            throw StratusError(.invalidArgument, "\(field(key)): expected a mapping, got \(v.kindName)")
        }
        var out: [String: String] = [:]
        for pair in pairs {
            switch pair.value {
            case .string(let s): out[pair.key] = s
            case .int(let i): out[pair.key] = String(i)
            case .bool(let b): out[pair.key] = b ? "true" : "false"
            case .double(let d): out[pair.key] = String(d)
            default:
                throw StratusError(.invalidArgument, "\(field(key)).\(pair.key): expected a string, got \(pair.value.kindName)")
            }
        }
        return out
    }

    /// A node selector: labels to values, where a list of values means any one of them
    /// (`{fabric: infiniband, gpu: [V100M16, V100M32]}`); a list of one is that value.
    public mutating func selector(_ key: String) throws(StratusError) -> ([String: String], [String: [String]]) {
        guard let v = value(key) else { return ([:], [:]) }
        guard case .object(let pairs) = v else {
            throw StratusError(.invalidArgument, "\(field(key)): expected a mapping, got \(v.kindName)")
        }
        var exact: [String: String] = [:]
        var anyOf: [String: [String]] = [:]
        for pair in pairs {
            func text(_ item: SpecValue) throws(StratusError) -> String {
                switch item {
                case .string(let s): return s
                case .int(let i): return String(i)
                case .bool(let b): return b ? "true" : "false"
                case .double(let d): return String(d)
                default:
                    throw StratusError(
                        .invalidArgument, "\(field(key)).\(pair.key): expected a string or a list of them, got \(item.kindName)")
                }
            }
            if case .array(let items) = pair.value {
                guard !items.isEmpty, items.count <= Limits.maxSelectorValues else {
                    throw StratusError(
                        .invalidArgument, "\(field(key)).\(pair.key): 1 to \(Limits.maxSelectorValues) values")
                }
                var values: [String] = []
                for item in items { values.append(try text(item)) }
                if values.count == 1 { exact[pair.key] = values[0] } else { anyOf[pair.key] = values }
            } else {
                exact[pair.key] = try text(pair.value)
            }
        }
        return (exact, anyOf)
    }

    /// A list of names (`[us-east, eu-west]`) or one name.
    public mutating func nameList(_ key: String) throws(StratusError) -> [String] {
        guard let v = value(key) else { return [] }
        let items: [SpecValue]
        if case .array(let list) = v { items = list } else { items = [v] }
        var names: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let name) = item else {
                throw StratusError(.invalidArgument, "\(field(key))[\(i)]: expected a name, got \(item.kindName)")
            }
            try Name.validate(name, field: "\(field(key))[\(i)]")
            names.append(name)
        }
        return names
    }

    /// Fails on any key that no reader asked for.
    public func finish() throws(StratusError) {
        for pair in pairs where !used.contains(pair.key) {
            throw StratusError(.unknownField, "\(field(pair.key)): unknown field")
        }
    }
}

/// Exact decimal parsing into scaled integers; no floating point on the way.
public enum DecimalText {
    public static func parse(_ text: String, scale: Int64) -> Int64? {
        var digitsAllowed = 0
        var s = scale
        while s > 1 {
            guard s % 10 == 0 else { return nil }
            s /= 10
            digitsAllowed += 1
        }
        var negative = false
        var body = Substring(text)
        if body.first == "-" {
            negative = true
            body = body.dropFirst()
        }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = Int64(parts[0]), whole >= 0 else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            var frac = String(parts[1])
            while frac.count > digitsAllowed, frac.last == "0" { frac.removeLast() }
            guard frac.count <= digitsAllowed, frac.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            frac += String(repeating: "0", count: digitsAllowed - frac.count)
            fraction = frac.isEmpty ? 0 : Int64(frac)!
        }
        let (product, overflow) = whole.multipliedReportingOverflow(by: scale)
        guard !overflow else { return nil }
        let value = product + fraction
        return negative ? -value : value
    }

    public static func format(_ value: Int64, scale: Int64) -> String {
        let whole = value / scale
        var frac = String(abs(value % scale))
        let width = String(scale).count - 1
        frac = String(repeating: "0", count: max(0, width - frac.count)) + frac
        while frac.last == "0" { frac.removeLast() }
        return frac.isEmpty ? "\(whole)" : "\(whole).\(frac)"
    }
}
