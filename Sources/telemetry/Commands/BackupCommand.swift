import ArgumentParser
import Foundation
import TelemetryStore

/// `telemetry backup DEST`: the embedded store, its API keys and its privacy key, copied into a new
/// folder while the collector goes on running.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the embedded store, its API keys and its privacy key into a new folder, while the collector runs.",
        discussion: """
            Writes DEST/telemetry.sqlite and DEST/telemetry-operations.sqlite, each a consistent \
            snapshot of the store's file taken with SQLite's VACUUM INTO while the collector goes \
            on writing (nothing is stopped; the store's write-ahead log grows by what is written \
            during the copy, since it cannot be checkpointed past the copy's snapshot), then \
            DEST/keys.sqlite (the API keys, hashed) and DEST/privacy.key (the secret of the privacy \
            policy's hash: without it, values hashed after a restore would not match those hashed \
            before). Each file is written under a temporary name, synced and renamed, so an \
            interrupted backup leaves no file that looks whole. DEST must be new or empty.

            The operations file is copied before the events, so its pairing watermark never \
            passes the events copied: the collector that opens the copy pairs the rest, as after \
            a crash. To restore, stop the collector and serve the copy (`telemetry serve --data \
            DEST`), or move its files into the data folder. Copying the files with `cp` while the \
            collector runs is not safe: a checkpoint can change the file mid-copy.

            Only the SQLite store: a ClickHouse store has its own BACKUP statement.

            Example:
              telemetry backup /backups/telemetry-2026-11-30 --verify
            """
    )

    @Argument(help: "The folder to write (created when missing; must be empty).")
    var destination: String

    @OptionGroup var location: StoreLocation

    @Option(help: "The API keys' file (default DIR/keys.sqlite); left out when there is none.")
    var keys: String?

    @Option(help: "The privacy policy's secret key (default DIR/privacy.key); left out when there is none.")
    var privacyKey: String?

    @Flag(help: "Run SQLite's integrity check on every copy afterwards (reads them whole).")
    var verify = false

    func run() throws {
        guard case .sqlite(let path) = try location.choice() else {
            throw ValidationError("backup copies the SQLite store; a ClickHouse store has its own BACKUP statement")
        }
        let started = MonotonicClock.now()
        let folder = URL(fileURLWithPath: destination)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        guard existing.isEmpty else {
            throw CommandFailure("\(destination) is not empty (it holds \(existing.sorted().prefix(3).joined(separator: ", "))); a backup goes into a new folder")
        }
        let eventsCopy = folder.appendingPathComponent("telemetry.sqlite").path
        var progress = ProgressBar(total: nil)
        var expected: Int64 = 0
        let summary = try SQLiteStore.backup(from: path, to: eventsCopy) { done, total in
            if total != expected {
                expected = total
                progress = ProgressBar(total: Int(total))
            }
            progress.update(bytes: Int(done), items: Int(done))
        }
        progress.finish()
        var copied = [eventsCopy, SQLiteStore.operationsPath(eventsCopy)]
        var extras: [String] = []
        let keyFile = keys ?? (location.data as NSString).appendingPathComponent("keys.sqlite")
        if FileManager.default.fileExists(atPath: keyFile) {
            let target = folder.appendingPathComponent("keys.sqlite").path
            try SQLiteStore.backupFile(keyFile, to: target)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target)
            copied.append(target)
            extras.append("the API keys")
        }
        let secret = privacyKey ?? (location.data as NSString).appendingPathComponent("privacy.key")
        if let bytes = FileManager.default.contents(atPath: secret) {
            let target = folder.appendingPathComponent("privacy.key").path
            guard FileManager.default.createFile(atPath: target, contents: bytes, attributes: [.posixPermissions: 0o600]),
                let handle = FileHandle(forWritingAtPath: target)
            else {
                throw CommandFailure("cannot write \(target)")
            }
            try handle.synchronize()
            try handle.close()
            extras.append("the privacy key")
        }
        let seconds = String(format: "%.1f", Double(MonotonicClock.now() - started) / 1e9)
        let what = (["\(summary.events) events", "\(summary.operations) operations"] + extras).joined(separator: ", ")
        print("backup: \(what) into \(destination) (\(formatBytes(Int(summary.bytes))) of store, \(seconds) s)")
        guard verify else { return }
        for file in copied {
            let answer = try SQLiteStore.integrityCheck(ofFile: file)
            guard answer == "ok" else {
                writeStandardError("telemetry: the integrity check of \(file) failed: \(answer)\n")
                throw ExitCode(1)
            }
        }
        print("integrity check: ok (\(copied.count) files)")
    }
}
