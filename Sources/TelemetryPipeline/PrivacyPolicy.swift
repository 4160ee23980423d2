import Crypto
import Foundation
public import TelemetryCatalog

/// What the collector does to sensitive fields before anything is stored or published.
///
/// Rules name a catalog field of type `string` or `ip_address` and an action:
/// - `keep`: stored as sent;
/// - `drop`: removed (only for fields that no event type requires);
/// - `hash`: replaced by `hmac:` and 32 hex digits of HMAC-SHA256 under the collector's own secret
///   key: equal values still match each other (grouping, counting distinct), but the text cannot be
///   read back or guessed from a list of candidates without the key;
/// - `truncate[:N]`: strings cut to their first N characters (default 64); IP addresses cut to their
///   network, /24 for IPv4 and /48 for IPv6, with the host part zeroed.
///
/// A masked event carries `"_masked":{"FIELD":"ACTION",…}`, so a reader knows the value is not what
/// was sent. The defaults (`prompt=hash`, `IP=truncate`) are argued in docs/security.md.
public struct PrivacyPolicy: Sendable {
    public enum Action: Sendable, Hashable, CustomStringConvertible {
        case keep
        case drop
        case hash
        case truncate(Int?)

        public var description: String {
            switch self {
            case .keep: "keep"
            case .drop: "drop"
            case .hash: "hash"
            case .truncate(let n?): "truncate:\(n)"
            case .truncate(nil): "truncate"
            }
        }
    }

    /// The action by field name.
    public let rules: [String: Action]
    /// HMAC-SHA256 with the key already absorbed: each hash copies it (copy on write) instead of
    /// preparing the key again.
    private let keyed: HMAC<SHA256>
    /// For each catalog definition (by index), the slots to mask and how.
    private let plan: [[(slot: Int, action: Action, isIP: Bool)]]

    /// `prompt` hashed, `IP` truncated to its network.
    public static let defaultRules: [String: Action] = ["prompt": .hash, "IP": .truncate(nil)]

    /// The default string length of `truncate`.
    public static let defaultTruncation = 64

    /// Creates a policy over `catalog`.
    ///
    /// - Parameters:
    ///   - rules: actions by field name; fields not named are kept.
    ///   - key: the secret of `hash` (at least 32 bytes).
    /// - Throws: ``CatalogError`` when a rule names a field that no event type has as a string or
    ///   IP address, or drops a field some event type requires.
    public init(rules: [String: Action], key: [UInt8], catalog: Catalog = .builtin) throws(CatalogError) {
        for (name, action) in rules {
            let uses = catalog.events.flatMap { $0.fields }.filter { $0.name == name }
            guard !uses.isEmpty else {
                throw CatalogError("unknown_field", "the privacy policy names \(name), which no event type has")
            }
            guard uses.allSatisfy({ $0.type == .string || $0.type == .ipAddress }) else {
                throw CatalogError("not_maskable", "the privacy policy applies to string and IP address fields; \(name) is neither")
            }
            if action == .drop, uses.contains(where: \.isRequired) {
                throw CatalogError("required_field", "\(name) is required by some event types, so it cannot be dropped; hash or truncate it")
            }
            if case .truncate(let n?) = action, n < 1 {
                throw CatalogError("bad_policy", "truncate:N needs N of 1 or more")
            }
        }
        self.rules = rules
        self.keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
        self.plan = catalog.compiled.map { compiled in
            compiled.fields.enumerated().compactMap { slot, field in
                guard let action = rules[field.name], action != .keep else { return nil }
                return (slot, action, field.type == .ipAddress)
            }
        }
    }

