package import Foundation
package import LatchkeyStore
import Synchronization

/// The per-replica cache of API keys by hash, so a warm key costs no database
/// round trip. Entries are dropped when Postgres announces a change to the key
/// (LISTEN/NOTIFY, see `InvalidationListener`). While that listener is not
/// connected the cache is frozen, as `CredentialCache` is: keys it holds keep
/// working through a database outage, unknown keys are looked up, nothing is
/// added; on reconnection it starts empty.
package final class KeyCache: Sendable, InvalidatingCache {
    private struct State {
        var entries: [[UInt8]: APIKeyRecord] = [:]
        /// True only while the invalidation listener is connected.
        var live = false
        /// Bumped by every invalidation, so a lookup that read the database
        /// before an invalidation does not store what it read after it.
        var generation: UInt64 = 0
        /// Lookups that went to the database (for tests now, metrics later).
        var misses = 0
    }

    private let state = Mutex(State())
    /// Bounds memory against a flood of distinct valid keys (there are never
    /// this many real ones); when full, the cache starts over.
    private let capacity: Int

    package init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    /// The record for a key hash: from memory when cached, else from the store.
    package func record(hash: [UInt8], store: KeyStore) async throws -> APIKeyRecord? {
        let (cached, generation) = self.state.withLock { state in
            let cached = state.entries[hash]
            if cached == nil { state.misses += 1 }
            return (cached, state.generation)
        }
        if let cached { return cached }
        guard let record = try await store.record(hash: hash) else { return nil }
        self.state.withLock { state in
            guard state.live, state.generation == generation else { return }
            if state.entries.count >= self.capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[hash] = record
        }
        return record
    }

    /// The record for a key hash if it is in memory; nil otherwise (counting
    /// nothing: the caller goes on to `record(hash:store:)`).
    package func cached(hash: [UInt8]) -> APIKeyRecord? {
        self.state.withLock { $0.entries[hash] }
    }

    /// A key changed: forget it (the next use reads it afresh).
    package func invalidate(keyID: UUID) {
        self.state.withLock { state in
            state.generation &+= 1
            state.entries = state.entries.filter { $0.value.id != keyID }
        }
    }

    /// A notification: the payload is the key's id (anything else, which no
    /// trigger sends, drops everything to be safe).
    package func invalidate(payload: String) {
        if let id = UUID(uuidString: payload) {
            self.invalidate(keyID: id)
        } else {
            self.state.withLock { state in
                state.generation &+= 1
                state.entries.removeAll()
            }
        }
    }

    /// The listener connected (start trusting notifications, from an empty
    /// cache) or disconnected (freeze: serve what is held, add nothing).
    package func setLive(_ live: Bool) {
        self.state.withLock { state in
            state.generation &+= 1
            if live { state.entries.removeAll() }
            state.live = live
        }
    }

    package var isLive: Bool { self.state.withLock { $0.live } }
    /// How many lookups have gone to the database.
    package var misses: Int { self.state.withLock { $0.misses } }
    package var count: Int { self.state.withLock { $0.entries.count } }
}

/// A per-replica cache kept honest by Postgres notifications on one channel
/// (see `InvalidationListener`).
package protocol InvalidatingCache: Sendable {
    /// Something changed; `payload` names it.
    func invalidate(payload: String)
    /// The listener connected (trust notifications, from an empty cache) or
    /// lost its connection (freeze: serve what is held, add nothing).
    func setLive(_ live: Bool)
}
