/// One forward or backward pass over a rank's share of a batch.
///
/// Samples are laid out contiguously (NCHW for images); chunk c holds samples
/// `c·chunkSize ..< min((c+1)·chunkSize, sampleCount)`.
public final class Pass {
    public let sampleCount: Int
    public let chunkSize: Int
    public let chunkCount: Int
    /// The number of samples in the global batch: the divisor of means over the batch.
    public let globalSampleCount: Int
    public let training: Bool
    public let parameters: UnsafeMutablePointer<Float>
    public let buffers: UnsafeMutablePointer<Float>
    /// `chunkCount` rows of `parameterCount` gradient partials; each layer's backward
    /// overwrites its parameters' part of every row.
    public let chunkGradients: UnsafeMutablePointer<Float>?
    public let parameterCount: Int
    public let executor: ParallelExecutor
    public let reducer: ChunkSumReducer
    public let hyper: LayerHyperparameters

    /// The samples a pass covers: `count` of this rank's, in chunks of `chunkSize`, out of a
    /// global batch of `globalCount` (the divisor of means over the batch).
    public struct Samples {
        public let count, chunkSize, globalCount: Int
        public init(count: Int, chunkSize: Int, globalCount: Int) {
            (self.count, self.chunkSize, self.globalCount) = (count, chunkSize, globalCount)
        }
    }

    /// Where the layers find their parameters and batch-norm buffers (`ParameterLayout`'s flat
    /// arrays) and, in training, write their gradient partials: `chunkCount` rows of
    /// `parameterCount`.
    public struct State {
        public let parameters: UnsafeMutablePointer<Float>
        public let buffers: UnsafeMutablePointer<Float>
        public let chunkGradients: UnsafeMutablePointer<Float>?
        public let parameterCount: Int
        public init(parameters: UnsafeMutablePointer<Float>, buffers: UnsafeMutablePointer<Float>,
                    chunkGradients: UnsafeMutablePointer<Float>? = nil, parameterCount: Int) {
            (self.parameters, self.buffers, self.chunkGradients, self.parameterCount) = (parameters, buffers, chunkGradients, parameterCount)
        }
    }

    /// A pass over `samples` with `state`, its chunks run by `executor`, its sums over the
    /// global batch by `reducer`; `training` selects batch statistics and gradient partials.
    public init(samples: Samples, state: State, training: Bool, executor: ParallelExecutor, reducer: ChunkSumReducer,
                hyper: LayerHyperparameters) {
        sampleCount = samples.count
        chunkSize = samples.chunkSize
        chunkCount = (samples.count + samples.chunkSize - 1) / samples.chunkSize
        globalSampleCount = samples.globalCount
        self.training = training
        parameters = state.parameters
        buffers = state.buffers
        chunkGradients = state.chunkGradients
        parameterCount = state.parameterCount
        self.executor = executor
        self.reducer = reducer
        self.hyper = hyper
    }

    @inlinable public func samples(ofChunk c: Int) -> Range<Int> {
        (c * chunkSize)..<min((c + 1) * chunkSize, sampleCount)
    }

    /// Runs `task` for every chunk.
    public func forEachChunk<Task: ChunkSamplesTask>(_ task: Task) {
        executor.run(count: chunkCount, EachChunk(pass: self, task: task))
    }

    /// Runs `task` for each of `threadCount` contiguous parts of the chunks (part t is where
    /// thread t starts in `forEachChunk`): for work whose rows do not depend on the chunking,
    /// so that an operand shared by every row (a weight) is streamed once per part instead of
    /// once per chunk.
    public func forEachShare<Task: ShareSamplesTask>(_ task: Task) {
        let parts = min(executor.threadCount, chunkCount)
        executor.run(count: parts, EachShare(pass: self, parts: parts, task: task))
    }

    /// The gradient partials of chunk `c`.
    public func gradients(ofChunk c: Int) -> UnsafeMutablePointer<Float> {
        chunkGradients! + c * parameterCount
    }
}

/// The work of `Pass.forEachChunk` on one chunk: samples `first ..< first + count`, whose
/// partials go to row `chunk`.
public protocol ChunkSamplesTask {
    func run(first: Int, count: Int, chunk: Int, workspace: Workspace)
}

/// The work of `Pass.forEachShare` on one thread's share of the chunks: samples
/// `first ..< first + count`.
public protocol ShareSamplesTask {
    func run(first: Int, count: Int, workspace: Workspace)
}

/// A `ChunkSamplesTask` as the executor runs it: chunk index → the chunk's samples.
private struct EachChunk<Task: ChunkSamplesTask>: ParallelTask {
    let pass: Pass
    let task: Task

    func run(index c: Int, workspace: Workspace) {
        let range = pass.samples(ofChunk: c)
        task.run(first: range.lowerBound, count: range.count, chunk: c, workspace: workspace)
    }
}

/// A `ShareSamplesTask` as the executor runs it: part t of `parts` of the chunks → its samples.
private struct EachShare<Task: ShareSamplesTask>: ParallelTask {
    let pass: Pass
    let parts: Int
    let task: Task

    func run(index t: Int, workspace: Workspace) {
        let chunks = ParallelExecutor.part(t, of: parts, 0..<pass.chunkCount)
        let first = chunks.lowerBound * pass.chunkSize, end = min(chunks.upperBound * pass.chunkSize, pass.sampleCount)
        task.run(first: first, count: end - first, workspace: workspace)
    }
}
