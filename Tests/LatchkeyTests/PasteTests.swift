import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@Suite("OAuth clients from presets, and pasted tokens validated by a real refresh")
struct PasteTests {
    static let base = "/v1/vaults/default/credentials"

    /// An app, a simulator, and an oauth_client `sim` pointing at it.
    func withSimulatedProvider(
        _ body: @escaping @Sendable (Harness, any TestClientProtocol, ProviderSimulator) async throws -> Void
    ) async throws {
        try await Harness.withSimulatedClient(
            configure: { $0.providerTimeout = .seconds(10) },
            client: { _ in ["token_auth_method": "client_secret_post"] }, body)
    }

    @Test func aPastedRefreshTokenIsRefreshedAndTheReturnedTokensStored() async throws {
        try await self.withSimulatedProvider { harness, client, simulator in
            let pasted = simulator.seedRefreshToken(clientID: "app")
            let response = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "tok", "type": "oauth",
                    "value": ["client": "sim", "access_token": "old", "refresh_token": pasted],
                ]))
            #expect(response.status == 201, "\(response.body)")
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 1)
            // The provider rotated: the pasted token is dead, and what is stored is what it returned.
            #expect(!simulator.isLive(refreshToken: pasted))
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            let storedRefresh = try #require(stored["refresh_token"]?.stringValue)
            #expect(simulator.isLive(refreshToken: storedRefresh))
            #expect(stored["access_token"]?.stringValue?.hasPrefix("at_app_") == true)
            // Scheduled a refresh window (300 s) before the provider's expiry (3600 s).
            let now = harness.clock.now
            #expect(
                response.json["expires_at"]
                    == .string(ISO8601DateFormatter().string(from: now.addingTimeInterval(3600))))
            #expect(
                response.json["next_refresh_at"]
                    == .string(ISO8601DateFormatter().string(from: now.addingTimeInterval(3300))))
            #expect(!response.body.contains(storedRefresh))
        }
    }

    @Test func aRejectedRefreshTokenStoresNothingAndSaysWhy() async throws {
        try await self.withSimulatedProvider { harness, client, simulator in
            let before = try await harness.dataSnapshot()
            let response = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "tok", "type": "oauth", "value": ["client": "sim", "refresh_token": "rt_not_issued"],
                ]))
            #expect(response.status == 422)
            #expect(response.errorCode == "REFRESH_TOKEN_REJECTED")
            #expect(response.json["error"]["provider_error"] == .string("invalid_grant"))
            #expect(!response.body.contains("rt_not_issued"))
            #expect(try await harness.dataSnapshot() == before)
            let audit = try await client.call(.get, "/v1/audit?credential=tok", key: harness.adminKey)
            #expect(audit.json["items"][0]["outcome"] == .string("failure"))
            #expect(audit.json["items"][0]["detail"]["provider_error"] == .string("invalid_grant"))
            #expect(!harness.logs.text.contains("rt_not_issued"))
        }
    }

    @Test func anUnreachableOrFailingProviderStoresNothing() async throws {
        try await self.withSimulatedProvider { harness, client, simulator in
            let before = try await harness.dataSnapshot()
            simulator.update(clientID: "app") { $0.failNext = 1 }
            let failing = try await client.pasteSimulatedToken(harness, simulator)
            #expect(failing.status == 502)
            #expect(failing.errorCode == "PROVIDER_UNAVAILABLE")
            _ = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "gone", "type": "oauth_client",
                    "value": ["client_id": "a", "client_secret": "b", "token_url": "http://127.0.0.1:1/token"],
                ]))
            let snapshot = try await harness.dataSnapshot()
            let unreachable = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json(["name": "tok", "type": "oauth", "value": ["client": "gone", "refresh_token": "rt"]]))
            #expect(unreachable.status == 502)
            #expect(unreachable.errorCode == "PROVIDER_UNAVAILABLE")
            #expect(try await harness.dataSnapshot() == snapshot)
            #expect(snapshot != before)  // only the oauth_client was added
        }
    }

    @Test func rotatingAnOAuthCredentialValidatesTheSameWay() async throws {
        try await self.withSimulatedProvider { harness, client, simulator in
            let first = simulator.seedRefreshToken(clientID: "app")
            _ = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json(["name": "tok", "type": "oauth", "value": ["client": "sim", "refresh_token": first]]))
            let before = try await harness.dataSnapshot()
            let rejected = try await client.call(
                .post, "\(Self.base)/tok/rotate", key: harness.adminKey,
                body: json(["value": ["client": "sim", "refresh_token": "rt_bogus"]]))
            #expect(rejected.errorCode == "REFRESH_TOKEN_REJECTED")
            #expect(try await harness.dataSnapshot() == before)
            let second = simulator.seedRefreshToken(clientID: "app")
            let rotated = try await client.call(
                .post, "\(Self.base)/tok/rotate", key: harness.adminKey,
                body: json(["value": ["client": "sim", "refresh_token": second]]))
            #expect(rotated.status == 200, "\(rotated.body)")
            #expect(!simulator.isLive(refreshToken: second))
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 3)
        }
    }

    @Test func presetsPrefillEverythingButTheClientsOwnIDAndSecret() async throws {
        try await Harness.withApp { harness, client in
            let providers = try await client.call(.get, "/v1/providers", key: harness.adminKey)
            #expect(providers.json["items"].arrayValue.count >= 10)
            let google = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "google", "type": "oauth_client",
                    "value": ["provider": "google", "client_id": "id", "client_secret": "s"],
                ]))
            #expect(google.status == 201, "\(google.body)")
            #expect(google.json["attributes"]["token_url"] == .string("https://oauth2.googleapis.com/token"))
            #expect(google.json["attributes"]["provider"] == .string("google"))
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "google") }
            #expect(
                stored["authorize_params"]
                    == .object(["access_type": .string("offline"), "prompt": .string("consent")]))
            // Explicit fields win over the preset.
            let custom = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "custom", "type": "oauth_client",
                    "value": [
                        "provider": "slack", "client_id": "id", "client_secret": "s",
                        "token_url": "https://gov.slack.example/token",
                    ],
                ]))
            #expect(custom.json["attributes"]["token_url"] == .string("https://gov.slack.example/token"))
            #expect(custom.json["attributes"]["scope_separator"] == .string(","))
            let before = try await harness.dataSnapshot()
            let unknown = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "x", "type": "oauth_client",
                    "value": ["provider": "myspace", "client_id": "id", "client_secret": "s"],
                ]))
            #expect(unknown.status == 422)
            #expect(unknown.json["error"]["field"] == .string("value.provider"))
            #expect(try await harness.dataSnapshot() == before)
            // A proxy key may not read presets (admin only).
            let proxy = try await mintKey(
                client, with: harness.adminKey, ["name": "p", "role": "proxy", "vaults": ["*"]])
            #expect(try await client.call(.get, "/v1/providers", key: proxy.key).status == 403)
        }
    }
}
