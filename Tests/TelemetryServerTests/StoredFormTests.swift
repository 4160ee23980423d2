import Foundation
import GRDB
import Logging
import TelemetryCatalog
import TelemetryPipeline
@testable import TelemetryStore
import Testing

/// The events table keeps each field once: in its typed column, with a mark in `_json` where the
/// member was (``StoredForm``). Whatever was sent, the JSON read back must be the normalised JSON,
/// byte for byte.
@Suite struct StoredFormTests {
    static func open(_ path: String) throws -> SQLiteStore {
        var configuration = SQLiteStoreConfiguration(path: path)
        configuration.durability = .normal
        var logger = Logger(label: "test.stored-form")
        logger.logLevel = .critical
        return try SQLiteStore(configuration: configuration, logger: logger)
    }

    static func normalized(_ texts: [String]) throws -> [NormalizedEvent] {
        var validator = EventValidator()
        return try texts.map { text in
            guard case .valid(let event) = validator.validate(Array(text.utf8)) else {
                Issue.record("invalid test event: \(validator.validate(Array(text.utf8)).issues) in \(text)")
                throw CancellationError()
            }
            return event
        }
    }

    /// Writes `events`, then reads every one back by id and through a listing, and checks each
    /// against its normalised JSON; returns the storage class and length of each row's `_json`.
    @discardableResult
    static func roundTrip(_ events: [NormalizedEvent], path: String) async throws -> [(type: String, bytes: Int)] {
        let store = try open(path)
        defer { try? store.close() }
        let outcome = try await store.write(
            WriteBatch(events: events.map { IncomingEvent(event: $0, receivedMicros: 1, requestID: "req-1") }))
        #expect(outcome.stored == events.count)
        for event in events {
            let found = try #require(try await store.event(id: event.eventID, tenant: nil))
            #expect(found.json == event.jsonString)
        }
        var listed: [String: String] = [:]
        var before: Int64? = nil
        repeat {
            let page = try await store.events(EventQuery(limit: 7, before: before))
            for stored in page.events { listed[try #require(Self.eventID(stored.json))] = stored.json }
            before = page.nextBefore
        } while before != nil
        #expect(listed.count == events.count)
        for event in events { #expect(listed[event.eventID.description] == event.jsonString) }
        return try await store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT typeof(_json), length(CAST(_json AS BLOB)) FROM events ORDER BY _seq").map {
                ($0[0], $0[1])
            }
        }
    }

    static func eventID(_ json: String) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        return object?["event_id"] as? String
    }

    /// A sampled event as raw text, its event_id made unique by `n`.
    static func sampleText(_ type: String, _ n: Int) -> String {
        var sampler = EventSampler(seed: UInt64(n + 1))
        var event = sampler.sample(Catalog.builtin.latest(type)!)
        event["event_id"] = .string(String(format: "00000000-0000-4000-8000-%012d", n))
        // The optional members the variants below rewrite, always present.
        let present: [(String, JSONValue, FieldType)] = [
            ("user_id", .string("98d0ff43-e173-46ae-980a-2bd6343d01f8"), .uuid), ("speed", .number(676.592), .number),
            ("size", .integer(338_834_613_634), .integer), ("url", .string("https://weights.xumi.internal/m.safetensors"), .string),
            ("vm_type", .string("g5.2xlarge"), .string), ("IP", .string("192.0.2.1"), .ipAddress),
        ]
        let fields = Catalog.builtin.latest(type)!.fields
        for (name, value, type) in present where event[name] == nil && fields.contains(where: { $0.name == name && $0.type == type }) {
            event[name] = value
        }
        return event.render()
    }

