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

@Suite("Migrations: embedded files, advisory lock, checksums")
struct MigrationTests {
    let logger = Logger(label: "migration-test")

    @Test func embeddedMigrationsMatchTheFilesInTheRepository() throws {
        let directory = repositoryRoot.appendingPathComponent("Migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }
            .sorted()
        #expect(Migration.embedded.map(\.name) == files)
        for migration in Migration.embedded {
            let onDisk = try String(contentsOf: directory.appendingPathComponent(migration.name), encoding: .utf8)
            #expect(migration.sql == onDisk)
        }
        #expect(Migration.embedded.map(\.version) == Array(1...Migration.embedded.count))
    }

    @Test func migrateIsIdempotentAndCreatesTheDefaultVault() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            try await database.withClient { client in
                let migrator = try Migrator(logger: self.logger)
                #expect(try await migrator.status(client).pending.count == Migration.embedded.count)
                #expect(try await migrator.migrate(client) == Array(1...Migration.embedded.count))
                #expect(try await migrator.migrate(client) == [])
                #expect(try await migrator.status(client).isCurrent)
                let rows = try await client.query("SELECT name FROM vaults")
                #expect(try await rows.decode(String.self).reduce(into: []) { $0.append($1) } == ["default"])
            }
        }
    }

    @Test func tenConcurrentAppliersApplyEachMigrationExactlyOnce() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            let configuration = try database.configuration
            let logger = self.logger
            // Ten separate clients (as ten replicas would have), all at once.
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        try await PostgresClient.withRunning(configuration, logger: logger) { client in
                            try await Migrator(logger: logger).migrate(client)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(applied.flatMap { $0 }.sorted() == Array(1...Migration.embedded.count))
            #expect(applied.filter { !$0.isEmpty }.count == 1)
            try await database.withClient { client in
                let rows = try await client.query(
                    "SELECT count(*)::bigint, count(DISTINCT version)::bigint FROM schema_migrations")
                for try await (total, distinct) in rows.decode((Int, Int).self) {
                    #expect(total == Migration.embedded.count)
                    #expect(distinct == total)
                }
            }
        }
    }

    @Test func anEditedAppliedMigrationIsRefused() async throws {
        try await TestDatabase.withFresh { database in
            try await database.withClient { client in
                var edited = Migration.embedded
                edited[1] = try Migration(fileName: edited[1].name, sql: edited[1].sql + "\n-- edited\n")
                let migrator = try Migrator(migrations: edited, logger: self.logger)
                let error = await #expect(throws: MigrationError.self) { try await migrator.migrate(client) }
                #expect(error?.description.contains("0002_api_keys.sql was changed after it was applied") == true)
                await #expect(throws: MigrationError.self) { try await migrator.status(client) }
            }
        }
    }

    @Test func aMigrationSlottedInBeforeAnAppliedOneIsRefused() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            try await database.withClient { client in
                let all = Migration.embedded
                // Apply 1, 2 and 4, as if 3 had been added later with an old number.
                let withoutThird = try Migrator(migrations: all.filter { $0.version != 3 }, logger: self.logger)
                try await withoutThird.migrate(client)
                let error = await #expect(throws: MigrationError.self) {
                    try await Migrator(migrations: all, logger: self.logger).migrate(client)
                }
                #expect(error?.description.contains("0003_audit_and_usage.sql is numbered before") == true)
            }
        }
    }

    @Test func aDatabaseNewerThanTheBinaryIsRefused() async throws {
        try await TestDatabase.withFresh { database in
            try await database.withClient { client in
                let older = try Migrator(migrations: Array(Migration.embedded.dropLast()), logger: self.logger)
                let error = await #expect(throws: MigrationError.self) { try await older.migrate(client) }
                #expect(error?.description.contains("that this binary does not know") == true)
            }
        }
    }

    @Test func aFailingMigrationRollsBackWholly() async throws {
        try await TestDatabase.withFresh { database in
            try await database.withClient { client in
                let broken = try Migration(
                    fileName: "0099_broken.sql", sql: "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;")
                let migrator = try Migrator(migrations: Migration.embedded + [broken], logger: self.logger)
                await #expect(throws: (any Error).self) { try await migrator.migrate(client) }
                let rows = try await client.query(
                    "SELECT to_regclass('half_done') IS NULL, (SELECT count(*) FROM schema_migrations WHERE version = 99)::bigint"
                )
                for try await (absent, recorded) in rows.decode((Bool, Int).self) {
                    #expect(absent)
                    #expect(recorded == 0)
                }
            }
        }
    }

    @Test func badMigrationFileNamesAreRefused() {
        #expect(throws: MigrationError.self) { try Migration(fileName: "init.sql", sql: "") }
        #expect(throws: MigrationError.self) { try Migration(fileName: "0001_x.txt", sql: "") }
        #expect(throws: MigrationError.self) {
            try Migrator(
                migrations: [
                    try Migration(fileName: "0001_a.sql", sql: ""), try Migration(fileName: "0001_b.sql", sql: ""),
                ],
                logger: Logger(label: "t"))
        }
    }
}

@Suite("SQL script splitting")
struct SQLScriptTests {
    @Test func splitsOnSemicolonsOutsideQuotesAndComments() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT 'it''s; fine');
            /* block; comment /* nested; */ */
            CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'no; way'; END;
            $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
            SELECT "weird;name" FROM a;
            -- trailing comment only
            """
        let statements = SQLScript.statements(sql)
        #expect(statements.count == 4)
        #expect(statements[0].hasSuffix("DEFAULT 'it''s; fine')"))
        #expect(statements[1].contains("RAISE EXCEPTION 'no; way'; END;"))
        #expect(statements[2].hasSuffix("$body$ SELECT 1; $body$"))
        #expect(statements[3] == #"SELECT "weird;name" FROM a"#)
    }

    @Test func dollarSignsThatAreNotQuotesAreLeftAlone() {
        #expect(SQLScript.statements("SELECT $1; SELECT 2").count == 2)
        #expect(SQLScript.statements("SELECT price$ FROM t; SELECT 2").count == 2)
    }
}
