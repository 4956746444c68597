/// Stochastic gradient descent with PyTorch's `torch.optim.SGD` update rule:
///
///     g ← ∇ + weight_decay·p
///     v ← momentum·v + g              (v starts at 0, so the first step gives v = g exactly)
///     g ← nesterov ? g + momentum·v : v
///     p ← p − lr·g
///
/// Elementwise on identical inputs, so every rank holds the same weights afterwards.
public struct SGD: Codable, Sendable, Equatable {
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool

    public init(momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     velocity: UnsafeMutablePointer<Float>, count: Int, learningRate: Float) {
        for i in 0..<count {
            var g = gradients[i] + weightDecay * parameters[i]
            let v = momentum * velocity[i] + g
            velocity[i] = v
            g = nesterov ? g + momentum * v : v
            parameters[i] = parameters[i] - learningRate * g
        }
    }
}
