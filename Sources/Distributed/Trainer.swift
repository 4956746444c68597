import Engine

/// What one training step measured, identical on every rank and for any rank count.
public struct StepResult: Sendable {
    /// Global step index just completed (0-based) and its epoch.
    public let step: Int
    public let epoch: Int
    /// Mean loss and accuracy over the global batch.
    public let loss: Float
    public let accuracy: Double
    /// Some rank received a stop signal before this step's last reduction: every rank stops here.
    public let stopRequested: Bool
}

/// The points of a step a profiler can time (bench-layers): each is reported as it ends on
/// this rank.
public enum StepPhase {
    case batchLoaded
    case forward(layer: Int)
    case lossEvaluated
    case backward(layer: Int)
    /// Exact mode: the gradients `WholeBatchGradients` computes from the whole batch's factors.
    case wholeBatchGradients
    case gradientsReduced
}

/// Data-parallel training of one network over the ranks of a communicator
/// (docs/architecture.md §2, §3).
///
/// Step t takes the global batch the batch source gives for t, cuts it into B/C chunks and
/// gives this rank its contiguous share. Forward, loss and backward run chunk by chunk;
/// everything summed over samples is summed within each chunk in Float, then across chunks
/// and ranks exactly (`ExactReducer`), and every rank applies the same update. The weights
/// after every step are therefore a function of the hyperparameters and the data alone, never
/// of the rank or thread count — and, since the state is (weights, optimizer state, step), never
/// of where a run was interrupted.
public final class Trainer {
    public let network: Network
    public let options: TrainingOptions
    public let batches: BatchSource
    public let communicator: Communicator
    public let reducer: ExactReducer
    public let executor: ParallelExecutor
    /// Global steps completed.
    public internal(set) var step = 0

    let parameters: UnsafeMutableBufferPointer<Float>
    let buffers: UnsafeMutableBufferPointer<Float>
    /// The optimizer's state tensors (`Optimizer.stateNames`), each `parameterCount` floats.
    let optimizerState: UnsafeMutableBufferPointer<Float>
    /// The gradient summed over the global batch, after a step's reduction.
    let gradient: UnsafeMutableBufferPointer<Float>
    /// With --clip-grad-norm: the gradient's norm, computed in a fixed order.
    let gradientNorm: GradientNorm?
    /// This rank's chunks of every global batch, their gradient partials, loss and correct counts.
    let localChunks: Range<Int>
    let chunkGradients: UnsafeMutableBufferPointer<Float>
    let chunkLoss: UnsafeMutableBufferPointer<Float>
    let chunkCorrect: UnsafeMutableBufferPointer<Int64>
    let activations: Activations
    let labels: UnsafeMutableBufferPointer<UInt8>
    let pass: Pass
    /// Where the reduction reads the gradient partials (some layers recompute theirs).
    let gradientPartials: GradientPartials
    /// Every parameter tensor; and, for the exact reduction, those not in `wholeBatch`.
    let gradientSegments: [SumSegment]
    let exactSegments: [SumSegment]
    /// Layers whose gradients every rank computes from the whole batch's factors (exact mode).
    let wholeBatch: WholeBatchGradients
    let lossSegment = [SumSegment(name: "the loss", range: 0..<1)]
    /// Correct predictions and the stop flag, summed over ranks each step.
    private var counts: [Int64] = [0, 0]

    private var hyperparameters: Hyperparameters { options.hyperparameters }

