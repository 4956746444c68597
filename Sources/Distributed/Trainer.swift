import Engine

/// What one training step measured, identical on every rank and for any rank count.
public struct StepResult: Sendable {
    /// Global step index just completed (0-based) and its epoch.
    public let step: Int
    public let epoch: Int
    /// Mean loss and accuracy over the global batch.
    public let loss: Float
    public let accuracy: Double
    /// Some rank received a stop signal before this step's reduction: every rank stops here.
    public let stopRequested: Bool
}

/// Data-parallel training of one network over the ranks of a communicator (design §2).
///
/// Step t of epoch e takes the global batch `permutation(seed, e)[t·B ..< (t+1)·B]`, cuts it
/// into B/C chunks and gives this rank its contiguous share. Forward, loss and backward run
/// chunk by chunk; gradients are summed within each chunk in Float, then across chunks and
/// ranks exactly (`ExactReducer`), and every rank applies the same SGD update. The weights
/// after every step are therefore a function of the options alone, never of the rank or
/// thread count — and, since the state is just (weights, optimizer buffers, step), never of
/// where a run was interrupted.
public final class Trainer {
    public let network: Network
    public let options: TrainingOptions
    public let data: DataSplits
    public let communicator: Communicator
    public let reducer: ExactReducer
    public let executor: ParallelExecutor
    /// Global steps completed.
    public internal(set) var step = 0

    let parameters: UnsafeMutableBufferPointer<Float>
    let buffers: UnsafeMutableBufferPointer<Float>
    let velocity: UnsafeMutableBufferPointer<Float>
    let gradient: UnsafeMutableBufferPointer<Float>
    let chunkGradients: UnsafeMutableBufferPointer<Float>
    let localChunks: Range<Int>
    let activations: Activations
    let labels: UnsafeMutableBufferPointer<UInt8>
    let chunkLoss: UnsafeMutableBufferPointer<Float>
    let chunkCorrect: UnsafeMutableBufferPointer<Int64>
    let pass: Pass
    let gradientSegments: [SumSegment]
    /// Where the reduction reads the chunk partials of the gradients (some are recomputed).
    let gradientPartials: GradientPartials
    let lossSegment = [SumSegment(name: "the loss", range: 0..<1)]
    /// Correct predictions and the stop flag, summed over ranks each step.
    private var counts: [Int64] = [0, 0]
    private var epochOrder: (epoch: Int, order: [Int32])?

    public init(network: Network, data: DataSplits, options: TrainingOptions, communicator: Communicator) throws {
        try options.validate(ranks: communicator.size)
        guard data.train.count >= options.batchSize else {
            throw EngineError.invalidData("the training set has \(data.train.count) samples, fewer than --batch-size \(options.batchSize)")
        }
        self.network = network
        self.options = options
        self.data = data
        self.communicator = communicator
        reducer = ExactReducer(communicator: communicator)
        executor = ParallelExecutor(threads: options.threads)
        reducer.executor = executor
        let layout = network.layout
        var initialParameters: [Float] = [], initialBuffers: [Float] = []
        layout.initialize(parameters: &initialParameters, buffers: &initialBuffers, seed: options.seed)
        parameters = .allocate(capacity: layout.parameterCount)
        _ = parameters.initialize(from: initialParameters)
        buffers = .allocate(capacity: max(layout.bufferCount, 1))
        buffers.initialize(repeating: 0)
        _ = buffers.initialize(from: initialBuffers)
        velocity = .allocate(capacity: layout.parameterCount)
        velocity.initialize(repeating: 0)
        gradient = .allocate(capacity: layout.parameterCount)
        gradient.initialize(repeating: 0)
        localChunks = chunkRange(rank: communicator.rank, ranks: communicator.size, chunks: options.chunksPerBatch)
        let localSamples = localChunks.count * options.chunkSize
        chunkGradients = .allocate(capacity: localChunks.count * layout.parameterCount)
        chunkGradients.initialize(repeating: 0)
        activations = Activations(network: network, capacity: localSamples)
        labels = .allocate(capacity: localSamples)
        labels.initialize(repeating: 0)
        chunkLoss = .allocate(capacity: localChunks.count)
        chunkLoss.initialize(repeating: 0)
        chunkCorrect = .allocate(capacity: localChunks.count)
        chunkCorrect.initialize(repeating: 0)
        pass = Pass(sampleCount: localSamples, chunkSize: options.chunkSize, globalSampleCount: options.batchSize,
                    training: true, parameters: parameters.baseAddress!, buffers: buffers.baseAddress!,
                    chunkGradients: chunkGradients.baseAddress!, parameterCount: layout.parameterCount,
                    executor: executor, reducer: reducer, hyper: options.layer)
        gradientSegments = layout.parameters.map { SumSegment(name: $0.name, range: $0.range) }
        gradientPartials = GradientPartials(pass: pass, layers: network.layers)
        // Every rank starts from rank 0's weights.
        try communicator.broadcast(parameters)
    }

