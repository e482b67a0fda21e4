import Foundation
import HTTPTypes
package import LatchkeyStore
import NIOCore
import Synchronization

/// An injection answer ready to send: what a warm request costs nothing to build.
struct RenderedInjection: Sendable {
    let key: String
    let credentialID: UUID
    let headers: HTTPFields
    let body: ByteBuffer
    /// An OAuth answer stops being served from memory when its refresh window starts.
    let validUntil: Date?
    /// Every credential the answer was built from (itself and what its placeholders name).
    let dependencies: Set<String>
}

/// The per-replica cache of the injection path, so a warm credential costs
/// no database round trip and almost no work.
///
/// It holds two things. Rows, *sealed*, as read from the database (the
/// refresh and placeholder logic works from them). And, for credentials this
/// replica has injected, the rendered answer: the response headers and JSON
/// body, which hold the secret in plaintext. That is the issue's "decrypted
/// values held only in memory", chosen because opening and decoding the row
/// and encoding the answer cost over half of each request (measured with
/// perf: JSON decoding 7%, AES-GCM 6%, JSON encoding 7% of all CPU, against
/// 46% of /healthz throughput before). Bounds on the exposure: only
/// credentials actually injected here are rendered; an entry is dropped on
/// any change to its credential or to one its placeholders name, and an
/// OAuth answer at the start of its refresh window; nothing is written to
/// disk (run replicas with core dumps off: `LimitCORE=0`, `ulimit -c 0`),
/// and a heap dump of a running replica finds only what a request with its
/// proxy keys would get. Plaintext never enters the database, logs or metrics.
///
/// Entries are dropped when Postgres announces a change (LISTEN/NOTIFY on
/// `latchkey_credentials`, see `InvalidationListener`); when the listener
/// (re)connects the cache starts empty (a full reload). While it is not
/// connected the cache is *frozen*: what it holds is still served, nothing
/// new is added (misses go to the database). That is what keeps warm
/// credentials injecting through a database outage, when no change can be
/// made anyway; the price is that if only the listening connection is lost,
/// a change elsewhere is seen once the listener is back (it retries every
/// second) rather than within the notification's latency.
package final class CredentialCache: Sendable, InvalidatingCache {
    private struct State {
        var entries: [String: SealedCredential] = [:]
        var rendered: [String: RenderedInjection] = [:]
        /// Rendered header_sets by the credentials their placeholders name.
        var dependents: [String: Set<String>] = [:]
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

    /// The credential, from memory when cached, else from the store.
    package func credential(vault: String, name: String, store: VaultStore) async throws -> SealedCredential? {
        let key = Self.key(vault: vault, name: name)
        let (cached, generation) = self.state.withLock { state in
            let cached = state.entries[key]
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

    /// A rendered answer still good at `now`.
    func rendered(vault: String, name: String, now: Date) -> RenderedInjection? {
        let key = Self.key(vault: vault, name: name)
        return self.state.withLock { state in
            guard let hit = state.rendered[key], hit.validUntil.map({ now < $0 }) ?? true else {
                return nil
            }
            state.hits += 1
            return hit
        }
    }

    /// The generation to pass to `store(_:generation:)`, read before the
    /// database reads that went into a rendered answer.
    var generation: UInt64 { self.state.withLock { $0.generation } }

    /// Keeps a rendered answer, unless something changed since `generation`.
    func store(_ rendered: RenderedInjection, generation: UInt64) {
        self.state.withLock { state in
            guard state.live, state.generation == generation else { return }
            if state.rendered.count >= self.capacity {
                state.rendered.removeAll(keepingCapacity: true)
                state.dependents.removeAll()
            }
            state.rendered[rendered.key] = rendered
            for dependency in rendered.dependencies where dependency != rendered.key {
                state.dependents[dependency, default: []].insert(rendered.key)
            }
        }
    }

    /// Drops an entry on a notification (payload `<vault>/<name>`), and the
    /// rendered answers that depend on it, and wakes requests waiting for
    /// that credential to change.
    package func invalidate(payload: String) {
        let woken = self.state.withLock { state in
            state.generation &+= 1
            state.entries[payload] = nil
            state.rendered[payload] = nil
            for dependent in state.dependents.removeValue(forKey: payload) ?? [] { state.rendered[dependent] = nil }
            return state.waiters.removeValue(forKey: payload).map { Array($0.values) } ?? []
        }
        for waiter in woken { waiter.resume() }
    }

    package func setLive(_ live: Bool) {
        let woken = self.state.withLock { state in
            state.generation &+= 1
            if live {
                // Connected: whatever changed while disconnected is unknown, so start over.
                state.entries.removeAll()
                state.rendered.removeAll()
                state.dependents.removeAll()
            }
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