    /// Allocates everything a step needs, initialises the weights from the seed and makes
    /// every rank start from rank 0's.
    public init(network: Network, batches: BatchSource, options: TrainingOptions, communicator: Communicator) throws {
        try options.validate(ranks: communicator.size)
        let h = options.hyperparameters
        guard batches.sampleCount >= h.batchSize else {
            let (samples, batch) = (batches.sampleCount, h.batchSize)
            throw InvalidSetting { "the training set has \(samples) samples, fewer than \($0("batchSize")) \(batch)" }
        }
        self.network = network
        self.options = options
        self.batches = batches
        self.communicator = communicator
        reducer = ExactReducer(communicator: communicator)
        executor = ParallelExecutor(threads: options.threads)
        reducer.executor = executor
        let layout = network.layout
        var initialParameters: [Float] = [], initialBuffers: [Float] = []
        layout.initialize(parameters: &initialParameters, buffers: &initialBuffers, seed: h.seed)
        func zeros<T: Numeric>(_ count: Int) -> UnsafeMutableBufferPointer<T> {
            let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(count, 1))
            buffer.initialize(repeating: 0)
            return buffer
        }
        parameters = zeros(layout.parameterCount)
        _ = parameters.update(from: initialParameters)
        buffers = zeros(layout.bufferCount)
        _ = buffers.update(from: initialBuffers)
        optimizerState = zeros(layout.parameterCount * h.optimizer.stateNames.count)
        gradient = zeros(layout.parameterCount)
        gradientNorm = h.clipGradNorm > 0 ? GradientNorm(count: layout.parameterCount) : nil
        localChunks = chunkRange(rank: communicator.rank, ranks: communicator.size, chunks: h.chunksPerBatch)
        let localSamples = localChunks.count * h.chunkSize
        chunkGradients = zeros(localChunks.count * layout.parameterCount)
        chunkLoss = zeros(localChunks.count)
        chunkCorrect = zeros(localChunks.count)
        activations = Activations(network: network, capacity: localSamples)
        labels = zeros(localSamples)
        pass = Pass(samples: .init(count: localSamples, chunkSize: h.chunkSize, globalCount: h.batchSize),
                    state: .init(parameters: parameters.baseAddress!, buffers: buffers.baseAddress!, chunkGradients: chunkGradients.baseAddress!,
                                 parameterCount: layout.parameterCount),
                    training: true, executor: executor, reducer: reducer, hyper: h.layers)
        gradientSegments = layout.parameters.map { SumSegment(name: $0.name, range: $0.range) }
        wholeBatch = WholeBatchGradients(network: network, batchSize: h.batchSize, chunkSize: h.chunkSize,
                                         communicator: communicator, executor: executor)
        let wholeBatchRanges = wholeBatch.ranges
        exactSegments = gradientSegments.filter { segment in !wholeBatchRanges.contains { $0.contains(segment.range.lowerBound) } }
        gradientPartials = GradientPartials(pass: pass, layers: network.layers)
        try communicator.broadcast(parameters)
    }

    deinit {
        for p in [parameters, buffers, optimizerState, gradient, chunkGradients, chunkLoss] { p.deallocate() }
        labels.deallocate()
        chunkCorrect.deallocate()
    }

    public var stepsPerEpoch: Int { batches.sampleCount / hyperparameters.batchSize }
    public var totalSteps: Int { min(hyperparameters.epochs * stepsPerEpoch, options.maxSteps ?? Int.max) }
    public var epoch: Int { step / stepsPerEpoch }

    /// The learning rate of global step `step`.
    public func learningRate(atStep step: Int) -> Float {
        hyperparameters.schedule.rate(base: hyperparameters.learningRate, step: step, stepsPerEpoch: stepsPerEpoch,
                                      totalSteps: hyperparameters.epochs * stepsPerEpoch)
    }

    /// One optimisation step on the next global batch: the whole step, every collective in
    /// the order every rank runs it (docs/architecture.md §3).
    public func trainStep(probe: ((StepPhase) -> Void)? = nil) throws -> StepResult {
        let epoch = self.epoch, parameterCount = network.parameterCount
        communicator.activity = "at step \(step + 1)"
        do {
            // This rank's chunks of the global batch.
            batches.prepare(step: step, batchSize: hyperparameters.batchSize)
            pass.forEachChunk(LoadChunk(batches: batches, firstPosition: localChunks.lowerBound * hyperparameters.chunkSize,
                                        input: activations.input, labels: labels.baseAddress!))
            probe?(.batchLoaded)
            // Forward. Collectives: each BatchNorm2d sums its batch statistics over the global
            // batch, twice (mean, then variance), through `pass.reducer` (§2.5).
            // (Closures only with a probe: a context per step would allocate.)
            try network.forward(activations, pass, layerDone: probe.map { probe in { probe(.forward(layer: $0)) } })
            network.loss.evaluate(outputs: activations.output, labels: labels.baseAddress!, classes: network.classes,
                                  labelSmoothing: hyperparameters.labelSmoothing, pass: pass, gradient: activations.outputGradient,
                                  chunkLoss: chunkLoss.baseAddress!, chunkCorrect: chunkCorrect.baseAddress!)
            probe?(.lossEvaluated)
            // Backward, then the gradients summed over the global batch. Collectives: each
            // BatchNorm2d sums Σdy and Σdy·x̂ (§2.5); then, exact, one maximum and one integer
            // sum over the other gradients (§2.4), after the whole batch's factors of the layers
            // that need no sum are gathered; or, float, one non-blocking sum per layer as
            // backward produces it.
            switch options.reduction {
            case .exact:
                try network.backward(activations, pass, layerDone: probe.map { probe in { probe(.backward(layer: $0)) } })
                try wholeBatch.compute(into: gradient.baseAddress!)
                probe?(.wholeBatchGradients)
                try reducer.sumChunks(gradientPartials, rows: pass.chunkCount, segments: exactSegments, into: gradient.baseAddress!)
            case .float:
                do {
                    try network.backward(activations, pass) { [self] layer in
                        probe?(.backward(layer: layer))
                        try startFloatSum(ofLayer: layer)
                    }
                } catch {
                    // Every rank started the same sums: complete them, so that MPI can finalize.
                    try? communicator.waitAll()
                    throw error
                }
                try communicator.waitAll()
            }
            probe?(.gradientsReduced)
            // The loss, exactly; then correct predictions and the stop flag in one small sum.
            var lossSum: Float = 0
            try reducer.sumChunks(chunkLoss.baseAddress!, rows: pass.chunkCount, width: 1, segments: lossSegment, into: &lossSum)
            counts[0] = chunkCorrect.reduce(0, +)
            counts[1] = StopSignal.requested ? 1 : 0
            try communicator.allreduceSum(&counts)
            // The update: elementwise on identical inputs (the clipping coefficient too, from a
            // norm summed in a fixed order), so slicing it over the threads changes no bit and
            // every rank holds the same weights (§2.6).
            let scale = gradientNorm.map {
                GradientNorm.clippingCoefficient(maxNorm: hyperparameters.clipGradNorm,
                                                 norm: $0.norm(of: gradient.baseAddress!, executor: executor))
            } ?? 1
            let slices = executor.threadCount
            executor.run(count: slices, UpdateParameters(
                step: OptimizerStep(hyperparameters.optimizer, learningRate: learningRate(atStep: step), step: step, gradientScale: scale),
                slices: slices, parameterCount: parameterCount, p: parameters.baseAddress!, g: gradient.baseAddress!,
                state: optimizerState.baseAddress!))
            let result = StepResult(step: step, epoch: epoch, loss: lossSum / Float(hyperparameters.batchSize),
                                    accuracy: Double(counts[0]) / Double(hyperparameters.batchSize), stopRequested: counts[1] > 0)
            step += 1
            if options.checkReplicasEvery > 0 && step % options.checkReplicasEvery == 0 { try checkReplicas() }
            return result
        } catch EngineError.nonFinite(let what) {
            throw EngineError.nonFinite("\(what) at step \(step + 1)")
        }
    }

    /// The chunk's samples of the global batch, scaled into the input, and their labels.
    private struct LoadChunk: ChunkSamplesTask {
        let batches: BatchSource
        let firstPosition: Int
        let input: UnsafeMutablePointer<Float>
        let labels: UnsafeMutablePointer<UInt8>

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let positions = (firstPosition + first)..<(firstPosition + first + count)
            batches.load(positions: positions, into: input + first * batches.sampleSize, labels: labels + first)
        }
    }

    /// The optimizer's step on slice t of the parameters.
    private struct UpdateParameters: ParallelTask {
        let step: OptimizerStep
        let slices, parameterCount: Int
        let p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>

        func run(index t: Int, workspace: Workspace) {
            let part = ParallelExecutor.part(t, of: slices, 0..<parameterCount)
            step.apply(parameters: p + part.lowerBound, gradients: g + part.lowerBound, state: state + part.lowerBound,
                       stateStride: parameterCount, count: part.count)
        }
    }

    /// `--reduction float`, once `layer`'s backward is done: this rank's sum of each of its
    /// tensors' chunk partials, in Float, chunk after chunk, then a non-blocking sum across ranks.
    private func startFloatSum(ofLayer layer: Int) throws {
        let range = network.parameterRanges[layer]
        guard !range.isEmpty else { return }
        for tensor in gradientSegments where range.contains(tensor.range.lowerBound) {
            for b in 0..<gradientPartials.blockCount(of: tensor.range) {
                let block = gradientPartials.block(b, of: tensor.range)
                let (base, rowStride) = gradientPartials.rows(block, workspace: executor.workspaces[0])
                let sum = gradient.baseAddress! + block.lowerBound
                sum.update(repeating: 0, count: block.count)
                for c in 0..<pass.chunkCount {
                    let row = base + c * rowStride
                    for i in 0..<block.count { sum[i] += row[i] }
                }
            }
        }
        try communicator.startAllreduceSum(UnsafeMutableBufferPointer(rebasing: gradient[range]))
    }

    /// Stops with an error unless every rank holds exactly rank 0's parameters and buffers.
    public func checkReplicas() throws {
        let mine = [UInt8](digest.utf8)
        let all = try communicator.allgather(mine)
        for r in 0..<communicator.size where Array(all[(r * mine.count)..<((r + 1) * mine.count)]) != Array(all[0..<mine.count]) {
            throw TrainingError.replicasDiverged("replicas diverged at step \(step): rank \(r)'s parameters differ from rank 0's")
        }
    }

    /// The weights and batch-norm statistics, as the digest and checkpoints see them.
    public var parameterValues: [Float] { Array(parameters) }
    public var bufferValues: [Float] { Array(buffers.prefix(network.layout.bufferCount)) }
    public var digest: String { parameterDigest(parameters: parameterValues, buffers: bufferValues) }
    /// The last step's gradient, summed over the global batch (for tests against PyTorch).
    package var gradientValues: [Float] { Array(gradient.prefix(network.parameterCount)) }

    /// Starts from these weights and batch-norm statistics instead of the seed's (for tests
    /// that start where a PyTorch program starts); every rank must pass the same.
    package func start(parameters values: [Float], buffers bufferValues: [Float]) {
        _ = parameters.update(from: values)
        _ = buffers.update(from: bufferValues)
    }
}

/// A training failure that is neither bad input nor a non-finite value.
public enum TrainingError: Error, CustomStringConvertible {
    /// `checkReplicas` found a rank whose weights differ from rank 0's.
    case replicasDiverged(String)
    public var description: String {
        switch self { case .replicasDiverged(let m): return m }
    }
}

extension Trainer {
    /// Evaluates the current weights on `dataset`, sharded over the ranks.
    public func evaluate(_ dataset: Dataset) throws -> EvaluationResult {
        communicator.activity = "while evaluating after step \(step)"
        do {
            return try Engine.evaluate(
                network: network, parameters: parameters.baseAddress!, buffers: buffers.baseAddress!, dataset: dataset,
                chunkSize: hyperparameters.chunkSize, hyper: hyperparameters.layers, executor: executor,
                communicator: communicator, reducer: reducer)
        } catch EngineError.nonFinite(let what) {
            throw EngineError.nonFinite("\(what) while evaluating after step \(step)")
        }
    }
}
