import Foundation
package import LatchkeyStore
import Synchronization

/// The per-replica cache of credentials for the injection path, so a warm
/// credential costs no database round trip.
///
/// It holds rows *sealed*, and the injection path opens one per request
/// (AES-256-GCM over a few hundred bytes: about a microsecond). Holding
/// opened values instead would save that microsecond but keep every secret
/// in plaintext in long-lived memory, where a heap or core dump would find
/// them all; sealed, a dump yields ciphertext.
///
/// Entries are dropped when Postgres announces a change (LISTEN/NOTIFY on
/// `latchkey_credentials`, see `InvalidationListener`); when the listener
/// (re)connects the cache starts empty (a full reload), and while it is not
/// connected the cache is bypassed, so a rotation or revocation on another
/// replica is never missed, only paid for with a database read.
package final class CredentialCache: Sendable, InvalidatingCache {
    private struct State {
        var entries: [String: SealedCredential] = [:]
        var live = false
        /// Bumped by every invalidation, so a read from before an
        /// invalidation is not stored after it.
        var generation: UInt64 = 0
        var misses = 0
        var hits = 0
        /// Requests waiting for a credential to change (another replica's refresh).
        var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
        /// Waits whose time ran out before they were registered.
        var expired: Set<UUID> = []
    }

    private let state = Mutex(State())
    private let capacity: Int

    package init(capacity: Int = 1_000_000) {
        self.capacity = capacity
    }

    static func key(vault: String, name: String) -> String { vault + "/" + name }

    /// The credential, from memory when live, else from the store.
    package func credential(vault: String, name: String, store: VaultStore) async throws -> SealedCredential? {
        let key = Self.key(vault: vault, name: name)
        let (cached, generation) = self.state.withLock { state in
            let cached = state.live ? state.entries[key] : nil
            if cached == nil { state.misses += 1 } else { state.hits += 1 }
            return (cached, state.generation)
        }
        if let cached { return cached }
        guard let credential = try await store.sealedCredential(vault: vault, name: name) else { return nil }
        self.state.withLock { state in
            guard state.live, state.generation == generation else { return }
            if state.entries.count >= self.capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[key] = credential
        }
        return credential
    }

    /// Drops an entry on a notification (payload `<vault>/<name>`) and wakes
    /// requests waiting for that credential to change.
    package func invalidate(payload: String) {
        let woken = self.state.withLock { state in
            state.generation &+= 1
            state.entries[payload] = nil
            return state.waiters.removeValue(forKey: payload).map { Array($0.values) } ?? []
        }
        for waiter in woken { waiter.resume() }
    }

    package func setLive(_ live: Bool) {
        let woken = self.state.withLock { state in
            state.generation &+= 1
            state.entries.removeAll()
            state.live = live
            // Whatever they waited for may have happened while disconnected.
            let all = state.waiters.values.flatMap(\.values)
            state.waiters.removeAll()
            return all
        }
        for waiter in woken { waiter.resume() }
    }

    /// Waits until the credential changes (a notification for it) or
    /// `timeout` passes, whichever is first. Used when another replica holds
    /// the refresh claim: its commit notifies every replica.
    package func waitForChange(vault: String, name: String, timeout: Duration) async {
        let key = Self.key(vault: vault, name: name)
        let id = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let waiting = self.state.withLock { state in
                        // Not listening, nothing will announce the change; or already timed out.
                        guard state.live, state.expired.remove(id) == nil else { return false }
                        state.waiters[key, default: [:]][id] = continuation
                        return true
                    }
                    if !waiting { continuation.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                let waiter: CheckedContinuation<Void, Never>? = self.state.withLock { state in
                    if let waiter = state.waiters[key]?.removeValue(forKey: id) { return waiter }
                    // Not registered yet (or already woken): make a late registration return at once.
                    state.expired.insert(id)
                    return nil
                }
                waiter?.resume()
            }
            await group.next()
            group.cancelAll()
            await group.waitForAll()
            // If the change came first, the sleeper left a mark: clear it.
            self.state.withLock { _ = $0.expired.remove(id) }
        }
    }

    package var isLive: Bool { self.state.withLock { $0.live } }
    /// Lookups answered from memory, and those that went to the database.
    package var hits: Int { self.state.withLock { $0.hits } }
    package var misses: Int { self.state.withLock { $0.misses } }
}