    @Test func sampledEventsOfEveryTypeReadBackByteForByteAndKeepTheirFieldsOnce() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        var sampler = EventSampler(seed: 17)
        let texts = (0..<(19 * 12)).map { _ in sampler.sample().render() }
        let events = try Self.normalized(texts)
        #expect(Set(events.map(\.eventType)).count == 19)
        let rows = try await Self.roundTrip(events, path: path)
        // Every sampled event has fields its columns give back: none keeps its JSON whole.
        #expect(rows.allSatisfy { $0.type == "blob" })
        let kept = rows.map(\.bytes).reduce(0, +)
        let sent = events.map(\.json.count).reduce(0, +)
        #expect(kept * 2 < sent, "the row keeps \(kept) bytes of JSON for \(sent) sent")
    }

    @Test func membersTheirColumnsCannotGiveBackStayAsSent() async throws {
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let load = "xumi.weights.load.complete"
        func variant(_ n: Int, _ replacements: [(String, String)], type: String = load) -> String {
            var text = Self.sampleText(type, n)
            for (pattern, replacement) in replacements {
                let range = try! #require(text.range(of: pattern, options: .regularExpression), "\(pattern) in \(text)")
                text.replaceSubrange(range, with: replacement)
            }
            return text
        }
        let texts = [
            variant(1, []),
            // A UUID in capitals; a string with escapes; a timestamp in another zone, with fewer
            // decimals, in lower case, without a fraction.
            variant(2, [(#""user_id":"[^"]*""#, #""user_id":"98D0FF43-E173-46AE-980A-2BD6343D01F8""#)]),
            variant(3, [(#""source":"[^"]*""#, #""source":"xumi\u002dworker""#), (#""model":"[^"]*""#, #""model":"sdxl \"1.0\"""#)]),
            variant(4, [(#""timestamp":"[^"]*""#, #""timestamp":"2026-11-18T13:06:40.001141+02:00""#)]),
            variant(5, [(#""timestamp":"[^"]*""#, #""timestamp":"2026-11-18T11:06:40.001Z""#)]),
            variant(6, [(#""timestamp":"[^"]*""#, #""timestamp":"2026-11-18t11:06:40.001141z""#)]),
            variant(7, [(#""timestamp":"[^"]*""#, #""timestamp":"2026-11-18T11:06:40Z""#)]),
            // Numbers written otherwise than Swift would: all stay; canonical ones go.
            variant(8, [(#""speed":[^,}]*"#, #""speed":1.0"#), (#""size":[^,}]*"#, #""size":-0"#)]),
            variant(9, [(#""speed":[^,}]*"#, #""speed":1E+2"#), (#""size":[^,}]*"#, #""size":1e3"#)]),
            variant(10, [(#""speed":[^,}]*"#, #""speed":-0.0"#), (#""size":[^,}]*"#, #""size":1.0"#)]),
            variant(11, [(#""speed":[^,}]*"#, #""speed":0.1"#), (#""size":[^,}]*"#, #""size":0"#)]),
            variant(12, [(#""speed":[^,}]*"#, #""speed":12"#), (#""result":true"#, #""result":false"#)]),
            // null members, unknown members with whitespace inside, whitespace between members,
            // fields in another order.
            variant(13, [(#""url":"[^"]*""#, #""url":null"#), (#""vm_type":"[^"]*""#, #""vm_type":null"#)]),
            variant(14, [(#""model":"#, "\"extra\" : { \"a\" : [1, 2,\n\t3] },\r\n \"zz\":\"\\u0001\",  \"model\":")]),
            variant(15, [(#"^\{"#, #"{ "node_id":"62db179c-a848-4c5a-a633-46a69dd14426" , "#), (#","node_id":"[^"]*""#, "")]),
            // The spec's alias of resource_id, and `user` sent as a string holding an object.
            variant(16, [], type: "kuber.deploy.start"),
            variant(17, [(#""user":\{[^}]*\}"#, #""user":"{\"id\": \"u-1\",\n \"roles\":[\"admin\"]}""#)], type: "pbac.agent.politics.check"),
            variant(18, [(#""IP":"[^"]*""#, #""IP":"10.1.2.3""#)], type: "assets.access.upload"),
        ]
        #expect(texts[15].contains("\"resource_Id\""))
        var events = try Self.normalized(texts)
        // A masked event: a privacy policy rewrites members before the store sees them.
        let policy = try PrivacyPolicy(rules: PrivacyPolicy.defaultRules, key: [UInt8](repeating: 7, count: 32))
        let upload = try Self.normalized([variant(19, [(#""IP":"[^"]*""#, #""IP":"2001:db8::1""#)], type: "assets.access.upload")])
        let masked = policy.apply(to: upload[0])
        #expect(masked.jsonString != upload[0].jsonString)
        events.append(masked)
        let generation = try Self.normalized([Self.sampleText("xumi.generation.start", 20)])
        events.append(policy.apply(to: generation[0]))
        let rows = try await Self.roundTrip(events, path: path)
        #expect(rows.count == events.count)
        // The columns hold the values with escapes resolved: filters find them as sent unescaped.
        let store = try Self.open(path)
        defer { try? store.close() }
        let byModel = try await store.events(EventQuery(fields: [FieldFilter(field: "model", value: #"sdxl "1.0""#)]))
        #expect(byModel.events.map { Self.eventID($0.json) } == [events[2].eventID.description])
        let bySource = try await store.events(EventQuery(source: "xumi-worker", fields: [FieldFilter(field: "model", value: #"sdxl "1.0""#)]))
        #expect(bySource.events.count == 1)
    }

    @Test func rowsKeptWholeReadBackAsTheyAre() async throws {
        // A store written before this form keeps `_json` as TEXT: it must read back unchanged,
        // beside rows in the new form.
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        let events = try Self.normalized((0..<6).map { Self.sampleText("xumi.generation.complete", 30 + $0) })
        try await Self.roundTrip(Array(events.prefix(3)), path: path)
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            for event in events.prefix(3) {
                try db.execute(
                    sql: "UPDATE events SET _json = ? WHERE _seq = (SELECT max(_seq) FROM events WHERE typeof(_json) = 'blob' AND \"timestamp\" = ?)",
                    arguments: [event.jsonString, event.timestampMicros])
            }
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE typeof(_json) = 'text'") == 3)
        }
        try queue.close()
        let store = try Self.open(path)
        defer { try? store.close() }
        _ = try await store.write(WriteBatch(events: events.suffix(3).map { IncomingEvent(event: $0, receivedMicros: 2, requestID: "req-2") }))
        for event in events {
            let found = try #require(try await store.event(id: event.eventID, tenant: nil))
            #expect(found.json == event.jsonString)
        }
        let page = try await store.events(EventQuery(limit: 100))
        #expect(Set(page.events.map(\.json)) == Set(events.map(\.jsonString)))
    }

    @Test func aColumnDeclaredWithAnotherTypeKeepsItsMemberInTheJSON() async throws {
        // A column made when the catalog typed its field otherwise keeps that affinity: "1.50" in
        // an INTEGER column becomes the real 1.5. Such a member must stay in the JSON.
        let path = reopenableStoreName(.sqlite)
        defer { removeReopenableStore(.sqlite, path) }
        try Self.open(path).close()
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(events)").map { row -> String in
                let name: String = row["name"]
                let type: String = name == "model" ? "INTEGER" : row["type"]
                return "\"\(name)\" \(type)" + (name == "_seq" ? " PRIMARY KEY" : "")
            }
            try db.execute(sql: "CREATE TABLE events_retyped (\(columns.joined(separator: ", ")))")
            try db.execute(sql: "DROP TABLE events")
            try db.execute(sql: "ALTER TABLE events_retyped RENAME TO events")
        }
        try queue.close()
        var text = Self.sampleText("xumi.weights.load.complete", 40)
        let range = try #require(text.range(of: #""model":"[^"]*""#, options: .regularExpression))
        text.replaceSubrange(range, with: #""model":"1.50""#)
        let event = try Self.normalized([text])[0]
        let store = try Self.open(path)
        defer { try? store.close() }
        _ = try await store.write(WriteBatch(events: [IncomingEvent(event: event, receivedMicros: 1, requestID: "req-1")]))
        let found = try #require(try await store.event(id: event.eventID, tenant: nil))
        #expect(found.json == event.jsonString)
        #expect(found.json.contains(#""model":"1.50""#))
        let typeOfModel = try await store.pool.read { db in try String.fetchOne(db, sql: "SELECT typeof(model) FROM events") }
        #expect(typeOfModel == "real", "the column's affinity did convert the value")
    }

    @Test func timestampTextIsCanonicalAcrossTheRange() throws {
        // The form leaves a timestamp out only when this text gives it back exactly.
        var random = SplitMix64(seed: 5)
        let lowest = ISO8601Timestamp.microseconds("0001-01-01T00:00:00Z")!
        let highest = ISO8601Timestamp.microseconds("9999-12-31T23:59:59.999999Z")!
        for _ in 0..<2000 {
            let micros = lowest + Int64(random.next() % UInt64(highest - lowest))
            let text = ISO8601Timestamp.string(fromMicroseconds: micros)
            #expect(text.utf8.count == 27)
            #expect(ISO8601Timestamp.microseconds(text) == micros, "\(text)")
        }
        #expect(ISO8601Timestamp.string(fromMicroseconds: 0) == "1970-01-01T00:00:00.000000Z")
        #expect(ISO8601Timestamp.string(fromMicroseconds: -1) == "1969-12-31T23:59:59.999999Z")
    }
}
