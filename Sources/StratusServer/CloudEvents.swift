import Foundation
import StratusCore
import StratusLedger

/// Usage posted by outside sources as CloudEvents 1.0 (structured JSON, or a batch: a
/// JSON array, `application/cloudevents-batch+json`). Extension attributes are ignored.
///
/// ```json
/// {"specversion": "1.0", "type": "dev.stratus.usage.gpu", "id": "a-1", "source": "aws/us-east-1",
///  "subject": "i-0abc", "time": "2026-11-23T10:00:00Z",
///  "data": {"org": "acme", "project": "train", "gpu_model": "H100", "region": "us-east",
///           "tier": "on-demand", "gpus": 8, "start": "2026-11-23T09:00:00Z", "end": "2026-11-23T10:00:00Z"}}
/// ```
enum CloudEvents {
    static let usageType = "dev.stratus.usage.gpu"

    struct Event: Decodable {
        let specversion: String
        let type: String
        let id: String
        let source: String
        let subject: String?
        let time: String?
        let datacontenttype: String?
        let data: Usage
    }

    struct Usage: Decodable {
        let org: String
        let project: String?
        let gpu_model: String
        let region: String?
        let tier: String
        let gpus: Int
        let start: String
        let end: String
    }

    /// Decodes a body into usage events, naming the first problem (`events[3].data.gpus: ...`).
    static func decode(_ body: Data) throws(StratusError) -> [UsageEvent] {
        let events: [Event]
        do {
            let trimmed = body.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
            if trimmed == UInt8(ascii: "[") {
                events = try JSONDecoder().decode([Event].self, from: body)
            } else {
                events = [try JSONDecoder().decode(Event.self, from: body)]
            }
        } catch let error as DecodingError {
            throw StratusError(.invalidArgument, describe(error))
        } catch {
            throw StratusError(.invalidArgument, "body: not JSON CloudEvents (\(error))")
        }
        guard !events.isEmpty else { throw StratusError(.invalidArgument, "events: the batch is empty") }
        guard events.count <= Limits.maxUsageEventsPerBatch else {
            throw StratusError(
                .limitExceeded, "events: at most \(Limits.maxUsageEventsPerBatch) per batch, got \(events.count)")
        }
        var out: [UsageEvent] = []
        out.reserveCapacity(events.count)
        for (i, e) in events.enumerated() {
            func bad(_ field: String, _ why: String) -> StratusError {
                StratusError(.invalidArgument, "events[\(i)].\(field): \(why)")
            }
            guard e.specversion == "1.0" else { throw bad("specversion", "must be \"1.0\", got \"\(e.specversion)\"") }
            guard e.type == usageType else { throw bad("type", "must be \"\(usageType)\", got \"\(e.type)\"") }
            if let t = e.time, ISO8601.parse(t) == nil { throw bad("time", "'\(t)' is not an RFC 3339 time") }
            if let c = e.datacontenttype, !c.hasPrefix("application/json") {
                throw bad("datacontenttype", "must be application/json")
            }
            guard let tier = Tier(rawValue: e.data.tier) else {
                throw bad(
                    "data.tier", "'\(e.data.tier)' is not one of \(Tier.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let start = ISO8601.parse(e.data.start) else {
                throw bad("data.start", "'\(e.data.start)' is not an RFC 3339 time")
            }
            guard let end = ISO8601.parse(e.data.end) else { throw bad("data.end", "'\(e.data.end)' is not an RFC 3339 time") }
            let model = GPUCatalog.model(named: e.data.gpu_model)?.name ?? e.data.gpu_model
            out.append(
                UsageEvent(
                    source: e.source, id: e.id, org: OrgID(e.data.org), project: e.data.project ?? InternalOrg.defaultProject,
                    gpuModel: model, region: e.data.region ?? SKU.anyRegion, tier: tier, gpus: e.data.gpus, start: start,
                    end: end, subject: e.subject))
        }
        return out
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            "events" + keys.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
        }
        switch error {
        case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])): required"
        case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)): expected \(type)"
        case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)): expected \(type), got null"
        case .dataCorrupted(let ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "body: \(error)"
        }
    }
}
