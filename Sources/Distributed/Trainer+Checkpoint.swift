import Engine

extension Trainer {
    /// The full training state after `step` steps.
    public func checkpoint() -> Checkpoint {
        var manifest = CheckpointManifest(model: network.spec.text, inputShape: network.inputShape, classes: network.classes,
                                          hyperparameters: options.hyperparameters, step: step, epoch: epoch,
                                          tensors: Checkpoint.tensorTable(layout: network.layout, optimizer: options.hyperparameters.optimizer))
        manifest.normalization = batches.normalization
        return Checkpoint(manifest: manifest, parameters: parameterValues, buffers: bufferValues,
                          optimizerState: Array(optimizerState.prefix(optimizerStateCount)))
    }

    /// Floats of the optimizer's state: its state tensors, one float per parameter each.
    var optimizerStateCount: Int { network.parameterCount * options.hyperparameters.optimizer.stateNames.count }

    /// Continues from a checkpoint's state; with the same options, training then follows the
    /// uninterrupted run bit for bit, whatever the rank count (the state is (weights, optimizer
    /// state, step); Adam's step count is the step).
    /// Every rank must pass the same checkpoint; rank 0's values are broadcast to be sure.
    public func restore(_ checkpoint: Checkpoint) throws {
        let layout = network.layout
        precondition(checkpoint.parameters.count == layout.parameterCount && checkpoint.buffers.count == layout.bufferCount
                     && checkpoint.optimizerState.count == optimizerStateCount)
        _ = parameters.update(from: checkpoint.parameters)
        _ = optimizerState.update(from: checkpoint.optimizerState)
        for (i, v) in checkpoint.buffers.enumerated() { buffers[i] = v }
        try communicator.broadcast(parameters)
        try communicator.broadcast(optimizerState)
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
