import Engine

/// What the training loop tells the one watching it (the command line prints progress and
/// writes metrics). Its errors are this rank's alone: they end the job, not the agreement.
public protocol TrainingObserver: AnyObject {
    /// After every step, on every rank.
    func stepEnded(_ result: StepResult) throws
    /// After the test set was evaluated at the end of an epoch, or at the last step
    /// (`partial`: the last step is not the end of an epoch).
    func evaluated(after result: StepResult, trainLoss: Double, test: EvaluationResult, partial: Bool) throws
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
/// the test set evaluated at the end of every epoch and of the run; a checkpoint every
/// `checkpointEvery` steps and at the end, written by rank 0 while every rank waits to learn
/// that it is safe; and, once a step's sum says some rank received SIGTERM, SIGINT or SIGUSR1,
/// a checkpoint and the end of the run on every rank after the same step.
public final class TrainingRun {
    public let trainer: Trainer
    public let test: Dataset
    public let store: CheckpointStore?
    /// Steps between checkpoints (0: only at the end and on a stop).
    public let checkpointEvery: Int

    public init(trainer: Trainer, test: Dataset, store: CheckpointStore?, checkpointEvery: Int) {
        (self.trainer, self.test, self.store, self.checkpointEvery) = (trainer, test, store, checkpointEvery)
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
                let evaluation = try paused(observer) { try RankAgreement.together { try trainer.evaluate(test) } }
                try observer.evaluated(after: result, trainLoss: epochLoss / Double(epochSteps), test: evaluation, partial: !epochDone)
                (epochLoss, epochSteps) = (0, 0)
            }
            if checkpointEvery > 0, trainer.step % checkpointEvery == 0, trainer.step < trainer.totalSteps {
                _ = try paused(observer) { try saveCheckpoint() }
            }
            TestHold.reached(.step, step: trainer.step, rank: trainer.communicator.rank)
        }
        return .finished(checkpoint: try paused(observer) { try saveCheckpoint() })
    }

    /// Rank 0 writes the trainer's state; every rank then learns whether that succeeded, so
    /// none goes on (or exits) before the file is safe. Nil without a store.
    public func saveCheckpoint() throws -> String? {
        guard let store else { return nil }
        var path: String?
        var failure: Error?
        if trainer.communicator.rank == 0 {
            do { path = try store.write(try trainer.checkpoint().encoded(), step: trainer.step) } catch { failure = error }
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
