package import Foundation
import Synchronization

/// A token bucket per API key, per replica: `rate` requests a second with
/// bursts up to `burst`. Refused requests learn how long until a token is
/// free (`Retry-After`). Limits are per replica by design: a shared counter
/// would put a database write on every request.
package final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let buckets = Mutex<[UUID: Bucket]>([:])
    package let rate: Double
    package let burst: Double

    package init(rate: Double, burst: Double) {
        precondition(rate > 0 && burst >= 1)
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token; nil when allowed, else the seconds to wait.
    package func acquire(_ key: UUID, now: Date) -> Int? {
        self.buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: self.burst, updated: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / self.rate).rounded(.up)))
        }
    }
}
