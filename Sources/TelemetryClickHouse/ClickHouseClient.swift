import Foundation
import Synchronization
import TelemetryClient
import TelemetryStore

/// Where a ClickHouse store lives: `clickhouse:http://HOST:PORT/DATABASE`.
public struct ClickHouseLocation: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: String
    /// Sent as `X-ClickHouse-User` / `X-ClickHouse-Key` when set (from the URL's user info).
    public var user: String?
    public var password: String?

    public init(host: String, port: Int, database: String, user: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
    }

    /// Reads `clickhouse:http://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE` (the `clickhouse:` prefix may
    /// be left out; the port defaults to 8123, the database to `telemetry`).
    ///
    /// - Throws: ``StoreError/Code/badQuery`` with what is wrong with the text.
    public init(_ text: String) throws {
        var rest = text
        if rest.hasPrefix("clickhouse:") { rest.removeFirst("clickhouse:".count) }
        guard rest.hasPrefix("http://") else {
            throw StoreError(.badQuery, "a ClickHouse store is clickhouse:http://HOST:PORT/DATABASE (plain HTTP); got \(text)")
        }
        guard let components = URLComponents(string: rest), let host = components.host, !host.isEmpty else {
            throw StoreError(.badQuery, "cannot read the ClickHouse address in \(text)")
        }
        let database = components.path.split(separator: "/").first.map(String.init) ?? "telemetry"
        guard database.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), database.first?.isNumber == false else {
            throw StoreError(.badQuery, "the database name \(database) must be letters, digits and _ (not starting with a digit)")
        }
        self.init(host: host, port: components.port ?? 8123, database: database, user: components.user, password: components.password)
    }

    public var description: String { "clickhouse:http://\(host):\(port)/\(database)" }
}

/// ClickHouse's HTTP interface: SQL in, TabSeparated out, over a few kept-alive connections.
///
/// It uses the SDK's small HTTP/1.1 client (one thread per connection, so blocking socket calls
/// never hold Swift's cooperative pool) rather than a general HTTP stack: ClickHouse's interface
/// is plain HTTP/1.1, and the client is already built and tested here.
final class ClickHouseClient: Sendable {
    let location: ClickHouseLocation
    private let idle = Mutex<[HTTPConnection]>([])
    /// How long one statement may take before it counts as failed, seconds.
    let timeoutSeconds: Int
    private static let maxIdle = 8

    init(location: ClickHouseLocation, timeoutSeconds: Int = 60) {
        self.location = location
        self.timeoutSeconds = timeoutSeconds
    }

    /// Runs `sql` (with `FORMAT TabSeparated` added to a SELECT by the caller) and returns the
    /// response body. `body`, when given, is the data of an `INSERT … FORMAT …` named in `sql`.
    ///
    /// - Throws: ``StoreError/Code/unavailable`` when ClickHouse cannot be reached or answers with
    ///   an error (its message included).
    ///
    /// `externalTable` (name, structure, TabSeparated rows) is sent along as a temporary table the
    /// query can read (ClickHouse's "external data", a multipart form).
    func execute(
        _ sql: String, body: [UInt8]? = nil, database: Bool = true, settings: [(String, String)] = [],
        externalTable: (name: String, structure: String, rows: [UInt8])? = nil
    ) async throws -> [UInt8] {
        var query: [(String, String)] = []
        if database { query.append(("database", location.database)) }
        // A page of operations names up to 10,001 pairing-key hashes: room for that (the default
        // is 256 KiB of SQL).
        query.append(("max_query_size", "4000000"))
        query += settings
        var requestBody: [UInt8]
        var contentType = "text/plain; charset=utf-8"
        if let externalTable {
            query += [("query", sql), ("\(externalTable.name)_structure", externalTable.structure)]
            let boundary = "xumi-\(UInt64.random(in: 0...UInt64.max))"
            contentType = "multipart/form-data; boundary=\(boundary)"
            requestBody = Array(
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(externalTable.name)\"; filename=\"\(externalTable.name)\"\r\nContent-Type: text/plain\r\n\r\n".utf8)
            requestBody += externalTable.rows
            requestBody += Array("\r\n--\(boundary)--\r\n".utf8)
        } else if let body {
            query.append(("query", sql))
            requestBody = body
        } else {
            requestBody = Array(sql.utf8)
        }
        if requestBody.isEmpty { requestBody = Array(" ".utf8) }
        let path = "/?" + query.map { "\($0.0)=\(Self.percentEncoded($0.1))" }.joined(separator: "&")
        var headers: [(String, String)] = [("Content-Type", contentType)]
        if let user = location.user { headers.append(("X-ClickHouse-User", user)) }
        if let password = location.password { headers.append(("X-ClickHouse-Key", password)) }
        let connection = idle.withLock { $0.popLast() } ?? HTTPConnection(host: location.host, port: location.port)
        let response: HTTPResponse
        do {
            response = try await connection.request("POST", path, headers: headers, body: requestBody, timeoutSeconds: timeoutSeconds)
        } catch {
            connection.close()
            throw StoreError(.unavailable, "ClickHouse at \(location.host):\(location.port) is unreachable: \(error)", cause: error)
        }
        idle.withLock { if $0.count < Self.maxIdle { $0.append(connection) } }
        guard response.status == 200 else {
            let message = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
            throw StoreError(.unavailable, "ClickHouse answered \(response.status): \(message.prefix(500))")
        }
        return response.body
    }

