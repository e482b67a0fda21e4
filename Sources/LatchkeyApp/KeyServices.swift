import AsyncAlgorithms
package import AsyncHTTPClient
package import Foundation
package import LatchkeyHTTP
package import LatchkeyStore
package import Logging
package import PostgresNIO
import ServiceLifecycle

/// Keeps a per-replica cache honest: LISTENs on `channel` (notified by
/// triggers on every change that matters: `latchkey_api_keys` for what a key
/// may do, `latchkey_credentials` for what an injection would answer) and
/// drops what changed, so a revocation or rotation anywhere takes effect here
/// within the notification's latency. While disconnected the cache is
/// frozen (it serves what it holds, adds nothing) and the listener reconnects
/// every second; on reconnection the cache starts empty (a full reload).
package struct InvalidationListener: Service {
    let client: PostgresClient
    let channel: String
    let cache: any InvalidatingCache
    let logger: Logger

    package static let apiKeys = "latchkey_api_keys"
    package static let credentials = "latchkey_credentials"

    package init(client: PostgresClient, channel: String, cache: any InvalidatingCache, logger: Logger) {
        self.client = client
        self.channel = channel
        self.cache = cache
        self.logger = logger
    }

    package func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.client.withConnection { connection in
                        try await connection.listen(on: self.channel) { notifications in
                            // LISTEN is active: from here no change is missed.
                            self.cache.setLive(true)
                            self.logger.debug("listening for changes", metadata: ["channel": "\(self.channel)"])
                            for try await notification in notifications {
                                self.cache.invalidate(payload: notification.payload)
                            }
                        }
                    }
                } catch  where !Task.isCancelled {
                    self.logger.warning(
                        "change listener lost its connection; its cache is frozen until it is back",
                        metadata: ["channel": "\(self.channel)", "error.type": "\(type(of: error))"])
                }
                self.cache.setLive(false)
                // A reconnection back-off, not a wait for an event.
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// Writes the usage the authentication path aggregated in memory (calls,
/// last seen, blocked attempts, failed authentications) every `interval`, and
/// once more at graceful shutdown, so the numbers survive a restart. A failed
/// write puts the batch back for the next tick. Each tick also audits keys
/// that have expired.
package struct UsageFlusher: Service {
    let usage: UsageRecorder
    let keys: KeyStore
    let interval: Duration
    let now: @Sendable () -> Date
    let logger: Logger

    package init(
        usage: UsageRecorder, keys: KeyStore, interval: Duration, now: @escaping @Sendable () -> Date, logger: Logger
    ) {
        self.usage = usage
        self.keys = keys
        self.interval = interval
        self.now = now
        self.logger = logger
    }

    package func run() async throws {
        for await _ in AsyncTimerSequence(interval: self.interval, clock: .continuous).cancelOnGracefulShutdown() {
            await self.flush()
        }
        await self.flush()
    }

    /// One flush; also called by tests that need the numbers now.
    package func flush() async {
        let batch = self.usage.drain()
        do {
            try await self.keys.flush(batch)
        } catch {
            self.usage.restore(batch)
            self.logger.warning("usage flush failed; will retry", metadata: ["error.type": "\(type(of: error))"])
        }
        do {
            try await self.keys.auditExpiredKeys(now: self.now())
        } catch {
            self.logger.warning("expired-key audit failed; will retry", metadata: ["error.type": "\(type(of: error))"])
        }
    }
}

/// Owns the outbound HTTP client's lifetime: it lives until graceful
/// shutdown (after the server, which is stopped first), then is shut down.
package struct HTTPClientService: Service {
    let client: HTTPClient

    package init(client: HTTPClient) { self.client = client }

    package func run() async throws {
        try? await gracefulShutdown()
        try await self.client.shutdown()
    }
}
