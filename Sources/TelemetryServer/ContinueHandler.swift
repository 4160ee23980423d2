import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with `100 Continue`: for `POST /v1/events` once the request is
/// admitted (its body will be read), for every other request as soon as its head is in.
///
/// Clients that send it wait for that answer before they send the body: curl does for bodies over
/// 1 MiB (a 2,000-event batch), as do .NET's `HttpClient` and others. Without it they send the body
/// only after their own timeout, curl's 1 s: a batch that took ~45 ms took ~1,040 ms. RFC 9110
/// (§10.1.1) asks a server to answer such a request with 100 or with a final status.
///
/// `POST /v1/events` may be refused on its head when the collector is past what it can take
/// (`429 overloaded`): then no 100 goes out, the client need not send the body at all, and the
/// refusal says `Connection: close`, since the body the head announced may never come. The route
/// asks for the 100 with ``Continue`` (a user outbound event) once it has admitted the request.
final class ContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Sent by a route through the pipeline when it is about to read the body it admitted.
    struct Continue: Sendable {}

    /// A 100 the current request expects and has not had yet (its route decides).
    private var owed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let request) = unwrapInboundIn(data) {
            owed = false
            if let expectation = request.headerFields[.expect], expectation.lowercased() == "100-continue" {
                if Self.admitsFirst(request) {
                    owed = true
                } else {
                    context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
                }
            }
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is Continue else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        if owed {
            owed = false
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        promise?.succeed()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if owed, case .head(var response) = unwrapOutboundIn(data), response.status.kind != .informational {
            // Answered without the body: the client may not send it, so this connection's next
            // bytes are unknown. It is not kept for another request.
            owed = false
            response.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(response)), promise: promise)
            return
        }
        context.write(data, promise: promise)
    }

    /// Whether the route of `request` decides on the 100 (it may refuse the request on its head).
    static func admitsFirst(_ request: HTTPRequest) -> Bool {
        guard request.method == .post, let path = request.path else { return false }
        let route = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return route == "/v1/events" || route == "/v1/events/"
    }
}
