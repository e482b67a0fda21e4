import AsyncAlgorithms
package import Foundation
package import LatchkeyCore
package import LatchkeyOAuth
package import LatchkeyStore
package import Logging
import ServiceLifecycle

/// How one replica's refresher runs.
package struct RefresherSettings: Sendable {
    /// Names this replica's claims (`lease_owner`): host, process and a random part.
    package var owner: String
    /// Provider calls in flight at once on this replica.
    package var concurrency: Int = 16
    /// Provider calls in flight at once to one token endpoint host.
    package var perHostConcurrency: Int = 8
    /// Due credentials claimed per scan.
    package var batchSize: Int = 64
    /// How long a claim holds. Longer than the provider timeout plus the
    /// database round trips around it: the refresher never starts a provider
    /// call with less than `providerTimeout + safetyMargin` of lease left.
    package var lease: Duration = .seconds(120)
    package var safetyMargin: Duration = .seconds(10)

    package init(owner: String = RefresherSettings.defaultOwner()) {
        self.owner = owner
    }

    package static func defaultOwner() -> String {
        let host = ProcessInfo.processInfo.hostName
        let random = UUID().uuidString.prefix(8).lowercased()
        return "\(host.prefix(64)):\(ProcessInfo.processInfo.processIdentifier):\(random)"
    }
}

