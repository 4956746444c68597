/// Per-thread scratch memory, grown on first use and then reused: no allocation per step.
public final class Workspace {
    /// What a scratch buffer holds. Buffers are independent, so one task may hold several; a
    /// buffer's contents last only until the next request for it.
    public enum Buffer: Int, CaseIterable {
        /// A layer's input transposed: a convolution's channels-last, `[H·W, in]` (Winograd);
        /// a linear layer's share of samples, `[in, samples]`.
        case transposedInput
        /// A sample's input with its zero border, `[in, H + 2·pad, W + 2·pad]`.
        case paddedInput
        /// The im2col matrix, `[in·k·k, Ho·Wo]`.
        case columns
        /// A layer's output transposed, before it is transposed back: a convolution's
        /// channels-last, `[Ho·Wo, out]`; a linear layer's `[out, samples]`.
        case transposedOutput
        /// An output gradient masked by a fused ReLU's backward.
        case maskedOutputGradient
        /// An output gradient transposed: a convolution's channels-last, `[Ho·Wo, out]`; some
        /// rows of a linear layer's, `[rows, samples]`.
        case transposedOutputGradient
        /// A convolution's weight gradient as `[(in, ky, kx), out]`, before it is transposed.
        case transposedWeightGradient
        /// The gradient of the im2col matrix, transposed: `[Ho·Wo, (ky, kx, in)]`.
        case transposedColumnGradient
        /// A convolution's input gradient channels-last, `[H·W, in]`, before it is transposed.
        case transposedInputGradient
        /// Winograd's input tiles in the transformed domain, `[16, tiles, channels]`.
        case winogradInputTiles
        /// Winograd's output tiles (or the output gradient's) in the transformed domain,
        /// `[16, tiles, channels]`.
        case winogradOutputTiles
        /// Winograd's kernel gradient in the transformed domain, `[16, in, out]`, summed over
        /// a chunk's samples.
        case winogradKernelGradient
        /// One sample's log-probabilities, `[classes]`.
        case logProbabilities
        /// The chunks' partials of one block of a layer's deferred gradients, `[chunks, block]`.
        case deferredPartials
    }

    private let buffers = Buffer.allCases.map { _ in GrowingBuffer<Float>() }

    public init() {}

    /// Buffer `buffer`, at least `count` floats.
    public func floats(_ buffer: Buffer, count: Int) -> UnsafeMutablePointer<Float> {
        buffers[buffer.rawValue].storage(count: count)
    }
}
