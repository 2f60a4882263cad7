import StratusCore

/// Invoices as CSV, a printable HTML page and a FinOps FOCUS 1.0 cost export.
extension Invoice {
    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
    }

    static func csvRow(_ fields: [String]) -> String { fields.map(csvField).joined(separator: ",") + "\n" }

    /// One row per line and credit, then the totals; amounts in the currency's units.
    public var csv: String {
        var out = Self.csvRow([
            "invoice", "org", "period", "kind", "for_period", "project", "gpu_model", "region", "tier", "gpu_seconds",
            "gpu_hours", "unit_price", "amount", "currency",
        ])
        for l in lines {
            out += Self.csvRow([
                id, org.rawValue, period.description, l.kind.rawValue, l.forPeriod?.description ?? "", l.project, l.gpuModel,
                l.region, l.tier.rawValue, String(l.gpuSeconds), Self.gpuHours(l.gpuSeconds), l.unitPrice.description,
                l.amount.description, currency.rawValue,
            ])
        }
        for c in credits {
            out += Self.csvRow([
                id, org.rawValue, period.description, "credit", "", "", "", "", "", "", "", "", (-c.amount).description,
                currency.rawValue,
            ])
        }
        for f in fees {
            out += Self.csvRow([
                id, org.rawValue, period.description, "fee", "", "", "", "", "", "", "", "", f.amount.description,
                currency.rawValue,
            ])
        }
        for (name, value) in [("total", total), ("paid_from_wallet", paidFromWallet), ("amount_due", amountDue)] {
            out += Self.csvRow([
                id, org.rawValue, period.description, name, "", "", "", "", "", "", "", "", value.description, currency.rawValue,
            ])
        }
        return out
    }

    /// A self-contained page that prints on one sheet per few dozen lines.
    public func htmlPage(orgName: String) -> String {
        let h = HTML.escape
        var rows = ""
        for l in lines {
            let what =
                l.kind == .usage
                ? "\(h(l.project)) · \(h(l.gpuModel)) · \(h(l.region)) · \(l.tier.rawValue)"
                : "Adjustment for \(l.forPeriod!.description): \(h(l.project)) · \(h(l.gpuModel)) · \(h(l.region)) · \(l.tier.rawValue)"
            rows +=
                "<tr><td>\(what)</td><td class=n>\(Self.gpuHours(l.gpuSeconds))</td><td class=n>\(l.unitPrice)</td><td class=n>\(l.amount)</td></tr>\n"
        }
        for f in fees {
            rows += "<tr><td>\(h(f.description))</td><td></td><td></td><td class=n>\(f.amount)</td></tr>\n"
        }
        for c in credits {
            rows += "<tr><td>Credit: \(h(c.description))</td><td></td><td></td><td class=n>-\(c.amount)</td></tr>\n"
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>Invoice \(h(id))</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:50em;color:#111}
            table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;border-bottom:1px solid #ddd;text-align:left}
            .n{text-align:right;font-variant-numeric:tabular-nums}tfoot td{font-weight:600;border:0}
            @media print{body{margin:0}}
            </style></head><body>
            <h1>Invoice \(h(id))</h1>
            <p>Bill to: <b>\(h(orgName))</b> (\(h(org.rawValue)))<br>Period: \(period) (\(period.start) to \(period.end))<br>
            Issued: \(issuedAt)<br>Currency: \(currency.rawValue)</p>
            <table><thead><tr><th>Item</th><th class=n>GPU-hours</th><th class=n>Unit price / GPU-hour</th><th class=n>Amount</th></tr></thead>
            <tbody>
            \(rows)</tbody>
            <tfoot>
            <tr><td colspan=3>Usage</td><td class=n>\(usageTotal)</td></tr>
            <tr><td colspan=3>Adjustments</td><td class=n>\(adjustmentsTotal)</td></tr>
            <tr><td colspan=3>Capacity blocks and true-ups</td><td class=n>\(feesTotal)</td></tr>
            <tr><td colspan=3>Credits</td><td class=n>-\(creditsTotal)</td></tr>
            <tr><td colspan=3>Total</td><td class=n>\(total)</td></tr>
            <tr><td colspan=3>Paid from prepaid balance</td><td class=n>-\(paidFromWallet)</td></tr>
            <tr><td colspan=3>Amount due</td><td class=n>\(amountDue)</td></tr>
            </tfoot></table>
            <p>GPU time is billed per second and rounded to the cent per line.</p>
            </body></html>

            """
    }

    /// FOCUS 1.0 columns, in the specification's order.
    public static let focusColumns = [
        "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
        "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd",
        "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
        "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
        "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
        "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
    ]

    /// The invoice as FOCUS rows (header first unless `header` is false). Quantities are
    /// GPU-hours with six decimals; costs are exact.
    public func focusCSV(orgName: String, provider: String = "Stratus", header: Bool = true) -> String {
        var out = header ? Self.csvRow(Self.focusColumns) : ""
        let start = period.start.description
        let end = period.end.description
        func hours(_ s: Int64) -> String {
            DecimalText.format(Int64((Int128(s) * 1_000_000 + 1800) / 3600), scale: 1_000_000)
        }
        for l in lines {
            let (chargeStart, chargeEnd) =
                l.kind == .adjustment ? (l.forPeriod!.start.description, l.forPeriod!.end.description) : (start, end)
            let listCost = Money.charge(gpuSeconds: l.gpuSeconds, pricePerGPUHour: l.listPrice)
            let sku = "\(l.gpuModel)-\(l.tier.rawValue)"
            let pricing =
                l.tier == .spot ? "Dynamic" : l.tier == .reserved ? "Committed" : "Standard"
            out += Self.csvRow([
                l.amount.description, org.rawValue, orgName, currency.rawValue, end, start,
                l.kind == .usage ? "Usage" : "Adjustment", l.kind == .adjustment ? "Correction" : "",
                "\(l.gpuModel) GPU time, \(l.tier.rawValue), \(l.region)", "Usage-Based", chargeEnd, chargeStart,
                hours(l.gpuSeconds), "GPU-Hours", l.amount.description, l.unitPrice.description, l.amount.description,
                provider, listCost.description, l.listPrice.description, pricing, hours(l.gpuSeconds), "GPU-Hours", provider,
                provider, l.region, l.region, "", "", "GPU", "AI and Machine Learning", "GPU Compute", sku,
                "\(sku)-\(l.region)-\(l.unitPrice.micros)", "\(org.rawValue)/\(l.project)", l.project, "{}",
            ])
        }
        for f in fees {
            let amount = f.amount.description
            out += Self.csvRow([
                amount, org.rawValue, orgName, currency.rawValue, end, start, "Purchase", "", f.description, "One-Time", end,
                start, "", "", amount, "", amount, provider, amount, "", "Committed", "", "", provider, provider, "", "", f.id,
                "",
                "Commitment", "AI and Machine Learning", "GPU Compute", "", "", "", "", "{}",
            ])
        }
        for c in credits {
            let amount = (-c.amount).description
            out += Self.csvRow([
                amount, org.rawValue, orgName, currency.rawValue, end, start, "Credit", "", c.description, "One-Time", end,
                start, "", "", amount, "", amount, provider, amount, "", "", "", "", provider, provider, "", "", c.id, "",
                "Credit", "AI and Machine Learning", "GPU Compute", "", "", "", "", "{}",
            ])
        }
        return out
    }
}

extension String {
    package func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
