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

    /// The settings that determine the weights, as (flag, value) pairs: what a resume checks
    /// against the checkpoint and what the ranks compare at start-up.
    public func weightSettings(network: Network) -> [(name: String, value: String)] {
        manifest(network: network, step: 0, epoch: 0).weightSettings
    }

    /// Fails unless a checkpoint was written by a run with these options: resuming with other
    /// values would silently change the weights it promises to reproduce.
    public func checkResumable(_ m: CheckpointManifest, model: ModelSpec, source: String) throws {
        let mine = weightSettings(network: try Network(spec: model, inputShape: m.inputShape, classes: m.classes))
        // The initialisation is behind a resumed run; the cosine schedule spans --epochs, the
        // other schedules do not depend on it.
        let ignored: Set<String> = schedule.shape == .cosine ? ["--init"] : ["--init", "--epochs"]
        let differences = zip(m.weightSettings, mine).filter { $0.0.value != $0.1.value && !ignored.contains($0.0.name) }
        guard differences.isEmpty else {
            let list = differences.map { "\($0.0.name) \($0.0.value) (flags say \($0.1.value))" }.joined(separator: ", ")
            throw EngineError.invalidCheckpoint("'\(source)' was written with \(list); pass the checkpoint's values to resume it, or use another --checkpoint-dir")
        }
    }
}

extension CheckpointManifest {
    /// The weight-determining fields, each under the flag that sets it.
    var weightSettings: [(name: String, value: String)] {
        [("--model", model), ("input shape", inputShape.map(String.init).joined(separator: "×")), ("--classes", "\(classes)"),
         ("--seed", "\(seed)"), ("--batch-size", "\(batchSize)"), ("--chunk-size", "\(chunkSize)"), ("--lr", "\(learningRate)"),
         ("--lr-schedule", learningRateSchedule), ("--epochs", "\(epochs)"), ("--momentum", "\(momentum)"),
         ("--weight-decay", "\(weightDecay)"), ("--nesterov", "\(nesterov)"), ("--bn-momentum", "\(batchNormMomentum)"),
         ("--bn-eps", "\(batchNormEpsilon)"), ("--init", initScheme)]
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
