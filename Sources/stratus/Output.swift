import Foundation

/// Human output: aligned tables and key/value lines. `--json` prints the server's JSON.
enum Output {
    static func table(_ headers: [String], _ rows: [[String]]) {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        print(line(headers))
        for row in rows { print(line(row)) }
    }

    static func json(_ data: Data) {
        if let obj = try? JSONSerialization.jsonObject(with: data),
            let pretty = try? JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        {
            print(String(decoding: pretty, as: UTF8.self))
        } else {
            print(String(decoding: data, as: UTF8.self))
        }
    }

    static func str(_ v: Any?) -> String {
        switch v {
        case nil, is NSNull: return "-"
        case let s as String: return s
        case let n as NSNumber: return n.stringValue
        case let a as [Any]: return a.map { str($0) }.joined(separator: ",")
        default: return "\(v!)"
        }
    }

    static func items(_ obj: [String: Any]) -> [[String: Any]] { obj["items"] as? [[String: Any]] ?? [] }

    /// "2026-11-23T06:15:20Z" -> "06:15:20" for today-ish tables.
    static func shortTime(_ v: Any?) -> String {
        guard let s = v as? String, s.count == 20 else { return str(v) }
        return String(s.dropFirst(11).prefix(8))
    }
}