/// Refreshes OAuth tokens: claims due credentials in batches, calls their
/// providers with a bounded number of calls per replica and per provider
/// host, decides what each answer means, and has the store apply it under
/// the claim's revision check. Safe with any number of replicas on one
/// database (see `VaultStore.claimDue`).
package struct TokenRefresher: Sendable {
    let store: VaultStore
    let tokens: TokenEndpointClient
    let policy: RefreshPolicy
    let settings: RefresherSettings
    let now: @Sendable () -> Date
    /// A random number in 0...1 for back-off jitter (injected so tests are exact).
    let jitter: @Sendable () -> Double
    let metrics: RefreshMetrics
    let hosts: HostLimiter
    let logger: Logger

    package init(
        store: VaultStore, tokens: TokenEndpointClient, policy: RefreshPolicy,
        settings: RefresherSettings = RefresherSettings(), now: @escaping @Sendable () -> Date,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }, metrics: RefreshMetrics = .disabled,
        logger: Logger
    ) {
        self.store = store
        self.tokens = tokens
        self.policy = policy
        var settings = settings
        // A lease shorter than one provider call could lapse mid-call.
        let minimumLease = tokens.timeout + settings.safetyMargin * 2
        if settings.lease < minimumLease { settings.lease = minimumLease }
        self.settings = settings
        self.now = now
        self.jitter = jitter
        self.metrics = metrics
        self.hosts = HostLimiter(limit: settings.perHostConcurrency)
        self.logger = logger
    }

    /// The name this replica's claims carry.
    package var owner: String { self.settings.owner }

    /// Refreshes every credential that is due. Returns how many attempts
    /// were made. Stops claiming at graceful shutdown and gives back what it
    /// claimed but had not started; calls in flight finish and are recorded.
    @discardableResult
    package func drainDue() async -> Int {
        var attempted = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let batch: [ClaimedCredential]
            do {
                batch = try await self.store.claimDue(
                    now: self.now(), owner: self.settings.owner, lease: self.settings.lease,
                    limit: self.settings.batchSize)
            } catch {
                self.logger.warning("refresh scan failed", metadata: ["error.type": "\(type(of: error))"])
                break
            }
            if batch.isEmpty { break }
            attempted += await self.process(batch)
            if batch.count < self.settings.batchSize { break }
        }
        return attempted
    }

    /// Runs a batch with at most `concurrency` provider calls in flight.
    private func process(_ batch: [ClaimedCredential]) async -> Int {
        await withTaskGroup(of: Bool.self) { group in
            var pending = batch[...]
            var inFlight = 0
            var attempted = 0
            while true {
                while inFlight < max(1, self.settings.concurrency), let next = pending.popFirst() {
                    group.addTask { await self.run(next) }
                    inFlight += 1
                }
                guard let finished = await group.next() else { break }
                inFlight -= 1
                if finished { attempted += 1 }
            }
            return attempted
        }
    }

    /// One claimed credential, start to finish. Returns whether the provider was called.
    private func run(_ claimed: ClaimedCredential) async -> Bool {
        let host = claimed.client.flatMap { OAuthClientConfiguration(sealedValue: $0) }.map(\.tokenHost) ?? ""
        await self.hosts.acquire(host)
        let attempted = await self.runHoldingHost(claimed)
        await self.hosts.release(host)
        return attempted
    }

    private func runHoldingHost(_ claimed: ClaimedCredential) async -> Bool {
        let needed = RefreshPolicy.seconds(self.tokens.timeout + self.settings.safetyMargin)
        guard !Task.isShuttingDownGracefully, claimed.leaseExpiresAt.timeIntervalSince(self.now()) >= needed else {
            // Shutting down, or waited so long for the host that the lease
            // could lapse mid-call: give it back for the next scan.
            try? await self.store.release(claimed)
            return false
        }
        let started = ContinuousClock.now
        let outcome = await self.attempt(claimed)
        self.metrics.recordAttempt(outcome, duration: ContinuousClock.now - started)
        do {
            let completion = try await self.store.complete(
                claimed, outcome: outcome, now: self.now(), policy: self.policy)
            self.log(claimed, outcome, completion)
        } catch {
            // The lease lapses and another pass retries; the provider's
            // answer is lost only if it rotated the refresh token, which is
            // why the lease outlives the call and the write is one statement.
            self.logger.error(
                "could not record a refresh outcome",
                metadata: [
                    "vault": "\(claimed.vault)", "credential": "\(claimed.name)", "error.type": "\(type(of: error))",
                ])
        }
        return true
    }

    /// An admin's "refresh now": claims the credential (409
    /// `REFRESH_IN_PROGRESS` while another claim holds it), refreshes and
    /// records the outcome, which it returns.
    package func refreshNow(vault: String, name: String, by principal: Principal) async throws -> RefreshOutcome {
        let claimed = try await self.store.claim(
            vault: vault, name: name, now: self.now(), owner: self.settings.owner, lease: self.settings.lease)
        let started = ContinuousClock.now
        let outcome = await self.attempt(claimed)
        self.metrics.recordAttempt(outcome, duration: ContinuousClock.now - started)
        let completion = try await self.store.complete(
            claimed, outcome: outcome, now: self.now(), policy: self.policy, actor: principal)
        self.log(claimed, outcome, completion)
        return outcome
    }

    /// Records the "about to expire and cannot be refreshed" webhook events.
    package func warnExpiring() async {
        do {
            try await self.store.enqueueExpiringWarnings(now: self.now(), window: self.policy.window)
        } catch {
            self.logger.warning("expiry scan failed", metadata: ["error.type": "\(type(of: error))"])
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
            if let idToken = issued.idToken { value["id_token"] = .string(idToken) }
            if let granted = issued.scopes { value["scopes"] = .array(granted.map(JSONValue.string)) }
            return .refreshed(
                value: value, expiresAt: issued.expiresIn.map { now.addingTimeInterval(Double($0)) },
                providerFields: issued.providerFields)
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

    private func log(_ claimed: ClaimedCredential, _ outcome: RefreshOutcome, _ completion: RefreshCompletion) {
        var metadata: Logger.Metadata = [
            "vault": "\(claimed.vault)", "credential": "\(claimed.name)", "outcome": "\(outcome.label)",
        ]
        if completion == .superseded {
            metadata["superseded"] = "true"
            self.logger.info("refresh outcome dropped: the credential changed meanwhile", metadata: metadata)
            return
        }
        switch outcome {
        case .refreshed: self.logger.debug("refreshed", metadata: metadata)
        case .backoff(let retryAt, let reason):
            metadata["reason"] = "\(reason)"
            metadata["retry_at"] = "\(ISO8601DateFormatter().string(from: retryAt))"
            self.logger.warning("refresh failed; backing off", metadata: metadata)
        case .needsReauth(let reason):
            metadata["reason"] = "\(reason)"
            self.logger.warning("refresh refused; credential needs re-authorisation", metadata: metadata)
        }
    }
}

extension RefreshOutcome {
    /// The metric and log label of an outcome.
    package var label: String {
        switch self {
        case .refreshed: "refreshed"
        case .backoff: "backoff"
        case .needsReauth: "needs_reauth"
        }
    }
}

/// Bounds concurrent provider calls per token endpoint host, so one replica
/// never has more than `limit` requests open against one provider however
/// many of its tokens fall due together. Waiters are served first come,
/// first served. (A counting semaphore keyed by host: neither NIO nor
/// swift-async-algorithms offers an async one.)
package actor HostLimiter {
    let limit: Int
    private var inFlight: [String: Int] = [:]
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    package init(limit: Int) {
        self.limit = max(1, limit)
    }

    package func acquire(_ host: String) async {
        if self.inFlight[host, default: 0] < self.limit {
            self.inFlight[host, default: 0] += 1
            return
        }
        await withCheckedContinuation { self.waiters[host, default: []].append($0) }
    }

    package func release(_ host: String) {
        if var queue = self.waiters[host], !queue.isEmpty {
            // Hand the slot straight to the next waiter: the count stays.
            let next = queue.removeFirst()
            self.waiters[host] = queue.isEmpty ? nil : queue
            next.resume()
        } else {
            self.inFlight[host, default: 1] -= 1
            if self.inFlight[host] == 0 { self.inFlight[host] = nil }
        }
    }

    /// Calls in flight to `host` (for tests and metrics).
    package func inFlight(_ host: String) -> Int { self.inFlight[host] ?? 0 }
}

/// Runs `work` every `interval` until graceful shutdown (the refresher's
/// passes, webhook delivery, metric sampling). A pass that fails logs and
/// the next tick tries again: these services never end the group.
package struct PeriodicService: Service {
    let interval: Duration
    let runAtStart: Bool
    let work: @Sendable () async -> Void

    package init(interval: Duration, runAtStart: Bool = false, work: @escaping @Sendable () async -> Void) {
        self.interval = interval
        self.runAtStart = runAtStart
        self.work = work
    }

    package func run() async throws {
        if self.runAtStart { await self.work() }
        for await _ in AsyncTimerSequence(interval: self.interval, clock: .continuous).cancelOnGracefulShutdown() {
            await self.work()
        }
    }
}
