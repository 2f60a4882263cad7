import Foundation
import Hummingbird
import Logging
import StratusCore

/// Per-request context: Hummingbird's core storage plus the authenticated caller.
public struct StratusContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The node agent's token, on agent endpoints.
    public var agentToken: AgentToken?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { Limits.maxRequestBodyBytes }

    /// The caller; routes behind `AuthMiddleware` always have one.
    func caller() throws(StratusError) -> Principal {
        guard let principal else { throw StratusError(.unauthenticated, "missing API key") }
        return principal
    }
}

/// Maps every error to one JSON shape: `{"error": {"code": ..., "message": ...}}`.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = StratusContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as StratusError {
            return APIError.response(error)
        } catch let error as any HTTPResponseError {
            let code: StratusError.Code =
                switch error.status {
                case .notFound: .notFound
                case .contentTooLarge: .payloadTooLarge
                case .methodNotAllowed: .notFound
                case .unauthorized: .unauthenticated
                default: error.status.code < 500 ? .invalidArgument : .internal
                }
            let message: String =
                switch error.status {
                case .notFound: "no route for \(request.method) \(request.uri.path)"
                case .contentTooLarge: "request body larger than \(Limits.maxRequestBodyBytes) bytes"
                default: "\(error.status.reasonPhrase)"
                }
            return APIError.response(StratusError(code, message), status: error.status)
        } catch {
            context.logger.error("internal error on \(request.method) \(request.uri.path): \(error)")
            return APIError.response(StratusError(.internal, "internal error"))
        }
    }
}

enum APIError {
    static func status(for code: StratusError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument, .unknownField: .badRequest
        case .unauthenticated: .unauthorized
        case .permissionDenied: .forbidden
        case .notFound: .notFound
        case .alreadyExists, .idempotencyMismatch, .failedPrecondition: .conflict
        case .payloadTooLarge: .contentTooLarge
        case .limitExceeded: .unprocessableContent
        case .unavailable: .serviceUnavailable
        case .internal: .internalServerError
        }
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            let code: String
            let message: String
        }
        let error: Detail
    }

    static func response(_ error: StratusError, status: HTTPResponse.Status? = nil) -> Response {
        JSON.response(
            Body(error: .init(code: error.code.rawValue, message: error.message)), status: status ?? Self.status(for: error.code))
    }
}

extension Request {
    /// The secret of `Authorization: Bearer <secret>`, or an `unauthenticated` error that
    /// shows the expected form with `example`.
    func bearerSecret(example: String) throws(StratusError) -> String {
        guard let header = headers[.authorization] else {
            throw StratusError(.unauthenticated, "missing Authorization header (use 'Authorization: Bearer \(example)')")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw StratusError(.unauthenticated, "Authorization header must be 'Bearer \(example)'")
        }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}

/// Authenticates `Authorization: Bearer <key>` on every request it wraps.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = StratusContext
    let plane: ControlPlane

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let secret = try request.bearerSecret(example: "sk_...")
        if secret.hasPrefix(AgentTokenSecret.prefix) {
            throw StratusError(.permissionDenied, "agent tokens can call the agent endpoints (/v1/agent/...) only")
        }
        guard secret.hasPrefix(APIKeySecret.prefix), secret.utf8.count <= 200,
            let principal = await plane.authenticate(secretHash: APIKeySecret.hash(secret))
        else {
            throw StratusError(.unauthenticated, "invalid or revoked API key")
        }
        var context = context
        context.principal = principal
        return try await next(request, context)
    }
}

/// Authenticates node agents on `/v1/agent/...`: agent tokens only, never API keys.
struct AgentAuthMiddleware: RouterMiddleware {
    typealias Context = StratusContext
    let plane: ControlPlane

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let secret = try request.bearerSecret(example: "sa_...")
        if secret.hasPrefix(APIKeySecret.prefix) {
            throw StratusError(
                .permissionDenied, "API keys cannot call agent endpoints; agents use agent tokens (stratus nodes token create)")
        }
        guard secret.hasPrefix(AgentTokenSecret.prefix), secret.utf8.count <= 200,
            let token = await plane.authenticateAgent(secretHash: APIKeySecret.hash(secret))
        else {
            context.logger.warning("agent request with an invalid or revoked token on \(request.uri.path)")
            throw StratusError(.unauthenticated, "invalid or revoked agent token")
        }
        var context = context
        context.agentToken = token
        return try await next(request, context)
    }
}

enum JSON {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":{"code":"internal","message":"encoding failed"}}"#.utf8)
        var body = data
        body.append(0x0A)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Reads the raw request body, enforcing `limit`.
    static func rawBody(_ request: Request, limit: Int) async throws -> Data {
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch {
            throw StratusError(.payloadTooLarge, "request body larger than \(limit) bytes")
        }
    }

    /// Reads the request body as a spec tree, enforcing the body limit.
    static func body(_ request: Request) async throws -> SpecValue {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Limits.maxRequestBodyBytes)
        } catch {
            throw StratusError(.payloadTooLarge, "request body larger than \(Limits.maxRequestBodyBytes) bytes")
        }
        return try SpecDocument.parseJSON(Data(buffer.readableBytesView))
    }
}

extension Request {
    func query(_ name: String) -> String? { uri.queryParameters.get(name) }

    func queryInt(_ name: String) throws(StratusError) -> Int? {
        guard let text = query(name) else { return nil }
        guard let value = Int(text) else { throw StratusError(.invalidArgument, "\(name): '\(text)' is not an integer") }
        return value
    }
}
