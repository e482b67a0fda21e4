package import Foundation
package import LatchkeyStore
import Synchronization

/// Aggregates, in memory, what the authentication path observes (calls per
/// key per hour, last seen, blocked attempts, failed authentications), so the
/// hot path never writes to the database; `drain()` hands the batch to the
/// periodic flush.
package final class UsageRecorder: Sendable {
    private let batch = Mutex(KeyUsageBatch())
    /// Bounds the distinct failure rows one flush can write, whatever a
    /// client floods us with; beyond it failures still count under one row.
    private let maxFailureRows = 1_000

    package init() {}

    package func recordCall(_ key: UUID, at now: Date) {
        self.batch.withLock { Self.call(key, at: now, in: &$0) }
    }

    /// A successful injection of `credential` by `key` (counted per UTC day).
    package func recordUse(credential: UUID, key: UUID, at now: Date) {
        self.batch.withLock { Self.use(credential, by: key, at: now, in: &$0) }
    }

    /// Both of the above, for a call that was an injection, under one lock.
    package func recordInjection(credential: UUID, key: UUID, at now: Date) {
        self.batch.withLock { batch in
            Self.call(key, at: now, in: &batch)
            Self.use(credential, by: key, at: now, in: &batch)
        }
    }

    private static func call(_ key: UUID, at now: Date, in batch: inout KeyUsageBatch) {
        let hour = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
        batch.calls[key, default: [:]][hour, default: 0] += 1
        batch.lastSeen[key] = max(batch.lastSeen[key] ?? now, now)
    }

    private static func use(_ credential: UUID, by key: UUID, at now: Date, in batch: inout KeyUsageBatch) {
        let day = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let use = CredentialUseKey(credentialID: credential, keyID: key, day: day)
        let entry = batch.credentialUses[use] ?? (calls: 0, lastUsed: now)
        batch.credentialUses[use] = (calls: entry.calls + 1, lastUsed: max(entry.lastUsed, now))
    }

    package func recordBlocked(_ key: UUID, address: String?) {
        self.batch.withLock { batch in
            var entry = batch.blocked[key] ?? (count: 0, addresses: [])
            entry.count += 1
            if let address, entry.addresses.count < 20 { entry.addresses.insert(address) }
            batch.blocked[key] = entry
        }
    }

    package func recordFailure(reason: String, keyPrefix: String?, address: String?) {
        self.batch.withLock { batch in
            var key = AuthFailureKey(reason: reason, keyPrefix: keyPrefix, address: address)
            if batch.failures[key] == nil, batch.failures.count >= self.maxFailureRows {
                key = AuthFailureKey(reason: "other_failures", keyPrefix: nil, address: nil)
            }
            batch.failures[key, default: 0] += 1
        }
    }

    /// Takes everything recorded so far.
    package func drain() -> KeyUsageBatch {
        self.batch.withLock { batch in
            defer { batch = KeyUsageBatch() }
            return batch
        }
    }

    /// Puts back a batch whose flush failed, so counts survive a database outage.
    package func restore(_ failed: KeyUsageBatch) {
        self.batch.withLock { batch in
            for (key, hours) in failed.calls {
                for (hour, calls) in hours { batch.calls[key, default: [:]][hour, default: 0] += calls }
            }
            for (key, seen) in failed.lastSeen { batch.lastSeen[key] = max(batch.lastSeen[key] ?? seen, seen) }
            for (key, blocked) in failed.blocked {
                var entry = batch.blocked[key] ?? (count: 0, addresses: [])
                entry.count += blocked.count
                entry.addresses.formUnion(blocked.addresses)
                batch.blocked[key] = entry
            }
            for (key, count) in failed.failures { batch.failures[key, default: 0] += count }
            for (use, entry) in failed.credentialUses {
                let current = batch.credentialUses[use] ?? (calls: 0, lastUsed: entry.lastUsed)
                batch.credentialUses[use] = (
                    calls: current.calls + entry.calls, lastUsed: max(current.lastUsed, entry.lastUsed)
                )
            }
        }
    }
}
