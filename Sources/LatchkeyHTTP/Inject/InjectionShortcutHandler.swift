import HTTPTypes
import LatchkeyCore
package import NIOCore
package import NIOHTTPTypes

/// The channel handler in front of Hummingbird's request handling (one per
/// connection, between HTTP decoding and the router) that lets
/// `InjectionShortcut` answer warm injections on the event loop. Every
/// request it does not answer passes through untouched.
///
/// HTTP/1.1 answers requests in order, so it answers only while no request
/// it passed on is still waiting for its response; a warm injection
/// pipelined behind a slow request is passed on too.
package final class InjectionShortcutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPRequestPart
    package typealias InboundOut = HTTPRequestPart
    package typealias OutboundIn = HTTPResponsePart
    package typealias OutboundOut = HTTPResponsePart

    private let shortcut: InjectionShortcut
    /// Requests passed on whose response has not been written to its end.
    private var outstanding = 0
    /// A candidate's head, held until its end arrives (when it is answered
    /// here or passed on, head first).
    private var held: InjectionShortcut.Candidate?
    private var needsFlush = false
    /// The peer's address, parsed once per connection.
    private var peer: IPAddress??
    private var keys = KeyHashMemo()

    package init(_ shortcut: InjectionShortcut) {
        self.shortcut = shortcut
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            if self.outstanding == 0, let candidate = InjectionShortcut.candidate(request) {
                self.held = candidate
            } else {
                self.passOn(request, context: context)
            }
        case .body:
            if let held = self.held.take() { self.passOn(held.request, context: context) }
            context.fireChannelRead(data)
        case .end:
            if let held = self.held.take() {
                if self.answer(held, context: context) { return }
                self.passOn(held.request, context: context)
            }
            context.fireChannelRead(data)
        }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) { self.outstanding = max(0, self.outstanding - 1) }
        context.write(data, promise: promise)
    }

    private func passOn(_ request: HTTPRequest, context: ChannelHandlerContext) {
        self.outstanding += 1
        context.fireChannelRead(self.wrapInboundOut(.head(request)))
    }

    /// Writes the shortcut's answer (flushed when this read burst ends);
    /// false when the full stack must answer.
    private func answer(_ candidate: InjectionShortcut.Candidate, context: ChannelHandlerContext) -> Bool {
        if self.peer == nil { self.peer = context.channel.remoteAddress?.ipAddress.flatMap(IPAddress.init) }
        guard let (head, body, caller) = self.shortcut.answer(candidate, peer: self.peer ?? nil, keys: &self.keys)
        else { return false }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if body.readableBytes > 0 { context.write(self.wrapOutboundOut(.body(body)), promise: nil) }
        context.write(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.needsFlush = true
        self.shortcut.finished(candidate.request, head: head, caller: caller, elapsed: .now - candidate.start)
        return true
    }
}
