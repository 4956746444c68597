/// How a tensor is filled at initialisation.
public enum Initializer: Sendable, Equatable {
    /// U(−bound, bound).
    case uniform(bound: Float)
    case constant(Float)
}

/// Weight initialisation families (`--init`).
public enum InitScheme: String, Codable, Sendable, CaseIterable {
    /// PyTorch's default: Kaiming-uniform with a = √5, i.e. U(±1/√fan_in), for weights and biases.
    case `default`
    /// Glorot/Xavier uniform for weights: U(±√(6/(fan_in+fan_out))); biases as PyTorch's default.
    case xavier
    /// He/Kaiming uniform for ReLU nets: U(±√(6/fan_in)); biases as PyTorch's default.
    case he

    public func weight(fanIn: Int, fanOut: Int) -> Initializer {
        switch self {
        case .default: return .uniform(bound: 1 / Float(fanIn).squareRoot())
        case .xavier: return .uniform(bound: (6 / Float(fanIn + fanOut)).squareRoot())
        case .he: return .uniform(bound: (6 / Float(fanIn)).squareRoot())
        }
    }

    public func bias(fanIn: Int) -> Initializer { .uniform(bound: 1 / Float(fanIn).squareRoot()) }
}

/// Whether a tensor is trained (has a gradient) or is state such as batch-norm running statistics.
public enum TensorKind: Sendable {
    case parameter
    case buffer
}

/// One named tensor in a flat store.
public struct TensorInfo: Sendable {
    public let name: String
    public let shape: [Int]
    public let kind: TensorKind
    public let initializer: Initializer
    /// Offset into the flat parameter array (kind `.parameter`) or buffer array (`.buffer`).
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The canonical list of a model's tensors: all parameters live in one flat array and all
/// buffers in another, in declaration order, so the optimizer, the reducer, the digest and the
/// checkpoint each walk one list (docs/architecture.md §3).
public struct ParameterLayout: Sendable {
    public private(set) var tensors: [TensorInfo] = []
    public private(set) var parameterCount = 0
    public private(set) var bufferCount = 0

    public init() {}

    /// Declares a tensor and returns its offset in the flat array of its kind.
    mutating func declare(_ name: String, shape: [Int], kind: TensorKind = .parameter,
                          initializer: Initializer) -> Int {
        let count = shape.reduce(1, *)
        let offset: Int
        switch kind {
        case .parameter:
            offset = parameterCount
            parameterCount += count
        case .buffer:
            offset = bufferCount
            bufferCount += count
        }
        tensors.append(TensorInfo(name: name, shape: shape, kind: kind, initializer: initializer, offset: offset))
        return offset
    }

    public var parameters: [TensorInfo] { tensors.filter { $0.kind == .parameter } }
    public var buffers: [TensorInfo] { tensors.filter { $0.kind == .buffer } }

    /// Fills both arrays: each tensor draws from its own stream keyed by (seed, name), so values
    /// do not depend on the order in which layers were built.
    public func initialize(parameters: inout [Float], buffers: inout [Float], seed: UInt64) {
        parameters = [Float](repeating: 0, count: parameterCount)
        buffers = [Float](repeating: 0, count: bufferCount)
        for tensor in tensors {
            let rng = CounterRNG(seed: seed, stream: tensor.name)
            for i in 0..<tensor.count {
                let value: Float
                switch tensor.initializer {
                case .constant(let c): value = c
                case .uniform(let bound): value = (2 * rng.unitFloat(UInt64(i)) - 1) * bound
                }
                switch tensor.kind {
                case .parameter: parameters[tensor.offset + i] = value
                case .buffer: buffers[tensor.offset + i] = value
                }
            }
        }
    }
}
