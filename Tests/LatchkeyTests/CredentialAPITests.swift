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

@Suite("Admin API: credentials")
struct CredentialAPITests {
    static let base = "/v1/vaults/default/credentials"

    @Test("create stores every type sealed and answers metadata only", arguments: CredentialType.allCases)
    func createEveryType(type: CredentialType) async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            if type.referencesClient {
                let created = try await client.call(
                    .post, Self.base, key: key,
                    body: json(["name": "client", "type": "oauth_client", "value": Samples.value(.oauthClient)]))
                #expect(created.status == 201)
            }
            let response = try await client.call(
                .post, Self.base, key: key,
                body: json([
                    "name": "cred", "type": type.rawValue, "description": "for tests", "value": Samples.value(type),
                ]))
            #expect(response.status == 201, "\(response.body)")
            #expect(response.headers[.location] == "\(Self.base)/cred")
            let metadata = response.json
            #expect(metadata["name"] == .string("cred"))
            #expect(metadata["type"] == .string(type.rawValue))
            #expect(metadata["status"] == .string("active"))
            #expect(metadata["created_by"] == .string(harness.adminActor))
            #expect(metadata["description"] == .string("for tests"))
            #expect(metadata["value"] == .null)
            for secret in Samples.secrets(type) { #expect(!response.body.contains(secret)) }
            if type.referencesClient {
                #expect(metadata["client"] == .string("client"))
                #expect(metadata["scopes"] == .array([.string("read")]))
            }
            // What was sealed is exactly what was sent (normalised), and opens with the key.
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "cred") }
            for secret in Samples.secrets(type) {
                #expect(String(decoding: try JSONEncoder().encode(stored), as: UTF8.self).contains(secret))
            }
        }
    }

    @Test func accessTokensWithoutRefreshTokensAreStoredAsGiven() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "client", "type": "oauth_client", "value": Samples.value(.oauthClient)]))
            // expires_in as a numeric string, as some providers send it; no
            // refresh token, so nothing to validate and nothing to schedule.
            let response = try await client.call(
                .post, Self.base, key: key,
                body: json([
                    "name": "tok", "type": "oauth",
                    "value": ["client": "client", "access_token": "a", "expires_in": "60"],
                ]))
            #expect(response.status == 201)
            let expiresText = try #require(response.json["expires_at"].stringValue)
            #expect(ISO8601DateFormatter().date(from: expiresText) == harness.clock.now.addingTimeInterval(60))
            #expect(response.json["next_refresh_at"] == .null)
            #expect(response.json["refresh_failures"] == .number(0))
            let noExpiry = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "tok3", "type": "oauth", "value": ["client": "client", "access_token": "a"]]))
            #expect(noExpiry.json["expires_at"] == .null)
        }
    }

    @Test func duplicateNamesAreRefusedAndChangeNothing() async throws {
        try await Harness.withApp { harness, client in
            let body = json(["name": "dup", "type": "bearer", "value": ["token": "first"]])
            #expect(try await client.call(.post, Self.base, key: harness.adminKey, body: body).status == 201)
            let before = try await harness.dataSnapshot()
            let again = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json(["name": "dup", "type": "bearer", "value": ["token": "second"]]))
            #expect(again.status == 409)
            #expect(again.errorCode == "CREDENTIAL_EXISTS")
            #expect(try await harness.dataSnapshot() == before)
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "dup") }
            #expect(stored["token"] == .string("first"))
        }
    }

    @Test func listFiltersByTypeNameAndStalenessAndPaginates() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            for index in 0..<7 {
                _ = try await client.call(
                    .post, Self.base, key: key,
                    body: json(["name": "svc_\(index)", "type": "bearer", "value": ["token": "t\(index)"]]))
            }
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "cookie_jar", "type": "cookie", "value": ["cookie": "a=b"]]))
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "svcX1", "type": "bearer", "value": ["token": "t"]]))

            // Pagination walks every credential once, in name order.
            var names: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await client.call(
                    .get, "\(Self.base)?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""), key: key)
                #expect(page.status == 200)
                names += page.json["items"].arrayValue.compactMap { $0["name"].stringValue }
                cursor = page.json["next_cursor"].stringValue
                pages += 1
            } while cursor != nil
            #expect(
                names
                    == ["cookie_jar", "svcX1", "svc_0", "svc_1", "svc_2", "svc_3", "svc_4", "svc_5", "svc_6"].sorted())
            #expect(pages == 3)

            let cookies = try await client.call(.get, "\(Self.base)?type=cookie", key: key)
            #expect(cookies.json["items"].arrayValue.compactMap { $0["name"].stringValue } == ["cookie_jar"])

            // `q` is a substring match where '_' is literal, not a LIKE wildcard.
            let underscored = try await client.call(.get, "\(Self.base)?q=svc_", key: key)
            #expect(underscored.json["items"].arrayValue.count == 7)
            let caseInsensitive = try await client.call(.get, "\(Self.base)?q=JAR", key: key)
            #expect(caseInsensitive.json["items"].arrayValue.compactMap { $0["name"].stringValue } == ["cookie_jar"])

            // stale_days: 40 days later, rotate one; only the others are stale.
            harness.clock.advance(by: 40 * 86_400)
            let rotated = try await client.call(
                .post, "\(Self.base)/svc_3/rotate", key: key, body: json(["value": ["token": "fresh"]]))
            #expect(rotated.status == 200)
            let stale = try await client.call(.get, "\(Self.base)?stale_days=30&limit=200", key: key)
            let staleNames = stale.json["items"].arrayValue.compactMap { $0["name"].stringValue }
            #expect(staleNames.count == 8)
            #expect(!staleNames.contains("svc_3"))
            #expect(
                try await client.call(.get, "\(Self.base)?stale_days=41", key: key).json["items"].arrayValue.isEmpty)
        }
    }

    @Test func getShowsReferencesAndUsageAndIsAudited() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "client", "type": "oauth_client", "value": Samples.value(.oauthClient)]))
            for name in ["tok_b", "tok_a"] {
                _ = try await client.call(
                    .post, Self.base, key: key,
                    body: json(["name": name, "type": "oauth", "value": Samples.value(.oauth)]))
            }
            let metadata = try await client.call(.get, "\(Self.base)/client", key: key)
            #expect(metadata.status == 200)
            #expect(metadata.json["referenced_by"] == .array([.string("tok_a"), .string("tok_b")]))
            #expect(metadata.json["usage"]["total_calls"] == .number(0))
            #expect(metadata.json["attributes"]["token_url"] == .string("https://provider.example/token"))
            #expect(metadata.json["attributes"]["client_secret"] == .null)
            let audit = try await client.call(.get, "/v1/audit?action=credential.read&credential=client", key: key)
            #expect(audit.json["items"].arrayValue.count == 1)

            let missing = try await client.call(.get, "\(Self.base)/nope", key: key)
            #expect(missing.status == 404)
            #expect(missing.errorCode == "CREDENTIAL_NOT_FOUND")
            let noVault = try await client.call(.get, "/v1/vaults/elsewhere/credentials/client", key: key)
            #expect(noVault.status == 404)
            #expect(noVault.errorCode == "VAULT_NOT_FOUND")
        }
    }

    @Test func patchChangesOnlyTheDescription() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(
                .post, Self.base, key: key, body: json(["name": "pat", "type": "bearer", "value": ["token": "t"]]))
            let updated = try await client.call(
                .patch, "\(Self.base)/pat", key: key, body: json(["description": "GitHub PAT for CI"]))
            #expect(updated.status == 200)
            #expect(updated.json["description"] == .string("GitHub PAT for CI"))
            let before = try await harness.dataSnapshot()
            for (body, field) in [
                (json(["name": "renamed"]), "name"), (json(["type": "cookie"]), "type"),
                (json(["value": ["token": "x"]]), "value"), (json(["description": "d", "color": "red"]), "color"),
                (json([:]), "description"), (json(["description": 5]), "description"),
            ] {
                let refused = try await client.call(.patch, "\(Self.base)/pat", key: key, body: body)
                #expect(refused.status == 422, "\(body)")
                #expect(refused.json["error"]["field"] == .string(field), "\(body)")
            }
            #expect(try await harness.dataSnapshot() == before)
            #expect(
                try await client.call(.patch, "\(Self.base)/ghost", key: key, body: json(["description": ""])).status
                    == 404)
        }
    }

    @Test func rotateReplacesTheValueAtomicallyAndIsAudited() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            let created = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "api", "type": "api_key", "value": ["key": "old-key", "header": "X-Key"]]))
            harness.clock.advance(by: 60)
            let rotated = try await client.call(
                .post, "\(Self.base)/api/rotate", key: key,
                body: json(["value": ["key": "new-key", "query_param": "api_key"]]))
            #expect(rotated.status == 200)
            #expect(rotated.json["last_rotated_at"] != created.json["last_rotated_at"])
            #expect(rotated.json["attributes"] == .object(["query_param": .string("api_key")]))
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "api") }
            #expect(stored == ["key": .string("new-key"), "query_param": .string("api_key")])

            // A value that does not fit the stored type is refused and changes nothing.
            let before = try await harness.dataSnapshot()
            let wrong = try await client.call(
                .post, "\(Self.base)/api/rotate", key: key, body: json(["value": ["token": "bearer-shaped"]]))
            #expect(wrong.status == 422)
            #expect(wrong.json["error"]["field"] == .string("value.key"))
            #expect(try await harness.dataSnapshot() == before)
            #expect(
                try await client.call(
                    .post, "\(Self.base)/ghost/rotate", key: key, body: json(["value": ["token": "x"]])
                ).status == 404)

            let audit = try await client.call(.get, "/v1/audit?credential=api&action=credential.rotate", key: key)
            #expect(audit.json["items"].arrayValue.map { $0["outcome"] } == [.string("failure"), .string("success")])
        }
    }

    @Test func deletingAnOAuthClientInUseNeedsForce() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "client", "type": "oauth_client", "value": Samples.value(.oauthClient)]))
            _ = try await client.call(
                .post, Self.base, key: key,
                body: json(["name": "tok", "type": "oauth", "value": Samples.value(.oauth)]))
            let before = try await harness.dataSnapshot()
            let refused = try await client.call(.delete, "\(Self.base)/client", key: key)
            #expect(refused.status == 409)
            #expect(refused.errorCode == "CREDENTIAL_IN_USE")
            #expect(refused.json["error"]["message"].stringValue?.contains("tok") == true)
            #expect(try await harness.dataSnapshot() == before)
            #expect(try await client.call(.delete, "\(Self.base)/client?force=maybe", key: key).status == 400)

            let forced = try await client.call(.delete, "\(Self.base)/client?force=true", key: key)
            #expect(forced.status == 204)
            let orphan = try await client.call(.get, "\(Self.base)/tok", key: key)
            #expect(orphan.json["status"] == .string("needs_reauth"))
            #expect(orphan.json["client"] == .null)
            #expect(orphan.json["next_refresh_at"] == .null)
            #expect(orphan.json["last_error"].stringValue?.contains("client") == true)

            #expect(try await client.call(.delete, "\(Self.base)/tok", key: key).status == 204)
            let gone = try await client.call(.delete, "\(Self.base)/tok", key: key)
            #expect(gone.status == 404)
            #expect(try await client.call(.get, Self.base, key: key).json["items"].arrayValue.isEmpty)
        }
    }

    @Test func oauthCredentialsMustNameAnOAuthClientInTheSameVault() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(
                .post, Self.base, key: key, body: json(["name": "plain", "type": "bearer", "value": ["token": "t"]]))
            let before = try await harness.dataSnapshot()
            for clientName in ["missing", "plain"] {
                var value = Samples.value(.oauth)
                value["client"] = clientName
                let refused = try await client.call(
                    .post, Self.base, key: key, body: json(["name": "tok", "type": "oauth", "value": value]))
                #expect(refused.status == 422)
                #expect(refused.json["error"]["field"] == .string("value.client"))
            }
            #expect(try await harness.dataSnapshot() == before)
        }
    }
}

