import Crypto
import Foundation
import LatchkeyCrypto
package import Logging
package import PostgresNIO

/// One numbered SQL migration, e.g. `0003_audit_and_usage.sql`.
package struct Migration: Sendable, Hashable {
    package let version: Int
    package let name: String
    package let sql: String
    /// SHA-256 of the file's bytes, stored when applied so a later edit of an
    /// applied migration is caught instead of silently diverging.
    package let checksum: String

    package init(fileName: String, sql: String) throws(MigrationError) {
        let digits = fileName.prefix { $0.isASCII && $0.isNumber }
        guard let version = Int(digits), version > 0, fileName.hasSuffix(".sql") else {
            throw MigrationError("migration file '\(fileName)' must be named NNNN_description.sql")
        }
        self.version = version
        self.name = fileName
        self.sql = sql
        self.checksum = Hex.lowercase(SHA256.hash(data: Array(sql.utf8)))
    }

    /// The migrations embedded in this binary at build time, in order.
    package static let embedded: [Migration] = {
        do {
            let migrations = try embeddedMigrationFiles.map { file in
                guard let data = Data(base64Encoded: file.base64) else {
                    throw MigrationError("embedded migration \(file.name) is corrupt")
                }
                return try Migration(fileName: file.name, sql: String(decoding: data, as: UTF8.self))
            }
            return try Migrator.ordered(migrations)
        } catch {
            fatalError("the migrations embedded at build time are invalid: \(error)")
        }
    }()
}

package struct MigrationError: Error, Sendable, CustomStringConvertible, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Where the database stands relative to this binary's migrations.
package struct MigrationStatus: Sendable, Equatable {
    package var applied: [Int]
    package var pending: [Int]
    package var isCurrent: Bool { self.pending.isEmpty }
}

/// Applies `Migrations/` under a Postgres advisory lock, one transaction per
/// file, so any number of replicas starting at once apply each migration
/// exactly once: the first takes the lock and migrates, the others wait, then
/// find nothing pending.
package struct Migrator: Sendable {
    /// Arbitrary but fixed: the advisory lock every Latchkey process agrees on.
    static let advisoryLockKey: Int64 = 0x6C61_7463_686B_6579  // "latchkey"

    package let migrations: [Migration]
    let logger: Logger

    package init(migrations: [Migration] = Migration.embedded, logger: Logger) throws(MigrationError) {
        self.migrations = try Self.ordered(migrations)
        self.logger = logger
    }

    static func ordered(_ migrations: [Migration]) throws(MigrationError) -> [Migration] {
        let sorted = migrations.sorted { $0.version < $1.version }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where previous.version == next.version {
            throw MigrationError("two migrations share version \(next.version): \(previous.name) and \(next.name)")
        }
        return sorted
    }

    /// Applies every pending migration. Returns the versions this call applied.
    @discardableResult
    package func migrate(_ client: PostgresClient) async throws -> [Int] {
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))", logger: self.logger)
            do {
                let applied = try await self.migrateLocked(connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: self.logger)
                return applied
            } catch {
                _ = try? await connection.query(
                    "SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: self.logger)
                throw error
            }
        }
    }

    /// Compares the database with this binary's migrations without changing anything.
    package func status(_ client: PostgresClient) async throws -> MigrationStatus {
        try await client.withConnection { connection in
            let applied = try await self.appliedMigrations(connection)
            try self.verify(applied: applied)
            let pending = self.migrations.map(\.version).filter { applied[$0] == nil }
            return MigrationStatus(applied: applied.keys.sorted(), pending: pending)
        }
    }

    private func migrateLocked(_ connection: PostgresConnection) async throws -> [Int] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: self.logger)
        let applied = try await self.appliedMigrations(connection)
        try self.verify(applied: applied)
        var newlyApplied: [Int] = []
        for migration in self.migrations where applied[migration.version] == nil {
            self.logger.info("applying migration", metadata: ["migration.name": "\(migration.name)"])
            try await connection.withTransaction(logger: self.logger) { transaction in
                for statement in SQLScript.statements(migration.sql) {
                    try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                try await transaction.query(
                    """
                    INSERT INTO schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: self.logger)
            }
            newlyApplied.append(migration.version)
        }
        return newlyApplied
    }

    /// version → (name, checksum) of what the database has applied; empty when
    /// the migrations table does not exist yet.
    private func appliedMigrations(_ connection: PostgresConnection) async throws -> [Int: (String, String)] {
        let exists = try await connection.query(
            "SELECT to_regclass('schema_migrations') IS NOT NULL", logger: self.logger)
        for try await (present) in exists.decode(Bool.self) where !present { return [:] }
        var applied: [Int: (String, String)] = [:]
        let rows = try await connection.query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version", logger: self.logger)
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            applied[version] = (name, checksum)
        }
        return applied
    }

    /// Refuses a database whose history does not match this binary's files:
    /// an applied file that was edited, an applied version this binary does not
    /// have, or a new file slotted in before one already applied.
    private func verify(applied: [Int: (String, String)]) throws(MigrationError) {
        let known = Dictionary(uniqueKeysWithValues: self.migrations.map { ($0.version, $0) })
        for (version, (name, checksum)) in applied.sorted(by: { $0.key < $1.key }) {
            guard let migration = known[version] else {
                throw MigrationError(
                    "the database has migration \(name) (version \(version)) that this binary does not know; "
                        + "run a Latchkey build at least as new as the one that applied it")
            }
            guard migration.checksum == checksum else {
                throw MigrationError(
                    "migration \(migration.name) was changed after it was applied (checksum \(checksum.prefix(12))… "
                        + "in the database, \(migration.checksum.prefix(12))… in this binary); "
                        + "never edit an applied migration: add a new one")
            }
        }
        if let newestApplied = applied.keys.max(),
            let reordered = self.migrations.first(where: { $0.version < newestApplied && applied[$0.version] == nil })
        {
            throw MigrationError(
                "migration \(reordered.name) is numbered before the already-applied version \(newestApplied) "
                    + "but was never applied; renumber it after \(newestApplied)")
        }
    }
}
