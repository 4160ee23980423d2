import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The folder this test process writes its files to: `$TMPDIR/xumi-server-tests-PID`.
///
/// The first time it is asked for, the folders of earlier runs whose process has ended are
/// removed, so that however a run ends (a crash included) it leaves at most its own files behind;
/// `scripts/test` removes those too.
enum TestScratch {
    static let directory: URL = {
        let base = FileManager.default.temporaryDirectory
        let prefix = "xumi-server-tests-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base.path)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: base.appendingPathComponent(name))
            }
        }
        let url = base.appendingPathComponent(prefix + "\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// A path in ``directory`` named `name`.
    static func path(_ name: String) -> URL { directory.appendingPathComponent(name) }
}