    deinit {
        for p in [parameters, buffers, velocity, gradient, chunkGradients, chunkLoss] { p.deallocate() }
        labels.deallocate()
        chunkCorrect.deallocate()
    }

    public var stepsPerEpoch: Int { data.train.count / options.batchSize }
    public var totalSteps: Int { min(options.epochs * stepsPerEpoch, options.maxSteps ?? Int.max) }
    public var epoch: Int { step / stepsPerEpoch }

    /// The learning rate of global step `step`.
    public func learningRate(atStep step: Int) -> Float {
        options.schedule.rate(base: options.learningRate, step: step, stepsPerEpoch: stepsPerEpoch,
                              totalSteps: options.epochs * stepsPerEpoch)
    }

    /// The sample order of `epoch`: a permutation keyed by (seed, epoch) alone.
    func order(ofEpoch epoch: Int) -> [Int32] {
        if let cached = epochOrder, cached.epoch == epoch { return cached.order }
        let order = CounterRNG(seed: options.seed, stream: "epoch-\(epoch)").permutation(count: data.train.count)
        epochOrder = (epoch, order)
        return order
    }

    /// One optimisation step on the next global batch.
    public func trainStep() throws -> StepResult {
        let epoch = self.epoch
        let order = order(ofEpoch: epoch)
        let batchStart = (step % stepsPerEpoch) * options.batchSize + localChunks.lowerBound * options.chunkSize
        let parameterCount = network.parameterCount
        pass.forEachChunk(LoadBatch(order: order, batchStart: batchStart, train: data.train, input: activations.input,
                                    labels: labels))
        reducer.step = step + 1
        CollectiveWatchdog.shared?.activity = "at step \(step + 1)"
        try network.forward(activations, pass)
        network.loss.evaluate(outputs: activations.output, labels: labels.baseAddress!, classes: network.classes,
                              pass: pass, gradient: activations.outputGradient,
                              chunkLoss: chunkLoss.baseAddress!, chunkCorrect: chunkCorrect.baseAddress!)
        switch options.reduction {
        case .exact:
            try network.backward(activations, pass)
            try reducer.sumChunks(gradientPartials, rows: pass.chunkCount, width: parameterCount,
                                  segments: gradientSegments, into: gradient.baseAddress!)
        case .float:
            try network.backward(activations, pass) { [self] layer in
                let range = network.parameterRanges[layer]
                guard !range.isEmpty else { return }
                for tensor in gradientSegments where range.contains(tensor.range.lowerBound) {
                    sumInFloat(tensor.range)
                }
                try communicator.startAllreduceSum(UnsafeMutableBufferPointer(rebasing: gradient[range]))
            }
            try communicator.waitAll()
        }
        var lossSum: Float = 0
        try reducer.sumChunks(chunkLoss.baseAddress!, rows: pass.chunkCount, width: 1, segments: lossSegment, into: &lossSum)
        // The stop flag rides on the step's last, smallest allreduce.
        counts[0] = chunkCorrect.reduce(0, +)
        counts[1] = StopSignal.requested ? 1 : 0
        try communicator.allreduceSum(&counts)
        // Elementwise, so slicing it over the threads changes no bit.
        let optimizer = options.optimizer, rate = learningRate(atStep: step), slices = executor.threadCount
        let p = parameters.baseAddress!, g = gradient.baseAddress!, v = velocity.baseAddress!
        executor.run(count: slices, UpdateParameters(optimizer: optimizer, rate: rate, slices: slices,
                                                      parameterCount: parameterCount, p: p, g: g, v: v))
        let result = StepResult(step: step, epoch: epoch, loss: lossSum / Float(options.batchSize),
                                accuracy: Double(counts[0]) / Double(options.batchSize), stopRequested: counts[1] > 0)
        step += 1
        if options.checkReplicasEvery > 0 && step % options.checkReplicasEvery == 0 { try checkReplicas() }
        return result
    }

