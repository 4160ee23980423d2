public import Hummingbird
public import Logging
import NIOCore
public import Prometheus

/// A small HTTP server for a process that has nothing to serve but its metrics (`telemetry
/// consume`): `GET /metrics` (Prometheus text) and `GET /healthz`.
public func metricsApplication(
    registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let router = Router()
    router.get("metrics") { _, _ in
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    router.get("healthz") { _, _ in Collector.json(.ok, #"{"status":"ok"}"#) }
    return Application(
        router: router, configuration: .init(address: .hostname(host, port: port), serverName: "xumi-telemetry-consume"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) }, logger: logger)
}
