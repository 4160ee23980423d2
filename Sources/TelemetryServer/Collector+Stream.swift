import Hummingbird
import HTTPTypes
import NIOCore
import ServiceLifecycle
import TelemetryPipeline
import TelemetryStore

extension Collector {
    private enum Wakeup: Sendable {
        case commit
        case heartbeat
        case shutdown
    }

    /// `GET /v1/stream`: server-sent events with the filters of `GET /v1/events`.
    ///
    /// Starts after the newest stored event, or after `Last-Event-ID` when the client reconnects,
    /// so a reconnecting client misses nothing. Each event is `id: <sequence>`, `event: event`,
    /// `data: <event JSON>`; a comment line keeps idle connections open.
    func stream(_ request: Request, _ context: CollectorRequestContext) async throws -> Response {
        var query: EventQuery
        do {
            query = try eventQuery(request, context.access)
        } catch {
            return Self.refusal(error)
        }
        let start: Int64
        if let header = request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters.value("last_event_id") {
            guard let value = Int64(header), value >= 0 else {
                return Self.error(.badRequest, "bad_query", "Last-Event-ID must be an id this stream sent")
            }
            start = value
        } else {
            do {
                start = try await store.latestSequence()
            } catch let error as StoreError {
                return Self.storeError(error)
            }
        }
        query.before = nil
        query.limit = 500
        let updates = broadcaster.subscribe()
        let heartbeat = Duration.seconds(configuration.streamHeartbeatSeconds)
        let store = self.store
        let fixedQuery = query
        let body = ResponseBody { writer in
            let (wakeups, wake) = AsyncStream.makeStream(of: Wakeup.self, bufferingPolicy: .bufferingNewest(4))
            // A stream never ends by itself: end it when the collector shuts down, so that shutdown
            // does not wait for every follower to go away.
            try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in updates { wake.yield(.commit) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: heartbeat)
                        wake.yield(.heartbeat)
                    }
                }
                var last = start
                try await writer.write(ByteBuffer(string: ": xumi telemetry stream\n\n"))
                var pending = true  // look once at connection, in case events arrived since `start`
                var iterator = wakeups.makeAsyncIterator()
                while !Task.isCancelled {
                    if pending {
                        while true {
                            var page = fixedQuery
                            page.after = last
                            let events = try await store.events(page).events
                            guard !events.isEmpty else { break }
                            var text = ""
                            for event in events {
                                text += "id: \(event.sequence)\nevent: event\ndata: \(event.json)\n\n"
                                last = event.sequence
                            }
                            try await writer.write(ByteBuffer(string: text))
                            if events.count < fixedQuery.limit { break }
                        }
                    }
                    guard let wakeup = await iterator.next(), wakeup != .shutdown else { break }
                    switch wakeup {
                    case .commit: pending = true
                    case .heartbeat:
                        pending = false
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    case .shutdown:
                        break
                    }
                }
                group.cancelAll()
            }
            } onGracefulShutdown: {
                wake.yield(.shutdown)
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: body)
    }
}
