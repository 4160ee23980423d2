import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with `100 Continue` as soon as a request's head is in.
///
/// Clients that send it wait for that answer before they send the body: curl does for bodies over
/// 1 MiB (a 2,000-event batch), as do .NET's `HttpClient` and others. Without it they send the body
/// only after their own timeout, curl's 1 s: a batch that took ~45 ms took ~1,040 ms. RFC 9110
/// (§10.1.1) asks a server to answer such a request with 100 or with a final status. The final
/// status comes from the routes as always, after the body (413 past the size limit, 401 without a
/// key).
final class ContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let request) = unwrapInboundIn(data),
            let expectation = request.headerFields[.expect], expectation.lowercased() == "100-continue"
        {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}
