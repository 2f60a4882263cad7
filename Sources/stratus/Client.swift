import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import StratusCore
import StratusServer

/// Where the CLI finds the server and its key: flags, then `STRATUS_URL` /
/// `STRATUS_API_KEY`, then the config file `stratus login` writes.
struct CLIConfig: Codable {
    var url: String?
    var apiKey: String?

    static var path: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["STRATUS_CONFIG"], !p.isEmpty { return p }
        let base = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(NSHomeDirectory())/.config"
        return "\(base)/stratus/config.json"
    }

    static func load() -> CLIConfig {
        guard let data = FileManager.default.contents(atPath: path),
            let config = try? JSONDecoder().decode(CLIConfig.self, from: data)
        else { return CLIConfig() }
        return config
    }

    func save() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: (Self.path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard fm.createFile(atPath: Self.path, contents: try encoder.encode(self), attributes: [.posixPermissions: 0o600])
        else { throw CLIError("cannot write \(Self.path)") }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A failed API call, with the server's error code and message.
struct APIFailure: Error, CustomStringConvertible {
    let status: Int
    let code: String
    let message: String
    var description: String { "\(message) (\(code), HTTP \(status))" }
}

struct APIClient {
    let baseURL: String
    let apiKey: String?

    static let maxResponseBytes = 64 << 20

    /// Sends a request and returns the JSON body; API errors become `APIFailure`.
    func call(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws
        -> Data
    {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError("cannot reach \(baseURL): \(error) (is 'stratus up' running? set STRATUS_URL or run 'stratus login')")
        }
        let buffer = try await response.body.collect(upTo: Self.maxResponseBytes)
        let data = Data(buffer.readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let err = obj["error"] as? [String: Any]
            {
                throw APIFailure(
                    status: Int(response.status.code), code: err["code"] as? String ?? "unknown",
                    message: err["message"] as? String ?? "")
            }
            throw APIFailure(
                status: Int(response.status.code), code: "http_error", message: String(decoding: data, as: UTF8.self))
        }
        return data
    }

    func object(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws
        -> [String: Any]
    {
        let data = try await call(method, path, body: body, headers: headers)
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIError("unexpected response from server")
        }
        return obj
    }
}

/// Reads a YAML or JSON spec file (YAML is a superset of JSON) with a size limit.
func readSpecFile(_ path: String) throws -> SpecValue {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw CLIError("\(path): cannot read file") }
    defer { try? handle.close() }
    let data = try handle.read(upToCount: Limits.maxSpecFileBytes + 1) ?? Data()
    guard data.count <= Limits.maxSpecFileBytes else {
        throw CLIError("\(path): larger than \(Limits.maxSpecFileBytes) bytes")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(path): not UTF-8 text") }
    let result = Result { () throws(StratusError) -> SpecValue in try SpecDocument.parseYAML(text) }
    switch result {
    case .success(let value): return value
    case .failure(let e): throw CLIError("\(path): \(e.message)")
    }
}

func jsonData(_ value: SpecValue) throws -> Data { try JSONEncoder().encode(value) }

func jsonData(_ dict: [String: Any]) throws -> Data { try JSONSerialization.data(withJSONObject: dict) }

func percentEncode(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}
