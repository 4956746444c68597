import DistributedTraining
import Engine
import Foundation

/// `train --resume`: which checkpoint to continue from, and the best validation accuracy
/// the resumed run had reached.
extension Train {
    /// The newest checkpoint that loads and fits these options, every one skipped said with
    /// its reason; nil to start from step 0 (an empty directory, or --allow-fresh-start).
    func findCheckpoint(in store: CheckpointStore, options: TrainingOptions, spec: ModelSpec, network: Network) throws
        -> (checkpoint: Checkpoint, path: String)? {
        guard FileManager.default.fileExists(atPath: store.directory) else {
            guard allowFreshStart else {
                throw UsageError("--resume: checkpoint directory '\(store.directory)' does not exist; check the path, or add --allow-fresh-start to start from step 0")
            }
            Job.say("no checkpoint directory '\(store.directory)' yet; starting from step 0")
            return nil
        }
        let search = store.newestValid(load: { try loadCheckpoint(path: $0).0 })
        search.skipped.forEach(Job.say)
        guard let found = search.found else {
            if !search.skipped.isEmpty && !allowFreshStart {
                throw EngineError.invalidCheckpoint("--resume: no checkpoint in '\(store.directory)' loads (\(search.skipped.count) skipped, reasons above); move them away, or add --allow-fresh-start to start from step 0")
            }
            Job.say("no valid checkpoint in \(store.directory); starting from step 0")
            return nil
        }
        let m = found.checkpoint.manifest
        guard m.model == spec.text, m.inputShape == network.inputShape, m.classes == network.classes else {
            throw UsageError("'\(found.path)' holds model \(m.model) for \(m.inputShape.map(String.init).joined(separator: "×")) inputs and \(m.classes) classes, not --model \(spec.text) for this data (\(network.inputShape.map(String.init).joined(separator: "×")), \(network.classes) classes); use another --checkpoint-dir")
        }
        try options.hyperparameters.checkResumable(m, source: found.path)
        return found
    }

    /// The validation accuracy of the store's best checkpoint (`--keep-best`), if it loads and
    /// was written at or before `step` (a best checkpoint from beyond the resumed step belongs
    /// to a history this run no longer follows); nil otherwise.
    func bestValidationAccuracy(in store: CheckpointStore, upTo step: Int) -> Double? {
        guard keepBest, let bytes = FileManager.default.contents(atPath: store.bestPath) else { return nil }
        guard let (manifest, _) = try? Checkpoint.manifest(of: [UInt8](bytes), source: store.bestPath),
              manifest.step <= step else {
            Job.say("not continuing \(store.bestPath): it does not load or is newer than step \(step); the next validation sets the best")
            return nil
        }
        return manifest.validationAccuracy
    }
}
