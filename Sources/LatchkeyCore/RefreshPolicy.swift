package import Foundation

/// When OAuth tokens are refreshed and how failures back off: pure decisions,
/// so the store, the refresher and tests agree and time can be injected.
package struct RefreshPolicy: Sendable, Hashable {
    /// Refresh this long before expiry (`LATCHKEY_REFRESH_WINDOW`).
    package var window: Duration = .seconds(300)
    /// The first retry after a transient failure waits about this long...
    package var baseBackoff: Duration = .seconds(30)
    /// ...doubling per consecutive failure, up to this.
    package var maxBackoff: Duration = .seconds(3600)

    package init(window: Duration = .seconds(300)) {
        self.window = window
    }

    /// When a credential should next be refreshed: a window before expiry,
    /// for `oauth` tokens that can be refreshed and do expire; at once for a
    /// `client_credentials` credential without a token yet (it is minted on
    /// first use). Tokens without an expiry are not refreshed until a use
    /// fails (SPEC section 4).
    package func nextRefresh(
        type: CredentialType, expiresAt: Date?, hasRefreshToken: Bool, hasAccessToken: Bool, now: Date
    ) -> Date? {
        switch type {
        case .oauth:
            guard hasRefreshToken, let expiresAt else { return nil }
            return self.refreshTime(expiresAt: expiresAt, now: now)
        case .clientCredentials:
            guard hasAccessToken else { return now }
            return expiresAt.map { self.refreshTime(expiresAt: $0, now: now) }
        default:
            return nil
        }
    }

    /// A window before expiry, but never more than half the token's remaining
    /// lifetime early: a provider issuing tokens shorter-lived than the window
    /// (60 s tokens, a 300 s window) would otherwise have every fresh token due
    /// at once, and the refresher would hammer it in a loop.
    func refreshTime(expiresAt: Date, now: Date) -> Date {
        let remaining = max(0, expiresAt.timeIntervalSince(now))
        return expiresAt.addingTimeInterval(-min(Self.seconds(self.window), remaining / 2))
    }

    /// How long to wait after the `failures`-th consecutive transient failure:
    /// exponential with "equal jitter" (half fixed, half random, so replicas
    /// retrying the same provider spread out), never sooner than the
    /// provider's `Retry-After`. `jitter` is a random number in 0...1.
    package func backoff(failures: Int, retryAfter: Int?, jitter: Double) -> TimeInterval {
        let exponent = Double(max(0, min(failures - 1, 30)))
        let capped = min(Self.seconds(self.maxBackoff), Self.seconds(self.baseBackoff) * pow(2, exponent))
        let jittered = capped / 2 + capped / 2 * min(max(jitter, 0), 1)
        return max(jittered, Double(retryAfter ?? 0))
    }

    package static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
