import Engine

extension Trainer {
    /// The full training state after `step` steps.
    public func checkpoint() -> Checkpoint {
        var manifest = CheckpointManifest(model: network.spec.text, inputShape: network.inputShape, classes: network.classes,
                                          hyperparameters: options.hyperparameters, step: step, epoch: epoch,
                                          tensors: Checkpoint.tensorTable(layout: network.layout))
        manifest.normalization = batches.normalization
        return Checkpoint(manifest: manifest, parameters: parameterValues, buffers: bufferValues,
                          velocity: Array(velocity.prefix(network.parameterCount)))
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
        // A guard for callers other than the command line, whose start-up agreement already
        // compares the step each rank would resume.
        var steps = [Int64(checkpoint.manifest.step)]
        try communicator.allreduceSum(&steps)
        guard steps[0] == Int64(checkpoint.manifest.step) * Int64(communicator.size) else {
            throw EngineError.invalidCheckpoint("ranks loaded checkpoints of different steps; is the checkpoint directory shared by all ranks?")
        }
        step = checkpoint.manifest.step
    }
}
