import Foundation
import LatchkeyCore
package import LatchkeyCrypto
package import Logging
package import PostgresNIO

/// Stores many OAuth tokens fast, for tests and benchmarks of the refresher:
/// rows are sealed in Swift exactly as the store seals them and inserted
/// 2,000 a statement, bypassing paste validation (which would call the
/// provider once per token).
package enum Seeding {
    static let defaultVault = UUID(uuidString: "00000000-0000-0000-0000-000000000001")!

    /// An `oauth_client` named `sim` for the simulator's `app` client (secret
    /// `app-secret`), and `count` `oauth` tokens `tok0`, `tok1`, ... already
    /// expired, so all due at once, each with a live refresh token. Returns
    /// (name, refresh token) pairs.
    package static func dueTokens(
        _ client: PostgresClient, sealer: Sealer, simulator: ProviderSimulator, count: Int, logger: Logger
    ) async throws -> [(name: String, refreshToken: String)] {
        let clientID = UUID()
        let clientValue =
            #"{"client_id":"app","client_secret":"app-secret","token_url":"\#(simulator.tokenURL)","#
            + #""token_auth_method":"client_secret_basic","scope_separator":" ","pkce":true}"#
        let sealedClient = try sealer.seal(
            Array(clientValue.utf8), context: SealContext(vaultID: Self.defaultVault, credentialID: clientID))
        try await client.query(
            """
            INSERT INTO credentials (id, vault_id, name, type, sealed, key_version, attributes, created_at, created_by,
                updated_at, last_rotated_at)
            VALUES (\(clientID), \(Self.defaultVault), 'sim', 'oauth_client', \(ByteBuffer(bytes: sealedClient.blob)),
                \(sealedClient.keyVersion), \(#"{"token_url":"\#(simulator.tokenURL)"}"#)::jsonb, now(), 'seed', now(),
                now())
            """, logger: logger)
        var seeded: [(name: String, refreshToken: String)] = []
        var start = 0
        while start < count {
            let end = min(count, start + 2_000)
            var ids: [UUID] = []
            var names: [String] = []
            var blobs: [String] = []
            for index in start..<end {
                let id = UUID()
                let refresh = simulator.seedRefreshToken(clientID: "app")
                let value = #"{"client":"sim","access_token":"old","refresh_token":"\#(refresh)"}"#
                let sealed = try sealer.seal(
                    Array(value.utf8), context: SealContext(vaultID: Self.defaultVault, credentialID: id))
                ids.append(id)
                names.append("tok\(index)")
                blobs.append(sealed.blob.map { String(format: "%02x", $0) }.joined())
                seeded.append((name: "tok\(index)", refreshToken: refresh))
            }
            try await client.query(
                """
                INSERT INTO credentials (id, vault_id, name, type, sealed, key_version, client_id, expires_at,
                    next_refresh_at, created_at, created_by, updated_at, last_rotated_at)
                SELECT t.id, \(Self.defaultVault), t.name, 'oauth', decode(t.blob, 'hex'),
                    \(sealer.keyRing.current.version), \(clientID), now(), now(), now(), 'seed', now(), now()
                FROM unnest(\(ids)::uuid[], \(names)::text[], \(blobs)::text[]) AS t(id, name, blob)
                """, logger: logger)
            start = end
        }
        try await client.query("ANALYZE credentials", logger: logger)
        return seeded
    }

    /// `count` `oauth` tokens not due for a day. Their sealed value is a
    /// placeholder: nothing that reads only due rows ever opens them.
    package static func notDueTokens(_ client: PostgresClient, count: Int, logger: Logger) async throws {
        guard count > 0 else { return }
        try await client.query(
            """
            INSERT INTO credentials (id, vault_id, name, type, sealed, key_version, expires_at, next_refresh_at,
                created_at, created_by, updated_at, last_rotated_at)
            SELECT gen_random_uuid(), \(Self.defaultVault), 'later' || g, 'oauth', '\\x00'::bytea, 1,
                now() + interval '25 hours', now() + interval '1 day', now(), 'seed', now(), now()
            FROM generate_series(1, \(count)) AS g
            """, logger: logger)
        try await client.query("ANALYZE credentials", logger: logger)
    }
}
