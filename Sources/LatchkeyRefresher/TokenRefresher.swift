import AsyncAlgorithms
package import Foundation
package import LatchkeyCore
package import LatchkeyOAuth
package import LatchkeyStore
package import Logging
import ServiceLifecycle

/// Refreshes OAuth tokens: decides, for one claimed credential, which grant
/// to use and what the provider's answer means (the store applies it under
/// the claim), and drains everything due with a bounded number of provider
/// calls at once. Safe with any number of replicas on one database: the
/// store's claim gives each due credential to exactly one of them.
package struct TokenRefresher: Sendable {
    let store: VaultStore
    let tokens: TokenEndpointClient
    let policy: RefreshPolicy
    let now: @Sendable () -> Date
    /// A random number in 0...1 for back-off jitter (injected so tests are exact).
    let jitter: @Sendable () -> Double
    let logger: Logger

    package init(
        store: VaultStore, tokens: TokenEndpointClient, policy: RefreshPolicy, now: @escaping @Sendable () -> Date,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }, logger: Logger
    ) {
        self.store = store
        self.tokens = tokens
        self.policy = policy
        self.now = now
        self.jitter = jitter
        self.logger = logger
    }

    /// Refreshes every credential that is due, `concurrency` at a time.
    /// Returns how many were attempted. Stops early at graceful shutdown,
    /// letting in-flight refreshes finish.
    @discardableResult
    package func drainDue(concurrency: Int = 8) async -> Int {
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<max(1, concurrency) {
                group.addTask {
                    var attempted = 0
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        do {
                            let claimed = try await self.store.refreshNextDue(now: self.now(), policy: self.policy) {
                                await self.attempt($0)
                            }
                            guard claimed else { break }
                            attempted += 1
                        } catch {
                            self.logger.warning(
                                "refresh pass failed", metadata: ["error.type": "\(type(of: error))"])
                            break
                        }
                    }
                    return attempted
                }
            }
            return await group.reduce(0, +)
        }
    }

    /// An admin's "refresh now". Returns what happened (already recorded).
    package func refreshNow(vault: String, name: String, by principal: Principal) async throws -> RefreshOutcome? {
        try await self.store.refreshNow(vault: vault, name: name, by: principal, now: self.now(), policy: self.policy) {
            await self.attempt($0)
        }
    }

    /// One attempt for one claimed credential. Never throws: every answer
    /// becomes an outcome the store can record.
    func attempt(_ claimed: ClaimedCredential) async -> RefreshOutcome {
        guard let clientValue = claimed.client, let client = OAuthClientConfiguration(sealedValue: clientValue) else {
            return .needsReauth(reason: "its oauth_client is missing")
        }
        let scopes = claimed.value["scopes"].flatMap { value -> [String]? in
            guard case .array(let items) = value else { return nil }
            return items.compactMap(\.stringValue)
        }
        let result: Result<TokenSet, TokenFailure>
        if claimed.type == .clientCredentials {
            result = await self.tokens.clientCredentials(client, scopes: scopes)
        } else {
            guard let refreshToken = claimed.value["refresh_token"]?.stringValue else {
                return .needsReauth(reason: "it has no refresh token")
            }
            result = await self.tokens.refresh(client, refreshToken: refreshToken)
        }
        let now = self.now()
        switch result {
        case .success(let issued):
            var value = claimed.value
            value["access_token"] = .string(issued.accessToken)
            // No refresh token in the answer: keep the one we have.
            if let refreshToken = issued.refreshToken { value["refresh_token"] = .string(refreshToken) }
            if let granted = issued.scopes { value["scopes"] = .array(granted.map(JSONValue.string)) }
            return .refreshed(value: value, expiresAt: issued.expiresIn.map { now.addingTimeInterval(Double($0)) })
        case .failure(let failure) where failure.needsReauthorization:
            guard case .rejected(let code) = failure else { return .needsReauth(reason: "refused") }
            return .needsReauth(reason: "the provider refused the refresh (\(code))")
        case .failure(let failure):
            let (reason, retryAfter): (String, Int?) =
                switch failure {
                case .unavailable(let reason, let retryAfter): (reason, retryAfter)
                case .rejected(let code): ("the provider answered \(code)", nil)
                case .malformed(let reason): (reason, nil)
                }
            let wait = self.policy.backoff(
                failures: claimed.refreshFailures + 1, retryAfter: retryAfter, jitter: self.jitter())
            return .backoff(retryAt: now.addingTimeInterval(wait), reason: reason)
        }
    }
}

/// Runs the refresher every `interval` in the application's service group
/// (and alone under `latchkey refresher`, later). A failed pass is logged and
/// the next tick tries again; the service never ends the group.
package struct RefresherService: Service {
    let refresher: TokenRefresher
    let interval: Duration
    let concurrency: Int

    package init(refresher: TokenRefresher, interval: Duration = .seconds(5), concurrency: Int = 8) {
        self.refresher = refresher
        self.interval = interval
        self.concurrency = concurrency
    }

    package func run() async throws {
        for await _ in AsyncTimerSequence(interval: self.interval, clock: .continuous).cancelOnGracefulShutdown() {
            await self.refresher.drainDue(concurrency: self.concurrency)
        }
    }
}
