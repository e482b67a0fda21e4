package import Hummingbird
package import LatchkeyCore
package import NIOCore
import Synchronization

/// The per-request context: who is calling (set by authentication) and from where.
package struct LatchkeyRequestContext: RequestContext, RemoteAddressRequestContext {
    package var coreContext: CoreRequestContextStorage
    package let remoteAddress: SocketAddress?
    /// Shared by every copy of this context, so the outermost middleware's
    /// request log line sees the caller an inner middleware authenticated.
    private let authenticated = AuthenticatedPrincipal()

    package init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Set by the authentication middleware once the caller is known.
    package var principal: Principal? {
        get { self.authenticated.value.withLock { $0.principal } }
        nonmutating set { self.authenticated.value.withLock { $0.principal = newValue } }
    }

    /// The client's address (after trusted-proxy resolution), once known.
    package var clientAddress: IPAddress? {
        get { self.authenticated.value.withLock { $0.address } }
        nonmutating set { self.authenticated.value.withLock { $0.address = newValue } }
    }

    /// The authenticated caller; the authentication middleware guarantees it
    /// on every `/v1` route.
    package var caller: Principal { self.principal ?? .anonymous }
}

private final class AuthenticatedPrincipal: Sendable {
    let value = Mutex<(principal: Principal?, address: IPAddress?)>((nil, nil))
}
