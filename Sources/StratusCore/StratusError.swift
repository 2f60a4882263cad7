/// The one error type that crosses module boundaries. `code` is machine-readable and
/// stable (it becomes the HTTP status and the JSON `error.code`); `message` is for people
/// and names the field or object at fault.
public struct StratusError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        case invalidArgument = "invalid_argument"
        case unknownField = "unknown_field"
        case unauthenticated
        case permissionDenied = "permission_denied"
        case notFound = "not_found"
        case alreadyExists = "already_exists"
        case idempotencyMismatch = "idempotency_key_reused"
        case failedPrecondition = "failed_precondition"
        case payloadTooLarge = "payload_too_large"
        case limitExceeded = "limit_exceeded"
        case unavailable
        case `internal`
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func notFound(_ what: String, _ id: String) -> StratusError {
        StratusError(.notFound, "\(what) '\(id)' not found")
    }
}
