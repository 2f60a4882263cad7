import Foundation
import StratusCore
import Yams

/// Turns YAML or JSON text into the `SpecValue` tree the core validates.
public enum SpecDocument {
    public static func parseYAML(_ text: String) throws(StratusError) -> SpecValue {
        let node: Yams.Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw StratusError(.invalidArgument, "malformed YAML: \(error)")
        }
        guard let node else { throw StratusError(.invalidArgument, "empty document") }
        return try convert(node)
    }

    public static func parseJSON(_ data: Data) throws(StratusError) -> SpecValue {
        guard !data.isEmpty else { throw StratusError(.invalidArgument, "request body: empty, expected JSON") }
        do {
            return try JSONDecoder().decode(SpecValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw StratusError(.invalidArgument, "malformed JSON: \(detail ?? context.debugDescription)")
        } catch {
            throw StratusError(.invalidArgument, "malformed JSON: \(error)")
        }
    }

    static func convert(_ node: Yams.Node) throws(StratusError) -> SpecValue {
        switch node {
        case .scalar(let scalar):
            switch node.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(SpecValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(SpecValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let seq):
            var items: [SpecValue] = []
            for item in seq { items.append(try convert(item)) }
            return .array(items)
        case .mapping(let map):
            var pairs: [(key: String, value: SpecValue)] = []
            for (k, v) in map {
                guard let key = k.string else { throw StratusError(.invalidArgument, "mapping keys must be strings") }
                pairs.append((key, try convert(v)))
            }
            return .object(pairs)
        case .alias:
            throw StratusError(.invalidArgument, "YAML aliases are not supported in specs")
        }
    }
}