@Suite("Admin API: vaults, audit, health")
struct VaultAndAuditAPITests {
    @Test func vaultsCanBeCreatedAndListedWithStatistics() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            let created = try await client.call(
                .post, "/v1/vaults", key: key, body: json(["name": "team-payments", "description": "Payments"]))
            #expect(created.status == 201)
            #expect(created.json["name"] == .string("team-payments"))
            let duplicate = try await client.call(.post, "/v1/vaults", key: key, body: json(["name": "team-payments"]))
            #expect(duplicate.status == 409)
            #expect(duplicate.errorCode == "VAULT_EXISTS")
            let badName = try await client.call(.post, "/v1/vaults", key: key, body: json(["name": "no spaces"]))
            #expect(badName.status == 422)
            #expect(badName.json["error"]["field"] == .string("name"))

            for (name, type) in [("a", "bearer"), ("b", "bearer"), ("c", "cookie")] {
                let value: [String: Any] = type == "bearer" ? ["token": "x"] : ["cookie": "y"]
                _ = try await client.call(
                    .post, "/v1/vaults/team-payments/credentials", key: key,
                    body: json(["name": name, "type": type, "value": value]))
            }
            let vault = try await client.call(.get, "/v1/vaults/team-payments", key: key)
            #expect(vault.json["stats"]["total_credentials"] == .number(3))
            #expect(vault.json["stats"]["by_type"] == .object(["bearer": .number(2), "cookie": .number(1)]))
            #expect(vault.json["stats"]["last_updated_at"].stringValue != nil)

