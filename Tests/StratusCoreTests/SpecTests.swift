import StratusControl
import StratusCore
import StratusStore
import Testing

@Suite struct JobSpecTests {
    func parse(_ pairs: [(String, SpecValue)]) throws(StratusError) -> JobSpec {
        try JobSpec.parse(.object(pairs.map { (key: $0.0, value: $0.1) }))
    }

    let base: [(String, SpecValue)] = [
        ("name", .string("train")), ("resources", .object([(key: "accelerators", value: .string("h100:4"))])),
        ("run", .string("python train.py")),
    ]

    @Test func parsesAFullSpec() throws {
        let spec = try parse(
            base + [
                ("num_nodes", .int(2)), ("tier", .string("spot")), ("envs", .object([(key: "EPOCHS", value: .int(3))])),
                ("max_duration", .string("1h30m")), ("project", .string("research")),
            ])
        #expect(spec.gpuModel == "H100")
        #expect(spec.gpusPerNode == 4)
        #expect(spec.numNodes == 2)
        #expect(spec.tier == .spot)
        #expect(spec.envs == ["EPOCHS": "3"])
        #expect(spec.maxDurationSeconds == 5400)
        #expect(spec.project == "research")
        #expect(spec.totalGPUs == 8)
    }

    @Test func defaultsToOnDemandOneNodeOneGPU() throws {
        let spec = try parse([
            ("resources", .object([(key: "accelerators", value: .string("B200"))])), ("run", .string("x")),
        ])
        #expect(spec.gpusPerNode == 1)
        #expect(spec.numNodes == 1)
        #expect(spec.tier == .onDemand)
        #expect(spec.maxDurationSeconds == nil)
    }

    @Test(arguments: [
        ("H900:8", "unknown GPU model 'H900'"),
        ("H100:0", "count must be at least 1"),
        ("H100:-2", "count must be at least 1"),
        ("H100:x", "is not an integer"),
        ("H100:8:1", "is not TYPE:COUNT"),
        ("H100:100", "at most 72 GPUs per node"),
    ])
    func rejectsBadAccelerators(text: String, message: String) {
        let error = #expect(throws: StratusError.self) {
            try parse([("resources", .object([(key: "accelerators", value: .string(text))])), ("run", .string("x"))])
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test func rejectsUnknownFieldsAtEveryLevel() {
        var error = #expect(throws: StratusError.self) { try parse(base + [("gpus", .int(8))]) }
        #expect(error?.code == .unknownField)
        #expect(error?.message == "gpus: unknown field")
        error = #expect(throws: StratusError.self) {
            try parse([
                ("resources", .object([(key: "accelerators", value: .string("H100:1")), (key: "disk", value: .int(4))])),
                ("run", .string("x")),
            ])
        }
        #expect(error?.message == "resources.disk: unknown field")
    }

    @Test func rejectsBadCountsDurationsAndEnvs() {
        for (pairs, message) in [
            (base + [("num_nodes", .int(0))], "num_nodes: must be at least 1"),
            (base + [("num_nodes", .int(-3))], "num_nodes: must be at least 1"),
            (base + [("num_nodes", .int(5000))], "num_nodes: at most"),
            (base + [("max_duration", .string("soon"))], "max_duration: 'soon' is not a duration"),
            // Many seconds is a duration, over the job limit: the limit is named.
            (base + [("max_duration", .string("3000000s"))], "max_duration: at most 720h"),
            (base + [("max_duration", .int(0))], "max_duration: must be positive"),
            (base + [("tier", .string("gold"))], "tier: 'gold' is not one of"),
            (base + [("envs", .object([(key: "CUDA_VISIBLE_DEVICES", value: .string("0"))]))], "reserved"),
            (base + [("envs", .object([(key: "1BAD", value: .string("0"))]))], "not a valid environment variable name"),
            ([("resources", .object([(key: "accelerators", value: .string("H100"))]))], "run: required"),
            ([("run", .string("x"))], "resources.accelerators: required"),
        ] as [([(String, SpecValue)], String)] {
            let error = #expect(throws: StratusError.self) { try parse(pairs) }
            #expect(error?.message.contains(message) == true, "expected '\(message)', got '\(error?.message ?? "")'")
        }
        let notAMapping = #expect(throws: StratusError.self) { try JobSpec.parse(.array([])) }
        #expect(notAMapping?.message == "document: expected a mapping, got a list")
    }

    @Test func durations() throws {
        #expect(try DurationText.parseSeconds("90", field: "d") == 90)
        #expect(try DurationText.parseSeconds("2h", field: "d") == 7200)
        #expect(try DurationText.parseSeconds("1d2h3m4s", field: "d") == 93784)
        #expect(throws: StratusError.self) { try DurationText.parseSeconds("3x", field: "d") }
        #expect(throws: StratusError.self) { try DurationText.parseSeconds("h", field: "d") }
        // Any length that fits parses (callers bound it); one that does not is named too long.
        #expect(try DurationText.parseSeconds("16070415s", field: "d") == 16_070_415)
        #expect(try DurationText.parseSeconds("400d", field: "d") == 34_560_000)
        let tooLong = #expect(throws: StratusError.self) { try DurationText.parseSeconds("999999999999999d", field: "d") }
        #expect(tooLong?.message == "d: '999999999999999d' is too long")
        #expect(DurationText.format(seconds: 5400) == "90m")
    }

