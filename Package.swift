// swift-tools-version:6.1
import PackageDescription

// Pure modules (Core, Scheduler, Ledger, Control, Store) depend on nothing outside the
// standard library and each other; IO lives in StoreSQLite, Agent, Server and the CLI.
// STRATUS_WERROR=1 (set by scripts/test.sh) turns warnings in our own targets into errors.
let werror: [SwiftSetting] = Context.environment["STRATUS_WERROR"] == "1" ? [.unsafeFlags(["-warnings-as-errors"])] : []
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")] + werror

let package = Package(
    name: "stratus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "stratus", targets: ["stratus"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .target(name: "StratusCore", swiftSettings: strict),
        .target(name: "StratusScheduler", dependencies: ["StratusCore"], swiftSettings: strict),
        .target(name: "StratusLedger", dependencies: ["StratusCore"], swiftSettings: strict),
        .target(
            name: "StratusControl",
            dependencies: ["StratusCore", "StratusScheduler", "StratusLedger"],
            swiftSettings: strict),
        .target(name: "StratusStore", dependencies: ["StratusCore", "StratusControl"], swiftSettings: strict),
        .target(
            name: "StratusSimulation",
            dependencies: ["StratusCore", "StratusScheduler", "StratusLedger", "StratusControl", "StratusStore"],
            swiftSettings: strict),
        .target(
            name: "StratusStoreSQLite",
            dependencies: ["StratusStore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict),
        .target(
            name: "StratusAgent",
            dependencies: ["StratusCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(
            name: "StratusServer",
            dependencies: [
                "StratusCore", "StratusScheduler", "StratusLedger", "StratusControl", "StratusStore", "StratusStoreSQLite",
                "StratusAgent",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "stratus",
            dependencies: [
                "StratusServer", "StratusSimulation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "StratusCoreTests",
            dependencies: [
                "StratusCore", "StratusScheduler", "StratusLedger", "StratusControl", "StratusStore", "StratusSimulation",
            ],
            exclude: ["Golden"],
            swiftSettings: strict),
        .testTarget(
            name: "StratusServerTests",
            dependencies: [
                "StratusServer", "StratusStoreSQLite", "StratusSimulation",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict),
    ]
)
