import Engine
import Foundation

/// A directory of checkpoints named by step (`checkpoint-000000500.scnn`, so names sort by
/// step). Writes are `OutputFile`'s atomic replace — a temporary file in the same directory,
/// fsync, rename, fsync the directory — so a crash or a full disk at any instant leaves every
/// earlier checkpoint loadable. The newest `keep` are kept. With `--keep-best`, `best.scnn`
/// holds the checkpoint of the best validation accuracy so far: never pruned, and never
/// what `--resume` continues from (it is not among `checkpoints()`).
public struct CheckpointStore {
    public let directory: String
    public let keep: Int
    static let prefix = "checkpoint-", suffix = ".scnn", bestName = "best.scnn"

    public init(directory: String, keep: Int = 3) {
        self.directory = directory
        self.keep = keep
    }

    public func path(forStep step: Int) -> String {
        "\(directory)/\(CheckpointStore.prefix)\(String(format: "%09d", step))\(CheckpointStore.suffix)"
    }

    /// Creates the directory, checks that files can be written there, and removes the
    /// temporary files of checkpoints whose writer was killed mid-write.
    public func prepare() throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw EngineError.invalidCheckpoint("cannot create checkpoint directory '\(directory)': \(error.localizedDescription)")
        }
        guard access(directory, W_OK) == 0 else {
            throw EngineError.invalidCheckpoint("checkpoint directory '\(directory)' is not writable")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where (name.hasPrefix(CheckpointStore.prefix) || name.hasPrefix(CheckpointStore.bestName + "."))
            && name.hasSuffix(".tmp") {
            unlink("\(directory)/\(name)")
        }
    }

    /// The checkpoint of the best validation accuracy (`--keep-best`).
    public var bestPath: String { "\(directory)/\(CheckpointStore.bestName)" }

    /// Replaces the best checkpoint atomically, as `write` writes the others.
    public func writeBest(_ bytes: [UInt8]) throws {
        try OutputFile(bestPath).write(bytes)
    }

    /// Writes atomically, then (only then) prunes old checkpoints; returns the final path. A
    /// failed write leaves every earlier checkpoint and no temporary file.
    @discardableResult
    public func write(_ bytes: [UInt8], step: Int) throws -> String {
        let final = path(forStep: step)
        try OutputFile(final).write(bytes) { TestHold.reached(.write, step: step, rank: 0) }
        // Older ones only: names past this step (unloadable ones a resume skipped) stay, and
        // this one is never among those removed.
        for old in checkpoints().filter({ $0 < final }).dropLast(keep - 1) { unlink(old) }
        return final
    }

    /// Checkpoint paths, oldest first.
    public func checkpoints() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(CheckpointStore.prefix) && $0.hasSuffix(CheckpointStore.suffix) }
            .sorted().map { "\(directory)/\($0)" }
    }

    /// The newest checkpoint that loads and verifies (nil if none does), and a line for each
    /// newer one skipped, with the reason.
    public func newestValid(load: (String) throws -> Checkpoint)
        -> (found: (checkpoint: Checkpoint, path: String)?, skipped: [String]) {
        var skipped: [String] = []
        for path in checkpoints().reversed() {
            do {
                return ((try load(path), path), skipped)
            } catch {
                skipped.append("skipping \(path): \(error)")
            }
        }
        return (nil, skipped)
    }
}
