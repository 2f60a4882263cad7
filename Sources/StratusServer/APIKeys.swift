import Crypto
import StratusCore

/// API key secrets: `sk_` followed by 40 hex digits (160 random bits from the system's
/// cryptographic generator). Only the SHA-256 of a secret is ever stored.
public enum APIKeySecret {
    public static let prefix = "sk_"

    public static func generate() -> String { generate(prefix: prefix) }

    static func generate(prefix: String) -> String {
        var rng = SystemRandomNumberGenerator()
        var hex = ""
        for _ in 0..<20 {
            let byte = UInt8.random(in: 0...255, using: &rng)
            hex += String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
        }
        return prefix + hex
    }

    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).map { String(format2: $0) }.joined()
    }

    /// The part of a secret shown in listings.
    public static func hint(_ secret: String) -> String { String(secret.prefix(prefix.count + 6)) + "..." }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}

/// Agent token secrets: `sa_` and 40 hex digits, hashed like API keys. The prefix keeps
/// the two kinds of credential apart at the door.
public enum AgentTokenSecret {
    public static let prefix = "sa_"
    public static func generate() -> String { APIKeySecret.generate(prefix: prefix) }
    public static func hint(_ secret: String) -> String { String(secret.prefix(prefix.count + 6)) + "..." }
}