            let list = try await client.call(.get, "/v1/vaults", key: key)
            let names = list.json["items"].arrayValue.compactMap { $0["name"].stringValue }
            #expect(names == ["default", "team-payments"])
            #expect(list.json["items"][0]["stats"]["total_credentials"] == .number(0))
            // The same credential name may exist in two vaults.
            let sameName = try await client.call(
                .post, "/v1/vaults/default/credentials", key: key,
                body: json(["name": "a", "type": "bearer", "value": ["token": "x"]]))
            #expect(sameName.status == 201)
            #expect(try await client.call(.get, "/v1/vaults/nowhere", key: key).errorCode == "VAULT_NOT_FOUND")
        }
    }

    @Test func auditRecordsActionsAndFiltersThem() async throws {
        try await Harness.withApp { harness, client in
            let key = harness.adminKey
            _ = try await client.call(.post, "/v1/vaults", key: key, body: json(["name": "ops"]))
            _ = try await client.call(
                .post, "/v1/vaults/ops/credentials", key: key,
                body: json(["name": "tok", "type": "bearer", "value": ["token": "x"]]))
            _ = try await client.call(
                .post, "/v1/vaults/ops/credentials/tok/rotate", key: key, body: json(["value": ["token": "y"]]))
            _ = try await client.call(.delete, "/v1/vaults/ops/credentials/tok", key: key)
            _ = try await client.call(.get, "/v1/vaults", key: "wrong-key")
            _ = try await client.call(.get, "/v1/vaults", key: "lk_live_unknownKeyOfTheRightShape")
            await harness.flushUsage()

            let all = try await client.call(.get, "/v1/audit", key: key)
            let actions = all.json["items"].arrayValue.compactMap { $0["action"].stringValue }
            #expect(
                actions == [
                    "auth.failure", "credential.delete", "credential.rotate", "credential.create", "vault.create",
                    "key.mint",
                ])
            // Failed authentications are aggregated: one row per reason and address per flush.
            let failure = all.json["items"][0]
            #expect(failure["outcome"] == .string("denied"))
            #expect(failure["actor"] == .string("anonymous"))
            #expect(failure["detail"]["reason"] == .string("unknown_key"))
            #expect(failure["detail"]["attempts"] == .number(2))

            let forCredential = try await client.call(.get, "/v1/audit?vault=ops&credential=tok", key: key)
            #expect(forCredential.json["items"].arrayValue.count == 3)
            let byActor = try await client.call(
                .get, "/v1/audit?actor=\(harness.adminActor)&action=vault.create", key: key)
            #expect(byActor.json["items"].arrayValue.count == 1)
            #expect(byActor.json["items"][0]["vault"] == .string("ops"))

            let paged = try await client.call(.get, "/v1/audit?limit=2", key: key)
            #expect(paged.json["items"].arrayValue.count == 2)
            let cursor = try #require(paged.json["next_cursor"].stringValue)
            let next = try await client.call(.get, "/v1/audit?limit=10&cursor=\(cursor)", key: key)
            #expect(
                next.json["items"].arrayValue.compactMap { $0["action"].stringValue } == Array(actions.dropFirst(2)))

            let future = try await client.call(.get, "/v1/audit?since=2999-01-01T00:00:00Z", key: key)
            #expect(future.json["items"].arrayValue.isEmpty)
            let past = try await client.call(.get, "/v1/audit?until=2000-01-01T00:00:00Z", key: key)
            #expect(past.json["items"].arrayValue.isEmpty)

            // The log is append-only, even for the database owner.
            _ = try await harness.database.withClient { client in
                await #expect(throws: (any Error).self) { try await client.query("DELETE FROM audit_events") }
                await #expect(throws: (any Error).self) {
                    try await client.query("UPDATE audit_events SET actor = 'x'")
                }
            }
        }
    }

    @Test func healthAndReadiness() async throws {
        try await Harness.withApp { harness, client in
            let health = try await client.call(.get, "/healthz", key: nil)
            #expect(health.status == 200)
            #expect(health.json["status"] == .string("ok"))
            let ready = try await client.call(.get, "/readyz", key: nil)
            #expect(ready.status == 200)
            #expect(ready.json["status"] == .string("ready"))
            #expect(health.headers[.init("X-Request-Id")!] != nil)
            // A database with a migration rolled back is not ready.
            _ = try await harness.database.withClient { client in
                try await client.query("DELETE FROM schema_migrations WHERE version = 4")
            }
            let notReady = try await client.call(.get, "/readyz", key: nil)
            #expect(notReady.status == 503)
            #expect(notReady.errorCode == "DATABASE_UNAVAILABLE")
        }
    }
}
