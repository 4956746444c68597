/// One step of an `Optimizer` over the flat parameter buffer, in PyTorch's operation order
/// (its single-tensor, non-AMSGrad code):
///
///     g ← gradient·scale                        (the clipping coefficient, 1 without clipping)
///     sgd:   g ← g + wd·p;  m ← momentum·m + g;  g ← nesterov ? g + momentum·m : m;  p ← p − lr·g
///     adam:  g ← g + wd·p                        (adamw instead: p ← p·(1 − lr·wd))
///            m ← m + (1−β1)·(g − m)              (torch.lerp; g − (g − m)·β1 when 1−β1 ≥ 0.5)
///            v ← v·β2 + (1−β2)·g·g
///            p ← p − stepSize·(m / (√v / √(1 − β2ᵗ) + eps)),  stepSize = lr / (1 − β1ᵗ)
///
/// t is the 1-based step. The step's scalars are computed once, in Double, and rounded once to
/// Float; the elementwise arithmetic is Float, 16 elements at a time with the tail padded, and
/// no operation fused, so every element's bits are the same however the buffer is sliced over
/// threads, on every rank and on AVX2 and AVX-512 builds.
public struct OptimizerStep: Sendable {
    public let optimizer: Optimizer
    let learningRate: Float
    let gradientScale: Float
    /// Adam's (1 − β1) for the lerp, and whether it takes the form for weights ≥ 0.5.
    let firstMomentWeight: Float
    let lerpFromEnd: Bool
    /// Adam's β2 and 1 − β2.
    let secondMomentDecay, secondMomentWeight: Float
    let stepSize: Float
    let biasCorrection2Root: Float
    /// AdamW's factor 1 − lr·wd.
    let decayFactor: Float

    /// The update of global step `step` (0-based) at `learningRate`, the gradient first
    /// multiplied by `gradientScale`.
    public init(_ optimizer: Optimizer, learningRate: Float, step: Int, gradientScale: Float = 1) {
        self.optimizer = optimizer
        self.learningRate = learningRate
        self.gradientScale = gradientScale
        let t = step + 1, (beta1, beta2) = (optimizer.beta1, optimizer.beta2)
        firstMomentWeight = Float(1 - beta1)
        lerpFromEnd = !(1 - beta1 < 0.5)
        secondMomentDecay = Float(beta2)
        secondMomentWeight = Float(1 - beta2)
        stepSize = Float(Double(learningRate) / (1 - ScalarMath.power(beta1, t)))
        biasCorrection2Root = Float((1 - ScalarMath.power(beta2, t)).squareRoot())
        decayFactor = Float(1 - Double(learningRate) * Double(optimizer.weightDecay))
    }

    /// Updates elements 0..<count of the parameters and of the optimizer's state tensors from
    /// the gradient; `state` holds the first state tensor, the next `stateStride` floats on.
    public func apply(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                      state: UnsafeMutablePointer<Float>, stateStride: Int, count: Int) {
        var i = 0
        while i < count {
            let n = min(16, count - i)
            @inline(__always) func load(_ p: UnsafePointer<Float>) -> Vec16 { n == 16 ? load16(p + i) : loadPrefix16(p + i, count: n) }
            @inline(__always) func store(_ v: Vec16, _ p: UnsafeMutablePointer<Float>) {
                if n == 16 { store16(v, p + i) } else { storePrefix16(v, p + i, count: n) }
            }
            let g = load(gradients) * gradientScale
            var p = load(parameters)
            switch optimizer.kind {
            case .sgd:
                let (m, updated) = sgd(g: g, p: p, m: load(state))
                store(m, state)
                p = updated
            case .adam, .adamw:
                let (m, v, updated) = adam(g: g, p: p, m: load(state), v: load(state + stateStride))
                store(m, state)
                store(v, state + stateStride)
                p = updated
            }
            store(p, parameters)
            i += n
        }
    }

    @inline(__always) private func sgd(g gradient: Vec16, p: Vec16, m: Vec16) -> (m: Vec16, p: Vec16) {
        let momentum = optimizer.momentum
        var g = gradient + optimizer.weightDecay * p
        let m = momentum * m + g
        g = optimizer.nesterov ? g + momentum * m : m
        return (m, p - learningRate * g)
    }

    @inline(__always) private func adam(g gradient: Vec16, p parameter: Vec16, m: Vec16, v: Vec16) -> (m: Vec16, v: Vec16, p: Vec16) {
        var g = gradient, p = parameter
        if optimizer.kind == .adamw {
            p = p * decayFactor
        } else {
            g = g + optimizer.weightDecay * p
        }
        let m = lerpFromEnd ? g - (g - m) * (1 - firstMomentWeight) : m + firstMomentWeight * (g - m)
        let v = v * secondMomentDecay + secondMomentWeight * g * g
        let denominator = v.squareRoot() / biasCorrection2Root + optimizer.epsilon
        return (m, v, p - stepSize * (m / denominator))
    }
}
