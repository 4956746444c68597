import Engine

/// Everything that determines the weights (design §2: with the seed, model and data, these are
/// the only inputs), plus how the work is spread, which does not change them.
public struct TrainingOptions: Sendable, Equatable {
    public var seed: UInt64 = 1
    /// Global batch size B: samples per step over all ranks.
    public var batchSize = 64
    /// Chunk size C: the unit of work; must divide B.
    public var chunkSize = 8
    public var epochs = 5
    /// Stop at this global step, counted from the start of training.
    public var maxSteps: Int?
    public var learningRate: Float = 0.05
    public var schedule = LearningRateSchedule()
    public var optimizer = SGD(momentum: 0.9, weightDecay: 0)
    public var layer = LayerHyperparameters()
    public var initScheme: InitScheme = .default
    /// Threads per rank (does not change the bits).
    public var threads = 1
    /// How gradients are summed across chunks and ranks.
    public var reduction = Reduction.exact
    /// Compare parameter digests across ranks every K steps (0: never).
    public var checkReplicasEvery = 0

    public init() {}

    public var chunksPerBatch: Int { batchSize / chunkSize }

    /// Checks what can be checked without data; the message names the flag to change.
    public func validate(ranks: Int) throws {
        func fail(_ message: String) throws -> Never { throw UsageError(message) }
        if batchSize < 1 { try fail("--batch-size must be at least 1 (got \(batchSize))") }
        if chunkSize < 1 { try fail("--chunk-size must be at least 1 (got \(chunkSize))") }
        if batchSize % chunkSize != 0 {
            try fail("--batch-size \(batchSize) is not a multiple of --chunk-size \(chunkSize); choose a batch size such as \(max(1, batchSize / chunkSize) * chunkSize)")
        }
        if chunksPerBatch > 1 << ExactReducer.headroomBits { try fail("--batch-size / --chunk-size must be at most \(1 << ExactReducer.headroomBits)") }
        if ranks > chunksPerBatch {
            try fail("\(ranks) ranks but a batch has only \(chunksPerBatch) chunks (--batch-size \(batchSize) / --chunk-size \(chunkSize)); use at most \(chunksPerBatch) ranks or a larger batch")
        }
        if epochs < 1 { try fail("--epochs must be at least 1 (got \(epochs))") }
        if let maxSteps, maxSteps < 1 { try fail("--max-steps must be at least 1 (got \(maxSteps))") }
        if !(learningRate > 0) || !learningRate.isFinite { try fail("--lr must be a positive number (got \(learningRate))") }
        if schedule.warmupSteps < 0 { try fail("--warmup-steps must be 0 or more") }
        if schedule.stepEpochs < 1 { try fail("--lr-step-epochs must be at least 1") }
        if !(schedule.gamma > 0 && schedule.gamma <= 1) { try fail("--lr-gamma must be in (0, 1]") }
        if !(optimizer.momentum >= 0 && optimizer.momentum < 1) { try fail("--momentum must be in [0, 1) (got \(optimizer.momentum))") }
        if !(optimizer.weightDecay >= 0) || !optimizer.weightDecay.isFinite { try fail("--weight-decay must be ≥ 0 (got \(optimizer.weightDecay))") }
        if optimizer.nesterov && optimizer.momentum == 0 { try fail("--nesterov needs a momentum above 0") }
        if !(layer.batchNormMomentum >= 0 && layer.batchNormMomentum <= 1) { try fail("--bn-momentum must be in [0, 1]") }
        if !(layer.batchNormEpsilon > 0) { try fail("--bn-eps must be positive") }
        if checkReplicasEvery < 0 { try fail("--check-replicas must be 0 or more") }
        if threads < 1 || threads > 256 { try fail("--threads must be between 1 and 256 (got \(threads))") }
    }
}

/// A flag or value that cannot work; the message names the flag to change (exit code 64).
public struct UsageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Reduction: String, Sendable, CaseIterable {
    /// 64-bit fixed point across chunks and ranks: the same bits for any rank count (design §2.4).
    case exact
    /// Float sums, a non-blocking MPI_Allreduce per layer overlapped with backward: faster,
    /// but the result depends on the rank count and the MPI library's summation order.
    case float
}
