import Engine

/// A training run: the hyperparameters, which fix the weights, and how the run is spread,
/// bounded and watched, which does not change them.
public struct TrainingOptions: Sendable, Equatable {
    public var hyperparameters = Hyperparameters()
    /// Stop at this global step, counted from the start of training.
    public var maxSteps: Int?
    /// Threads per rank.
    public var threads = 1
    /// How gradients are summed across chunks and ranks.
    public var reduction = Reduction.exact
    /// Compare parameter digests across ranks every K steps (0: never).
    public var checkReplicasEvery = 0

    public init() {}

    /// Checks what can be checked without data.
    public func validate(ranks: Int) throws {
        try hyperparameters.validate(ranks: ranks)
        let (maxSteps, checkReplicasEvery, threads) = (maxSteps, checkReplicasEvery, threads)
        if let maxSteps, maxSteps < 1 { throw InvalidSetting { "\($0("maxSteps")) must be at least 1 (got \(maxSteps))" } }
        if checkReplicasEvery < 0 { throw InvalidSetting { "\($0("checkReplicasEvery")) must be 0 or more (got \(checkReplicasEvery))" } }
        if threads < 1 || threads > 256 { throw InvalidSetting { "\($0("threads")) must be between 1 and 256 (got \(threads))" } }
    }
}

public enum Reduction: String, Sendable, CaseIterable {
    /// 64-bit fixed point across chunks and ranks: the same bits for any rank count
    /// (docs/architecture.md §2.4).
    case exact
    /// Float sums, a non-blocking MPI_Allreduce per layer overlapped with backward: faster,
    /// but the result depends on the rank count and the MPI library's summation order.
    case float
}
