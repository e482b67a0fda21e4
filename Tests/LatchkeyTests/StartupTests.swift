import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@Suite("Start-up: configuration and master-key checks")
struct StartupTests {
    @Test func configurationNamesTheVariableThatIsWrong() throws {
        let base = ["LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1/db"]
        let cases: [([String: String], String)] = [
            ([:], "LATCHKEY_DATABASE_URL"),
            (base.merging(["LATCHKEY_LISTEN": "localhost"]) { $1 }, "LATCHKEY_LISTEN"),
            (base.merging(["LATCHKEY_LISTEN": "127.0.0.1:99999"]) { $1 }, "LATCHKEY_LISTEN"),
            (base.merging(["LATCHKEY_ADMIN_SECRET": "short"]) { $1 }, "LATCHKEY_ADMIN_SECRET"),
            (base.merging(["LATCHKEY_REFRESH_WINDOW": "5 minutes"]) { $1 }, "LATCHKEY_REFRESH_WINDOW"),
            (base.merging(["LATCHKEY_REFRESH_WINDOW": "10s"]) { $1 }, "LATCHKEY_REFRESH_WINDOW"),
            (base.merging(["LATCHKEY_DATABASE_URL": "mysql://x/db"]) { $1 }, "LATCHKEY_DATABASE_URL"),
            (base.merging(["LATCHKEY_SHUTDOWN_GRACE": "-1s"]) { $1 }, "LATCHKEY_SHUTDOWN_GRACE"),
            (base.merging(["LATCHKEY_LOG_FORMAT": "xml"]) { $1 }, "LATCHKEY_LOG_FORMAT"),
            (base.merging(["LATCHKEY_PUBLIC_URL": "latchkey.example.com"]) { $1 }, "LATCHKEY_PUBLIC_URL"),
        ]
        for (environment, variable) in cases {
            let error = #expect(throws: ConfigurationError.self) {
                try LatchkeyConfiguration.fromEnvironment(environment)
            }
            #expect(error?.description.hasPrefix(variable) == true, "\(String(describing: error))")
        }
        var good = base
        good["LATCHKEY_LISTEN"] = "[::1]:9090"
        good["LATCHKEY_REFRESH_WINDOW"] = "120"
        good["LATCHKEY_SHUTDOWN_GRACE"] = "2m"
        good["LATCHKEY_DATABASE_TIMEOUT"] = "750ms"
        good["LATCHKEY_LOG_FORMAT"] = "JSON"
        let configuration = try LatchkeyConfiguration.fromEnvironment(good)
        #expect(configuration.listenHost == "::1")
        #expect(configuration.listenPort == 9090)
        #expect(configuration.refreshWindow == .seconds(120))
        #expect(configuration.shutdownGrace == .seconds(120))
        #expect(configuration.databaseTimeout == .milliseconds(750))
        #expect(configuration.logFormat == .json)
    }

    @Test func databaseURLsAreParsed() throws {
        let parsed = try DatabaseURL.configuration(
            "postgres://user:p%40ss@db.internal:6543/latchkey?sslmode=disable&pool_size=8")
        #expect(parsed.host == "db.internal")
        #expect(parsed.port == 6543)
        #expect(parsed.username == "user")
        #expect(parsed.password == "p@ss")
        #expect(parsed.database == "latchkey")
        #expect(parsed.options.maximumConnections == 8)
        for bad in [
            "mysql://x/db", "postgres://host", "postgres://h/db?sslmode=sometimes", "postgres://h/db?pool_size=0",
            "not a url",
        ] {
            #expect(throws: DatabaseURL.Invalid.self) { try DatabaseURL.configuration(bad) }
        }
    }

    @Test func startWithoutAMasterKeyFailsBeforeTouchingAnything() async throws {
        var configuration = LatchkeyConfiguration(databaseURL: "postgres://u@127.0.0.1:1/none")
        configuration.masterKey = nil
        #expect(throws: KeyRingError.self) { try buildApplication(configuration, logger: Logger(label: "t")) }
        configuration.masterKey = "00ff"
        #expect(throws: KeyRingError.self) { try buildApplication(configuration, logger: Logger(label: "t")) }
    }

    @Test func aKeyThatOpensNoStoredRowStopsStartUpAndChangesNothing() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            // Migrations 1-3 applied and one credential sealed with the right key.
            let rightKey = MasterKey.generate()
            try await database.withClient { client in
                let logger = Logger(label: "t")
                try await Migrator(migrations: Array(Migration.embedded.prefix(3)), logger: logger).migrate(client)
                // Written with SQL of migration 1's shape: the store's own
                // queries may name columns later migrations add.
                let id = UUID()
                let vaultID = UUID(uuidString: "00000000-0000-0000-0000-000000000001")!
                let sealed = try Sealer(keyRing: KeyRing(current: rightKey)).seal(
                    Array(#"{"token":"t"}"#.utf8), context: SealContext(vaultID: vaultID, credentialID: id))
                try await client.query(
                    """
                    INSERT INTO credentials (id, vault_id, name, type, sealed, key_version, created_at, created_by,
                        updated_at, last_rotated_at)
                    VALUES (\(id), \(vaultID), 'kept', 'bearer', \(ByteBuffer(bytes: sealed.blob)), \(sealed.keyVersion),
                        now(), 'test', now(), now())
                    """)
            }
            // No key is minted: this database stops at migration 3.
            let harness = Harness(
                database: database, masterKey: .generate(), adminSecret: "test-admin-secret-0123456789",
                logs: LogCapture(), clock: TestClock(), adminKey: "lk_live_unused")
            let before = try await harness.dataSnapshot()
            let error = await #expect(throws: KeyRingMismatch.self) {
                try await harness.run { _ in Issue.record("the server must not start with the wrong key") }
            }
            #expect(error?.description.contains("LATCHKEY_MASTER_KEY") == true)
            #expect(try await harness.dataSnapshot() == before)
            // The pending migration was not applied either.
            try await database.withClient { client in
                let rows = try await client.query("SELECT max(version) FROM schema_migrations")
                for try await version in rows.decode(Int.self) { #expect(version == 3) }
            }
            // With the right key as a previous key, it starts (and migrates).
            var configuration = harness.configuration
            configuration.previousMasterKeys = rightKey.hex
            try await harness.run(configuration: configuration) { client in
                let ready = try await client.call(.get, "/readyz", key: nil)
                #expect(ready.status == 200)
            }
        }
    }

    @Test func serveRefusesToStartAsARealProcessWithABadKey() async throws {
        let result = try await LatchkeyProcess.run(
            ["serve"],
            environment: [
                "LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1:1/none", "LATCHKEY_MASTER_KEY": "not-hex",
            ])
        #expect(result.status != 0)
        #expect(result.stderr.contains("LATCHKEY_MASTER_KEY must be 64 hexadecimal characters"), "\(result.output)")
        let missing = try await LatchkeyProcess.run(
            ["serve"], environment: ["LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1:1/none"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("LATCHKEY_MASTER_KEY is not set"), "\(missing.output)")
    }
}
