import NIOCore
import NIOHTTPTypes

/// Closes connections whose clients are too slow, against slowloris: a request's head must be in
/// within `headerTimeout` of the connection opening or of the previous response ending (which also
/// bounds idle keep-alive connections), and its body within `bodyTimeout` of the head.
///
/// Unlike an idle timeout, these are deadlines: a client dribbling one byte a second still runs out
/// of time. A response being written (a long stream included) is never cut short.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let headerTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private var deadline: Scheduled<Void>?
    /// Whether the current request has been answered whole (an answer may come before the
    /// request's body is all in: a refusal on its head, a 404).
    private var answered = false

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context, headerTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context, headerTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            answered = false
            arm(context, bodyTimeout)
        case .end:
            // Answered already: the deadline is the next request's head, armed with the answer's
            // end, and it stays (dropping it left an idle connection without any deadline).
            if !answered { disarm() }
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            // The response is complete: the next request's head is due within the header timeout
            // (and what is left of this request's body, when it was answered first).
            answered = true
            arm(context, headerTimeout)
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount) {
        disarm()
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            channel.close(promise: nil)
        }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}
