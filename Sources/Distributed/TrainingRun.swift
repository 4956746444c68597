import Engine

/// What the training loop tells the one watching it (the command line prints progress and
/// writes metrics). Its errors are this rank's alone: they end the job, not the agreement.
public protocol TrainingObserver: AnyObject {
    /// After every step, on every rank.
    func stepEnded(_ result: StepResult) throws
    /// After the validation split (if any) and the test set were evaluated at the end of an
    /// epoch, or at the last step (`partial`: the last step is not the end of an epoch).
    func evaluated(after result: StepResult, trainLoss: Double, validation: EvaluationResult?, test: EvaluationResult,
                   partial: Bool) throws
    /// Time outside training steps (evaluation, checkpoints) begins and ends: images/s leaves it out.
    func pauseBegan()
    func pauseEnded()
}

/// How a run ended.
public enum TrainingOutcome: Sendable {
    /// Every step done; the final checkpoint's path (with a store).
    case finished(checkpoint: String?)
    /// A stop signal ended the run after `step` steps, with a checkpoint (with a store).
    case stopped(signal: String, step: Int, checkpoint: String?)
}

/// The training loop over a trainer (docs/architecture.md §3–5): steps until the last one;
/// the validation split (if any) and the test set evaluated at the end of every epoch and of
/// the run; a checkpoint every `checkpointEvery` steps and at the end, written by rank 0 while
/// every rank waits to learn that it is safe; with `keepBest`, the store's best checkpoint
/// replaced whenever the validation accuracy beats every earlier one; and, once a step's sum
/// says some rank received SIGTERM, SIGINT or SIGUSR1, a checkpoint and the end of the run on
/// every rank after the same step.
public final class TrainingRun {
    public let trainer: Trainer
    public let validation: Dataset?
    public let test: Dataset
    public let store: CheckpointStore?
    /// Steps between checkpoints (0: only at the end and on a stop).
    public let checkpointEvery: Int
    /// Keep the checkpoint of the best validation accuracy (`CheckpointStore.bestPath`).
    public let keepBest: Bool
    /// The best validation accuracy so far, the same on every rank (nil: none yet).
    public private(set) var bestValidationAccuracy: Double?

    public init(trainer: Trainer, validation: Dataset? = nil, test: Dataset, store: CheckpointStore?, checkpointEvery: Int,
                keepBest: Bool = false) {
        (self.trainer, self.validation, self.test, self.store) = (trainer, validation, test, store)
        (self.checkpointEvery, self.keepBest) = (checkpointEvery, keepBest)
    }

    /// Continues the best accuracy of the run being resumed: rank 0's `accuracy` (read from
    /// its best checkpoint) on every rank, so that all agree on when to write the next one.
    public func resumeBest(_ accuracy: Double?) throws {
        let none = -1.0
        var bits = [trainer.communicator.rank == 0 ? Int64(bitPattern: (accuracy ?? none).bitPattern) : 0]
        try trainer.communicator.allreduceSum(&bits)
        let agreed = Double(bitPattern: UInt64(bitPattern: bits[0]))
        bestValidationAccuracy = agreed == none ? nil : agreed
    }

    /// Trains from the trainer's step to its last. Errors every rank meets alike (a
    /// non-finite value, a failed checkpoint) come as `AgreedError`s.
    public func run(observer: TrainingObserver) throws -> TrainingOutcome {
        var epochLoss = 0.0, epochSteps = 0
        while trainer.step < trainer.totalSteps {
            let result = try RankAgreement.together { try trainer.trainStep() }
            epochLoss += Double(result.loss)
            epochSteps += 1
            try observer.stepEnded(result)
            if result.stopRequested {
                return .stopped(signal: StopSignal.name, step: trainer.step, checkpoint: try paused(observer) { try saveCheckpoint() })
            }
            let epochDone = trainer.step % trainer.stepsPerEpoch == 0
            if epochDone || trainer.step == trainer.totalSteps {
                let validated = try validation.map { split in
                    try paused(observer) { try RankAgreement.together { try trainer.evaluate(split) } }
                }
                let evaluation = try paused(observer) { try RankAgreement.together { try trainer.evaluate(test) } }
                try observer.evaluated(after: result, trainLoss: epochLoss / Double(epochSteps), validation: validated,
                                       test: evaluation, partial: !epochDone)
                (epochLoss, epochSteps) = (0, 0)
                // Strictly better: on a tie the earlier checkpoint stays.
                if keepBest, let accuracy = validated?.accuracy, accuracy > bestValidationAccuracy ?? -1 {
                    bestValidationAccuracy = accuracy
                    _ = try paused(observer) { try saveCheckpoint(bestValidationAccuracy: accuracy) }
                }
            }
            if checkpointEvery > 0, trainer.step % checkpointEvery == 0, trainer.step < trainer.totalSteps {
                _ = try paused(observer) { try saveCheckpoint() }
            }
            TestHold.reached(.step, step: trainer.step, rank: trainer.communicator.rank)
        }
        return .finished(checkpoint: try paused(observer) { try saveCheckpoint() })
    }

    /// Rank 0 writes the trainer's state — as the best checkpoint when given its validation
    /// accuracy; every rank then learns whether that succeeded, so none goes on (or exits)
    /// before the file is safe. Nil without a store.
    public func saveCheckpoint(bestValidationAccuracy: Double? = nil) throws -> String? {
        guard let store else { return nil }
        var path: String?
        var failure: Error?
        if trainer.communicator.rank == 0 {
            do {
                var checkpoint = trainer.checkpoint()
                if let accuracy = bestValidationAccuracy {
                    checkpoint.manifest.validationAccuracy = accuracy
                    try store.writeBest(try checkpoint.encoded())
                    path = store.bestPath
                } else {
                    path = try store.write(try checkpoint.encoded(), step: trainer.step)
                }
            } catch {
                failure = error
            }
        }
        // Rank 0's exit code for its failure (0: written), the same on every rank after the sum.
        var code: [Int64] = [Int64(failure.map(ExitStatus.of) ?? 0)]
        try trainer.communicator.allreduceSum(&code)
        if code[0] != 0 { throw AgreedError(underlying: failure, reportingRank: 0, code: Int32(code[0])) }
        return path
    }

    private func paused<T>(_ observer: TrainingObserver, _ body: () throws -> T) throws -> T {
        observer.pauseBegan()
        defer { observer.pauseEnded() }
        return try body()
    }
}
