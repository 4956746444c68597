/// A model: its layers in order, the layout of its parameters and buffers, and its loss.
public final class Network {
    public let spec: ModelSpec
    public let inputShape: [Int]
    public let classes: Int
    public let layers: [Layer]
    public let layout: ParameterLayout
    public let loss: LossFunction
    /// The range of the flat parameter array each layer owns (empty for layers without parameters).
    public let parameterRanges: [Range<Int>]
    /// Layers whose work the layer before them does: a ReLU after a `ReLUFusing` layer. Its
    /// output is the previous layer's output and forward and backward skip it.
    public let fusedIntoPrevious: [Bool]
    /// The first layer that has parameters (or the last layer, if none has): backward stops there.
    let firstParameterLayer: Int

    public init(spec: ModelSpec, inputShape: [Int], classes: Int, initScheme: InitScheme = .default) throws {
        guard TensorSize.bounded(inputShape) != nil else {
            throw EngineError.invalidModel("input shape \(TensorSize.text(inputShape)) is out of range: every dimension at least 1, at most 2^28 values in all")
        }
        self.spec = spec
        self.inputShape = inputShape
        self.classes = classes
        var layout = ParameterLayout()
        var layers: [Layer] = []
        var ranges: [Range<Int>] = []
        var fused: [Bool] = []
        var shape = inputShape
        var counts: [String: Int] = [:]
        func nextName(_ prefix: String) -> String {
            counts[prefix, default: 0] += 1
            return "\(prefix)\(counts[prefix]!)"
        }
        for (index, token) in spec.tokens.enumerated() {
            let layer: Layer
            switch token {
            case let .conv(out, kernel, stride, padding):
                layer = try Conv2d(name: nextName("conv"), inShape: shape, outChannels: out, kernel: kernel,
                                   stride: stride, padding: padding, layout: &layout, initScheme: initScheme)
            case .batchNorm:
                layer = try BatchNorm2d(name: nextName("bn"), inShape: shape, layout: &layout)
            case .activation(let function):
                layer = Activation(function, shape: shape)
            case let .maxPool(kernel, stride):
                layer = try MaxPool2d(name: "maxpool", inShape: shape, kernel: kernel, stride: stride)
            case let .avgPool(kernel, stride):
                layer = try AvgPool2d(name: "avgpool", inShape: shape, kernel: kernel, stride: stride)
            case .flatten:
                layer = Flatten(inShape: shape)
            case .linear(let out):
                if shape.count != 1 {
                    let flatten = Flatten(inShape: shape)
                    layers.append(flatten)
                    ranges.append(layout.parameterCount..<layout.parameterCount)
                    fused.append(false)
                    shape = flatten.outputShape
                }
                layer = try Linear(name: nextName("fc"), inShape: shape, outFeatures: out ?? classes,
                                   layout: &layout, initScheme: initScheme)
            case .logSoftmax:
                guard index == spec.tokens.count - 1 else {
                    throw EngineError.invalidModel("'logsoftmax' must be the last token of '\(spec.text)'")
                }
                layer = LogSoftmax(shape: shape)
            }
            let before = ranges.last?.upperBound ?? 0
            if token == .activation(.relu), let previous = layers.last as? ReLUFusing {
                previous.fusesReLU = true
                fused.append(true)
            } else {
                fused.append(false)
            }
            layers.append(layer)
            ranges.append(before..<layout.parameterCount)
            shape = layer.outputShape
        }
        guard shape == [classes] else {
            throw EngineError.invalidModel(
                "model '\(spec.text)' ends with shape \(shape) but the data has \(classes) classes; end the spec with 'fc'")
        }
        // A max pool right after a fused ReLU masks the gradient as it scatters it: the only
        // inputs it gives a gradient are its windows' maxima.
        for l in layers.indices.dropFirst(2) where fused[l - 1] {
            if let pool = layers[l] as? MaxPool2d, let producer = layers[l - 2] as? ReLUFusing {
                pool.masksReLU = true
                producer.gradientMasked = true
            }
        }
        self.layers = layers
        parameterRanges = ranges
        firstParameterLayer = ranges.firstIndex { !$0.isEmpty } ?? layers.count - 1
        fusedIntoPrevious = fused
        self.layout = layout
        loss = spec.tokens.last == .logSoftmax ? .nll : .crossEntropy
    }

    public var parameterCount: Int { layout.parameterCount }

    /// Runs every layer forward; `activations.output` then holds the model's outputs.
    /// `layerDone(l)` runs after layer l (a profiler's hook).
    public func forward(_ activations: Activations, _ pass: Pass, layerDone: ((Int) -> Void)? = nil) throws {
        var input = UnsafePointer(activations.input)
        for l in layers.indices {
            if !fusedIntoPrevious[l] {
                try layers[l].forward(activations.outputs[l], input, pass)
                input = UnsafePointer(activations.outputs[l])
            }
            layerDone?(l)
        }
    }

    /// Backpropagates `activations.outputGradient` through every layer, each layer writing
    /// (not adding) its parameters' gradients into the pass's chunk partials, or deferring them
    /// (`DeferredGradients`). No gradient flows below the first layer with parameters: its
    /// input gradient is skipped, and so are the parameterless layers before it (a Flatten).
    /// `layerDone(l)` runs as soon as layer l's parameter gradients are complete, so that
    /// their reduction can overlap the rest of backward.
    public func backward(_ activations: Activations, _ pass: Pass, layerDone: ((Int) throws -> Void)? = nil) throws {
        var gradient = activations.outputGradient
        var spare = activations.gradientScratch
        for l in layers.indices.reversed() {
            if fusedIntoPrevious[l] || l < firstParameterLayer {
                try layerDone?(l)
                continue
            }
            let input = l == 0 ? activations.input : activations.outputs[l - 1]
            let dx: UnsafeMutablePointer<Float>? = l == firstParameterLayer ? nil : spare
            try layers[l].backward(dx, gradient, input, activations.outputs[l], pass)
            try layerDone?(l)
            if let dx {
                spare = gradient
                gradient = dx
            }
        }
    }
}
