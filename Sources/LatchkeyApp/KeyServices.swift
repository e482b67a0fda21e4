import AsyncAlgorithms
package import AsyncHTTPClient
package import Foundation
package import LatchkeyHTTP
package import LatchkeyStore
package import Logging
package import PostgresNIO
import ServiceLifecycle

/// Keeps this replica's key cache honest: LISTENs on `latchkey_api_keys`
/// (notified by a trigger on every change to what a key may do) and drops the
/// changed key, so a revocation anywhere takes effect here within the
/// notification's latency. While disconnected the cache is switched off
/// (lookups go to the database) and the listener reconnects every second.
package struct KeyInvalidationListener: Service {
    let client: PostgresClient
    let cache: KeyCache
    let logger: Logger
    static let channel = "latchkey_api_keys"

    package init(client: PostgresClient, cache: KeyCache, logger: Logger) {
        self.client = client
        self.cache = cache
        self.logger = logger
    }

    package func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.client.withConnection { connection in
                        try await connection.listen(on: Self.channel) { notifications in
                            // LISTEN is active: from here no change is missed.
                            self.cache.setLive(true)
                            self.logger.debug("listening for API key changes")
                            for try await notification in notifications {
                                if let id = UUID(uuidString: notification.payload) {
                                    self.cache.invalidate(keyID: id)
                                } else {
                                    self.cache.setLive(true)
                                }
                            }
                        }
                    }
                } catch  where !Task.isCancelled {
                    self.logger.warning(
                        "API key change listener lost its connection; bypassing the key cache until it is back",
                        metadata: ["error.type": "\(type(of: error))"])
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