    /// The chunk's samples of the global batch, scaled into the input, and their labels.
    private struct LoadBatch: ChunkSamplesTask {
        let order: [Int32]
        let batchStart: Int
        let train: Dataset
        let input: UnsafeMutablePointer<Float>
        let labels: UnsafeMutableBufferPointer<UInt8>

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let indices = order[(batchStart + first)..<(batchStart + first + count)]
            train.scale(indices, into: input + first * train.sampleSize)
            for (k, i) in indices.enumerated() { labels[first + k] = train.labels[Int(i)] }
        }
    }

    /// The optimizer's step on slice t of the parameters.
    private struct UpdateParameters: ParallelTask {
        let optimizer: SGD
        let rate: Float
        let slices, parameterCount: Int
        let p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>

        func run(index t: Int, workspace: Workspace) {
            let part = ParallelExecutor.part(t, of: slices, 0..<parameterCount)
            optimizer.step(parameters: p + part.lowerBound, gradients: g + part.lowerBound, velocity: v + part.lowerBound,
                           count: part.count, learningRate: rate)
        }
    }

    /// `--reduction float`: this rank's sum of the chunk partials of one tensor, in Float,
    /// chunk after chunk.
    private func sumInFloat(_ tensor: Range<Int>) {
        for b in 0..<gradientPartials.blockCount(of: tensor) {
            let block = gradientPartials.block(b, of: tensor)
            let (base, rowStride) = gradientPartials.rows(block, workspace: executor.workspaces[0])
            let sum = gradient.baseAddress! + block.lowerBound
            sum.update(repeating: 0, count: block.count)
            for c in 0..<pass.chunkCount {
                let row = base + c * rowStride
                for i in 0..<block.count { sum[i] += row[i] }
            }
        }
    }

    /// Stops with an error unless every rank holds exactly rank 0's parameters and buffers.
    public func checkReplicas() throws {
        let mine = [UInt8](digest.utf8)
        let all = try communicator.allgather(mine)
        for r in 0..<communicator.size where Array(all[(r * mine.count)..<((r + 1) * mine.count)]) != Array(all[0..<mine.count]) {
            throw EngineError.nonFinite("replicas diverged at step \(step): rank \(r)'s parameters differ from rank 0's")
        }
    }

    /// The weights and batch-norm statistics, as the digest and checkpoints see them.
    public var parameterValues: [Float] { Array(parameters) }
    public var bufferValues: [Float] { Array(buffers.prefix(network.layout.bufferCount)) }
    public var digest: String { parameterDigest(parameters: parameterValues, buffers: bufferValues) }
}

extension Trainer {
    /// Evaluates the current weights on `dataset`, sharded over the ranks.
    public func evaluate(_ dataset: Dataset) throws -> EvaluationResult {
        reducer.step = nil
        CollectiveWatchdog.shared?.activity = "while evaluating after step \(step)"
        return try Engine.evaluate(
            network: network, parameters: parameters.baseAddress!, buffers: buffers.baseAddress!, dataset: dataset,
            chunkSize: options.chunkSize, hyper: options.layer, executor: executor, communicator: communicator,
            reducer: reducer)
    }
}
