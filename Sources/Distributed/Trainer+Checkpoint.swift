import Engine

extension TrainingOptions {
    /// The manifest fields these options determine.
    func manifest(network: Network, step: Int, epoch: Int) -> CheckpointManifest {
        CheckpointManifest(
            model: network.spec.text, inputShape: network.inputShape, classes: network.classes, seed: seed,
            batchSize: batchSize, chunkSize: chunkSize, learningRate: learningRate,
            learningRateSchedule: schedule.summary, epochs: epochs, momentum: optimizer.momentum,
            weightDecay: optimizer.weightDecay, nesterov: optimizer.nesterov,
            batchNormMomentum: layer.batchNormMomentum, batchNormEpsilon: layer.batchNormEpsilon,
            initScheme: initScheme.rawValue, step: step, epoch: epoch,
            tensors: Checkpoint.tensorTable(layout: network.layout))
    }

    /// Fails unless a checkpoint was written by a run with these options: resuming with other
    /// values would silently change the weights it promises to reproduce.
    public func checkResumable(_ m: CheckpointManifest, model: ModelSpec, source: String) throws {
        let mine = manifest(network: try Network(spec: model, inputShape: m.inputShape, classes: m.classes), step: 0, epoch: 0)
        var differences = [
            ("--model", m.model, mine.model), ("--seed", "\(m.seed)", "\(mine.seed)"),
            ("--batch-size", "\(m.batchSize)", "\(mine.batchSize)"), ("--chunk-size", "\(m.chunkSize)", "\(mine.chunkSize)"),
            ("--lr", "\(m.learningRate)", "\(mine.learningRate)"),
            ("--lr-schedule", m.learningRateSchedule, mine.learningRateSchedule), ("--momentum", "\(m.momentum)", "\(mine.momentum)"),
            ("--weight-decay", "\(m.weightDecay)", "\(mine.weightDecay)"), ("--nesterov", "\(m.nesterov)", "\(mine.nesterov)"),
            ("--bn-momentum", "\(m.batchNormMomentum)", "\(mine.batchNormMomentum)"),
            ("--bn-eps", "\(m.batchNormEpsilon)", "\(mine.batchNormEpsilon)"),
        ].filter { $0.1 != $0.2 }
        // The cosine schedule spans --epochs; other schedules do not depend on it.
        if schedule.shape == .cosine && m.epochs != epochs { differences.append(("--epochs", "\(m.epochs)", "\(epochs)")) }
        guard differences.isEmpty else {
            let list = differences.map { "\($0.0) \($0.1) (flags say \($0.2))" }.joined(separator: ", ")
            throw EngineError.invalidCheckpoint("'\(source)' was written with \(list); pass the checkpoint's values to resume it, or use another --checkpoint-dir")
        }
    }
}

extension Trainer {
    /// The full training state after `step` steps.
    public func checkpoint() -> Checkpoint {
        Checkpoint(manifest: options.manifest(network: network, step: step, epoch: epoch),
                   parameters: parameterValues, buffers: bufferValues, velocity: Array(velocity))
    }

    /// Continues from a checkpoint's state; with the same options, training then follows the
    /// uninterrupted run bit for bit, whatever the rank count (the state is (weights, step)).
    /// Every rank must pass the same checkpoint; rank 0's values are broadcast to be sure.
    public func restore(_ checkpoint: Checkpoint) throws {
        let layout = network.layout
        precondition(checkpoint.parameters.count == layout.parameterCount && checkpoint.buffers.count == layout.bufferCount)
        _ = parameters.update(from: checkpoint.parameters)
        _ = velocity.update(from: checkpoint.velocity)
        for (i, v) in checkpoint.buffers.enumerated() { buffers[i] = v }
        try communicator.broadcast(parameters)
        try communicator.broadcast(velocity)
        try communicator.broadcast(buffers)
        var steps = [Int64(checkpoint.manifest.step)]
        try communicator.allreduceSum(&steps)
        guard steps[0] == Int64(checkpoint.manifest.step) * Int64(communicator.size) else {
            throw EngineError.invalidCheckpoint("ranks loaded checkpoints of different steps; is the checkpoint directory shared by all ranks?")
        }
        step = checkpoint.manifest.step
    }
}