    /// Parses `prompt=hash,IP=truncate,detail=truncate:200,user_agent=drop` into rules over the
    /// defaults (`FIELD=keep` turns a default off).
    public static func parseRules(_ text: String, over base: [String: Action] = defaultRules) throws(CatalogError) -> [String: Action] {
        var rules = base
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty else {
                throw CatalogError("bad_policy", "a privacy rule is FIELD=ACTION (keep, drop, hash, truncate or truncate:N); got \(item)")
            }
            let action: Action
            switch parts[1] {
            case "keep": action = .keep
            case "drop": action = .drop
            case "hash": action = .hash
            case "truncate": action = .truncate(nil)
            case let text where text.hasPrefix("truncate:"):
                guard let n = Int(text.dropFirst("truncate:".count)) else {
                    throw CatalogError("bad_policy", "truncate:N takes a whole number of characters; got \(text)")
                }
                action = .truncate(n)
            default:
                throw CatalogError("bad_policy", "unknown privacy action \(parts[1]) for \(parts[0]); use keep, drop, hash, truncate or truncate:N")
            }
            rules[parts[0]] = action
        }
        return rules
    }

    /// `event` with the policy applied (itself when no rule touches a field it has).
    public func apply(to event: NormalizedEvent) -> NormalizedEvent {
        let steps = plan[event.compiled.index]
        guard !steps.isEmpty else { return event }
        var masks: [FieldMask] = []
        for step in steps where event.isMaskable(step.slot) {
            if step.action == .hash, case .text(let start, let end, false) = event.values[step.slot] {
                // Hashed from the event's bytes: no String of the value is made.
                let hashed = event.json.withUnsafeBytes { hash(UnsafeRawBufferPointer(rebasing: $0[Int(start)..<Int(end)])) }
                masks.append(FieldMask(slot: step.slot, replacement: hashed, action: "hash"))
                continue
            }
            guard case .string(let text)? = event.value(at: step.slot) else { continue }
            switch step.action {
            case .keep:
                continue
            case .drop:
                masks.append(FieldMask(slot: step.slot, replacement: nil, action: "drop"))
            case .hash:
                masks.append(FieldMask(slot: step.slot, replacement: hash(text), action: "hash"))
            case .truncate(let length):
                if step.isIP {
                    let network = Self.network(of: text)
                    if network != text { masks.append(FieldMask(slot: step.slot, replacement: network, action: "truncate")) }
                } else {
                    let limit = length ?? Self.defaultTruncation
                    if text.count > limit {
                        masks.append(FieldMask(slot: step.slot, replacement: String(text.prefix(limit)), action: "truncate:\(limit)"))
                    }
                }
            }
        }
        return event.masking(masks)
    }

    /// The raw bytes of a rejected event with the policy applied to its top-level members, when
    /// they are a JSON object (re-serialised then, members possibly reordered); otherwise as they
    /// are (bytes that are not JSON cannot be read for fields: docs/security.md says so).
    public func apply(toRaw raw: [UInt8]) -> [UInt8] {
        guard rules.values.contains(where: { $0 != .keep }),
            var object = (try? JSONSerialization.jsonObject(with: Data(raw))) as? [String: Any]
        else { return raw }
        var note: [String: String] = [:]
        for (name, action) in rules where action != .keep {
            guard let text = object[name] as? String else { continue }
            switch action {
            case .keep:
                continue
            case .drop:
                object[name] = nil
                note[name] = "drop"
            case .hash:
                object[name] = hash(text)
                note[name] = "hash"
            case .truncate(let length):
                let cut = Self.isAddress(text) ? Self.network(of: text) : String(text.prefix(length ?? Self.defaultTruncation))
                if cut != text {
                    object[name] = cut
                    note[name] = Self.isAddress(text) ? "truncate" : "truncate:\(length ?? Self.defaultTruncation)"
                }
            }
        }
        guard !note.isEmpty else { return raw }
        object[NormalizedEvent.maskedMember] = note
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return raw }
        return Array(data)
    }

    private static func isAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// `hmac:` and the first 16 bytes of HMAC-SHA256(key, text), in hex.
    func hash(_ text: String) -> String {
        var text = text
        return text.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    /// ``hash(_:)`` of the UTF-8 bytes of a text; the result is its one allocation.
    func hash(_ bytes: UnsafeRawBufferPointer) -> String {
        var hmac = keyed
        hmac.update(data: bytes)
        let mac = hmac.finalize()
        let prefix: StaticString = "hmac:"
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: prefix.utf8CodeUnitCount + 32) { out in
            var i = 0
            for byte in UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount) {
                out[i] = byte
                i += 1
            }
            mac.withUnsafeBytes { mac in
                for byte in mac.prefix(16) {
                    out[i] = digits.utf8Start[Int(byte >> 4)]
                    out[i + 1] = digits.utf8Start[Int(byte & 15)]
                    i += 2
                }
            }
            return i
        }
    }

    /// The /24 (IPv4) or /48 (IPv6) network of an address, host bits zeroed; the text itself when
    /// it cannot be read (it was validated, so only exotic forms).
    static func network(of text: String) -> String {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            v4.s_addr &= UInt32(0xFFFF_FF00).bigEndian
            return withUnsafeBytes(of: &v4) { Self.format(AF_INET, $0, Int(INET_ADDRSTRLEN)) } ?? text
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            withUnsafeMutableBytes(of: &v6) { bytes in
                for i in 6..<16 { bytes[i] = 0 }
            }
            return withUnsafeBytes(of: &v6) { Self.format(AF_INET6, $0, Int(INET6_ADDRSTRLEN)) } ?? text
        }
        return text
    }

    private static func format(_ family: Int32, _ address: UnsafeRawBufferPointer, _ length: Int) -> String? {
        var buffer = [CChar](repeating: 0, count: length)
        guard inet_ntop(family, address.baseAddress, &buffer, socklen_t(length)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The secret of `hash`, kept in `path` (created with 32 random bytes, owner-only, when missing).
    public static func loadOrCreateKey(at path: String) throws -> [UInt8] {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count >= 32 else { throw CatalogError("bad_key", "the privacy key \(path) is shorter than 32 bytes") }
            return Array(data)
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw CatalogError("bad_key", "cannot create the privacy key \(path)")
        }
        return key
    }
}