    /// Runs a SELECT and reads its TabSeparated rows.
    func rows(
        _ sql: String, settings: [(String, String)] = [], externalTable: (name: String, structure: String, rows: [UInt8])? = nil
    ) async throws -> [[TSVField]] {
        TSV.rows(try await execute(sql + "\nFORMAT TabSeparated", settings: settings, externalTable: externalTable))
    }

    /// Closes every idle connection.
    func close() {
        let connections = idle.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for connection in connections { connection.close() }
    }

    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    static func percentEncoded(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// One field of a TabSeparated row: `nil` for `\N`, else the unescaped bytes.
typealias TSVField = [UInt8]?

/// ClickHouse's TabSeparated format: tab between fields, newline after each row; backslash escapes
/// for tab, newline, backslash and a few more; `\N` for NULL.
enum TSV {
    /// Whether a byte needs a backslash escape in a field.
    private static let special: [Bool] = (0..<256).map { [0x5C, 0x09, 0x0A, 0x0D, 0x00].contains($0) }

    /// The escape of a special byte.
    private static func escape(_ byte: UInt8) -> [UInt8] {
        switch byte {
        case 0x09: [0x5C, 0x74]  // \t
        case 0x0A: [0x5C, 0x6E]  // \n
        case 0x0D: [0x5C, 0x72]  // \r
        case 0x00: [0x5C, 0x30]  // \0
        default: [0x5C, byte]  // \\
        }
    }

    /// Appends `bytes` escaped as one field's text: runs without a special byte are copied whole
    /// (a row's JSON is most of its bytes, and has few).
    static func append(escaping bytes: ArraySlice<UInt8>, to out: inout [UInt8]) {
        var run = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if special[Int(bytes[index])] {
                out += bytes[run..<index]
                out += escape(bytes[index])
                run = index + 1
            }
            index += 1
        }
        out += bytes[run..<bytes.endIndex]
    }

    static func append(escaping bytes: [UInt8], to out: inout [UInt8]) {
        append(escaping: bytes[...], to: &out)
    }

    static func append(escaping text: String, to out: inout [UInt8]) {
        append(escaping: Array(text.utf8)[...], to: &out)
    }

    static let null: [UInt8] = [0x5C, 0x4E]

    /// Splits a response into rows of fields, undoing the escapes.
    static func rows(_ body: [UInt8]) -> [[TSVField]] {
        var rows: [[TSVField]] = []
        var row: [TSVField] = []
        var field: [UInt8] = []
        var isNull = false
        var index = 0
        let count = body.count
        func endField() {
            row.append(isNull ? nil : field)
            field.removeAll(keepingCapacity: true)
            isNull = false
        }
        while index < count {
            let byte = body[index]
            switch byte {
            case 0x09:
                endField()
            case 0x0A:
                endField()
                rows.append(row)
                row.removeAll(keepingCapacity: true)
            case 0x5C where index + 1 < count:
                index += 1
                let next = body[index]
                switch next {
                case 0x74: field.append(0x09)
                case 0x6E: field.append(0x0A)
                case 0x72: field.append(0x0D)
                case 0x30: field.append(0x00)
                case 0x62: field.append(0x08)
                case 0x66: field.append(0x0C)
                case 0x4E where field.isEmpty: isNull = true
                default: field.append(next)
                }
            default:
                field.append(byte)
            }
            index += 1
        }
        if !field.isEmpty || !row.isEmpty {
            endField()
            rows.append(row)
        }
        return rows
    }
}

extension Optional where Wrapped == [UInt8] {
    var string: String? { map { String(decoding: $0, as: UTF8.self) } }
    var int64: Int64? { string.flatMap { Int64($0) } }
    /// A Float64 as ClickHouse wrote it. ClickHouse 18 reads and writes floats a unit in the last
    /// place off at times (7.581 comes back as 7.5809999999999995), so values are rounded to 15
    /// significant digits, which every double holds exactly.
    var double: Double? {
        guard let text = string, let value = Double(text) else { return nil }
        guard text.count > 16, value.isFinite else { return value }
        return Double(String(format: "%.15g", value)) ?? value
    }
}

/// SQL literals.
enum SQL {
    /// `'text'` with quotes and backslashes escaped.
    static func quote(_ text: String) -> String {
        var out = "'"
        for character in text.unicodeScalars {
            switch character {
            case "'": out += "\\'"
            case "\\": out += "\\\\"
            case "\0": out += "\\0"
            default: out.unicodeScalars.append(character)
            }
        }
        return out + "'"
    }

    /// `'a', 'b', …`.
    static func list(_ texts: [String]) -> String { texts.map(quote).joined(separator: ", ") }
}
