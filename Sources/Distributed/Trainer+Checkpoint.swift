import Engine

extension Hyperparameters {
    /// Fails unless a checkpoint was written with these hyperparameters: resuming with other
    /// values would silently change the weights it promises to reproduce. The initialisation
    /// is behind a resumed run; the epoch count matters only to the cosine schedule.
    public func checkResumable(_ manifest: CheckpointManifest, source: String) throws {
        let ignored: Set<String> = schedule.shape == .cosine ? ["initialization"] : ["initialization", "epochs"]
        let differences = zip(manifest.hyperparameters.settings, settings)
            .filter { $0.0.value != $0.1.value && !ignored.contains($0.0.name) }
        guard !differences.isEmpty else { return }
        throw InvalidSetting { name in
            let list = differences.map { "\(name($0.0.name)) \($0.0.value) (now \($0.1.value))" }.joined(separator: ", ")
            return "'\(source)' was written with \(list); pass the checkpoint's values to resume it, or use another checkpoint directory"
        }
    }
}

extension Trainer {
    /// The full training state after `step` steps.
    public func checkpoint() -> Checkpoint {
        Checkpoint(manifest: CheckpointManifest(model: network.spec.text, inputShape: network.inputShape,
                                                classes: network.classes, hyperparameters: options.hyperparameters,
                                                step: step, epoch: epoch, tensors: Checkpoint.tensorTable(layout: network.layout)),
                   parameters: parameterValues, buffers: bufferValues, velocity: Array(velocity.prefix(network.parameterCount)))
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
