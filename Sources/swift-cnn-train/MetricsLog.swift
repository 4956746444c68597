import Engine
import Foundation

/// `--metrics FILE`: one JSON object per line, appended (rank 0 only). An existing file must
/// be empty or start with a JSON object, so that a wrong path (a checkpoint) is refused rather
/// than appended to.
final class MetricsLog {
    let file: OutputFile.Appender?

    init(path: String) throws {
        guard Job.isRoot else {
            file = nil
            return
        }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 {
            let first = try? FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 1)
            guard first == Data("{".utf8) else {
                throw EngineError.output("'--metrics \(path)' is not a metrics file: it does not start with a JSON object ('{')")
            }
        }
        file = try OutputFile(path).openForAppending()
    }

    func append(_ entry: [String: Any]) throws {
        guard let file, let json = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) else { return }
        try file.append(Array(json) + Array("\n".utf8))
    }
}