    @Test func exactDecimals() {
        #expect(DecimalText.parse("1.25", scale: 1000) == 1250)
        #expect(DecimalText.parse("30", scale: 1000) == 30000)
        #expect(DecimalText.parse("0.0005", scale: 1000) == nil)
        #expect(DecimalText.parse("1.2.3", scale: 1000) == nil)
        #expect(DecimalText.format(1250, scale: 1000) == "1.25")
        #expect(DecimalText.format(2004, scale: 1000) == "2.004")
    }

    @Test func timestampsFormatAsRFC3339() {
        #expect(Timestamp(milliseconds: 0).description == "1970-01-01T00:00:00Z")
        #expect(Timestamp(seconds: 1_795_000_000).description == "2026-11-18T11:06:40Z")
    }
}

@Suite struct FleetSpecTests {
    func node(_ pairs: [(key: String, value: SpecValue)]) -> SpecValue {
        .object([
            (
                key: "regions",
                value: .array([
                    .object([
                        (key: "name", value: .string("us-east")),
                        (
                            key: "sites",
                            value: .array([
                                .object([
                                    (key: "name", value: .string("dc1")), (key: "power_mw", value: .double(30.5)),
                                    (key: "pue", value: .string("1.2")),
                                    (
                                        key: "racks",
                                        value: .array([
                                            .object([
                                                (key: "name", value: .string("r1")), (key: "block", value: .string("b1")),
                                                (key: "nodes", value: .array([.object(pairs)])),
                                            ])
                                        ])
                                    ),
                                ])
                            ])
                        ),
                    ])
                ])
            )
        ])
    }

    @Test func parsesNestedFleetAndExpandsCounts() throws {
        let spec = try FleetSpec.parse(
            node([
                (key: "name", value: .string("gb")), (key: "gpu", value: .string("gb200")), (key: "count", value: .int(3)),
            ]))
        #expect(spec.regions == ["us-east"])
        #expect(spec.sites.first?.powerBudgetKW == 30_500)
        #expect(spec.sites.first?.pueMilli == 1200)
        #expect(spec.nodes.map(\.id) == ["gb-1", "gb-2", "gb-3"])
        #expect(spec.nodes.allSatisfy { $0.gpuModel == "GB200" && $0.gpuCount == 72 })
        #expect(spec.racks.first?.block == "b1")
        // The state gives racks of one block (per site) one block index; racks in none get -1.
        var fleet = spec
        fleet.racks += [.init(id: "r2", site: "dc1", block: "b1"), .init(id: "r3", site: "dc1")]
        fleet.nodes += [
            .init(id: "x", rack: "r2", gpuModel: "H100", gpuCount: 8, labels: [:]),
            .init(id: "y", rack: "r3", gpuModel: "H100", gpuCount: 8, labels: [:]),
        ]
        var e = try Engine(store: MemoryStore())
        try e.execute(.applyFleet(fleet), at: .zero)
        let blocks = Dictionary(uniqueKeysWithValues: e.state.schedulingSnapshot().nodes.map { ($0.id, $0.block) })
        #expect(blocks["gb-1"] == 0 && blocks["x"] == 0 && blocks["y"] == -1)
    }

    @Test func rejectsBadNodes() {
        for (pairs, message) in [
            ([(key: "name", value: SpecValue.string("n")), (key: "gpu", value: .string("V100"))], "unknown GPU model 'V100'"),
            (
                [(key: "name", value: .string("n")), (key: "gpu", value: .string("H100")), (key: "gpus", value: .int(0))],
                "must be between 1 and 72"
            ),
            ([(key: "name", value: .string("N!")), (key: "gpu", value: .string("H100"))], "must use lowercase letters"),
            (
                [
                    (key: "name", value: .string("n")), (key: "gpu", value: .string("H100")),
                    (key: "color", value: .string("red")),
                ], "color: unknown field"
            ),
        ] {
            let error = #expect(throws: StratusError.self) { try FleetSpec.parse(node(pairs)) }
            #expect(error?.message.contains(message) == true, "expected '\(message)', got '\(error?.message ?? "")'")
        }
    }

    @Test func catalogHasTheModelsTheCloudSells() {
        for name in ["H100", "H200", "B200", "GB200"] {
            let model = GPUCatalog.model(named: name)
            #expect(model != nil)
            #expect((model?.memoryGiB ?? 0) > 0 && (model?.powerWatts ?? 0) > 0)
        }
    }
}
