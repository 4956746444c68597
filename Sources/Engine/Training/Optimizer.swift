/// The optimizer and its settings, with PyTorch's update rules (`OptimizerStep` applies them):
///
/// - `sgd`: `torch.optim.SGD(lr, momentum, weight_decay, nesterov)`; state: the momentum buffer.
/// - `adam`: `torch.optim.Adam(lr, betas, eps, weight_decay)`, weight decay added to the
///   gradient (L2); state: the first and second moments.
/// - `adamw`: `torch.optim.AdamW(lr, betas, eps, weight_decay)`, weight decay decoupled from
///   the gradient (p ← p·(1 − lr·weight_decay)); state as Adam's.
///
/// Adam's step count is the run's global step, which checkpoints store, so it is not state here.
public struct Optimizer: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case sgd, adam, adamw
    }

    public var kind = Kind.sgd
    /// SGD's momentum.
    public var momentum: Float = 0.9
    /// L2 added to the gradient (sgd, adam) or decoupled decay (adamw).
    public var weightDecay: Float = 0
    /// SGD with Nesterov momentum.
    public var nesterov = false
    /// Adam's decay rates of the first and second moments: Double, as PyTorch takes them from
    /// Python, so that 1 − β and βᵗ are PyTorch's (1 − 0.999f would be 1.3e-5 off 0.001).
    public var beta1 = 0.9
    public var beta2 = 0.999
    /// Adam's term added to the denominator.
    public var epsilon: Float = 1e-8

    public init(kind: Kind = .sgd, momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        (self.kind, self.momentum, self.weightDecay, self.nesterov) = (kind, momentum, weightDecay, nesterov)
    }

    /// Reads the settings of checkpoints written before Adam (format 2, SGD only): a missing
    /// field takes its default, which there means SGD.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(momentum: try c.decode(Float.self, forKey: .momentum), weightDecay: try c.decode(Float.self, forKey: .weightDecay),
                  nesterov: try c.decode(Bool.self, forKey: .nesterov))
        kind = try c.decodeIfPresent(Kind.self, forKey: .kind) ?? kind
        beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? beta1
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? beta2
        epsilon = try c.decodeIfPresent(Float.self, forKey: .epsilon) ?? epsilon
    }

    /// The names of the state tensors, each one float per parameter, in the order they are
    /// stored (checkpoints prefix each parameter's name with them): PyTorch's state names.
    public var stateNames: [String] {
        switch kind {
        case .sgd: return ["momentum"]
        case .adam, .adamw: return ["exp_avg", "exp_avg_sq"]
        }
    }

    /// A short text for logs, e.g. "adamw (betas 0.9, 0.999, eps 1e-08, weight decay 0.01)".
    public var summary: String {
        let decay = weightDecay == 0 ? "" : ", weight decay \(weightDecay)"
        switch kind {
        case .sgd: return "sgd (momentum \(momentum)\(nesterov ? ", nesterov" : "")\(decay))"
        case .adam, .adamw: return "\(kind.rawValue) (betas \(beta1), \(beta2), eps \(epsilon)\(decay))"
        }
    }
}
