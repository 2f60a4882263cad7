/// Text for HTML pages the project writes (invoices, simulation reports).
public enum HTML {
    /// `&`, `<`, `>` and `"` as entities: safe in element text and quoted attributes.
    public static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }
}
