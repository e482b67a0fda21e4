// swift-tools-version:6.2
import PackageDescription

// One set of settings for every target: Swift 6 language mode with the upcoming
// features that keep imports and existentials explicit.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Latchkey",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "latchkey", targets: ["latchkey"]),
        .executable(name: "latchkey-dev-provider", targets: ["LatchkeyDevProvider"]),
        .executable(name: "latchkey-refresher-bench", targets: ["RefresherBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Domain types: credential kinds and their value validation, errors, names.
        .target(
            name: "LatchkeyCore",
            swiftSettings: swiftSettings
        ),
        // AES-256-GCM sealing and the master-key ring.
        .target(
            name: "LatchkeyCrypto",
            dependencies: [
                "LatchkeyCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Postgres repositories, the migrations runner and rekey.
        .target(
            name: "LatchkeyStore",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            plugins: ["EmbedMigrationsPlugin"]
        ),
        // OAuth: provider presets, token-response parsing, the token endpoint client.
        .target(
            name: "LatchkeyOAuth",
            dependencies: [
                "LatchkeyCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The background refresher: claims due credentials, refreshes, backs off.
        .target(
            name: "LatchkeyRefresher",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyStore",
                "LatchkeyOAuth",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Routes, request context, authentication middleware, error rendering.
        .target(
            name: "LatchkeyHTTP",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyOAuth",
                "LatchkeyRefresher",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings,
            plugins: ["EmbedOpenAPIPlugin"]
        ),
        // Composition root: Configuration -> buildApplication(...).
        .target(
            name: "LatchkeyApp",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyHTTP",
                "LatchkeyOAuth",
                "LatchkeyRefresher",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The command-line interface; a library so tests can reach its pieces.
        .target(
            name: "LatchkeyCLI",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyApp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "latchkey",
            dependencies: [
                "LatchkeyCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test support: throwaway databases, captured logs.
        .target(
            name: "LatchkeyTesting",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyApp",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The provider simulator as a command, for trying OAuth flows by hand.
        .executableTarget(
            name: "LatchkeyDevProvider",
            dependencies: [
                "LatchkeyTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The refresher benchmark (Benchmarks/refresher runs it in release mode).
        .executableTarget(
            name: "RefresherBenchmark",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyOAuth",
                "LatchkeyRefresher",
                "LatchkeyTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RefresherBenchmark",
            swiftSettings: swiftSettings
        ),
        // Build-time embedding of Migrations/*.sql into LatchkeyStore, so an
        // installed binary carries its migrations and needs no source tree.
        .executableTarget(
            name: "EmbedMigrationsTool",
            swiftSettings: swiftSettings
        ),
        .plugin(
            name: "EmbedMigrationsPlugin",
            capability: .buildTool(),
            dependencies: ["EmbedMigrationsTool"]
        ),
        // The same for openapi.json, served at GET /openapi.json.
        .plugin(
            name: "EmbedOpenAPIPlugin",
            capability: .buildTool(),
            dependencies: ["EmbedMigrationsTool"]
        ),
        .testTarget(
            name: "LatchkeyTests",
            dependencies: [
                "LatchkeyCore",
                "LatchkeyCrypto",
                "LatchkeyStore",
                "LatchkeyHTTP",
                "LatchkeyApp",
                "LatchkeyCLI",
                "LatchkeyTesting",
                "LatchkeyOAuth",
                "LatchkeyRefresher",
                "latchkey",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Resources/README.md"],
            // The AWS SigV4 test suite (Apache 2.0), so the suite needs nothing outside the repository.
            resources: [.copy("Resources/aws-sigv4-test-suite.json")],
            swiftSettings: swiftSettings
        ),
    ]
)
