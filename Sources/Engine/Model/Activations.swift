/// Every layer's output for up to `capacity` samples, allocated once and reused each step.
public final class Activations {
    public let capacity: Int
    public let input: UnsafeMutablePointer<Float>
    public let outputs: [UnsafeMutablePointer<Float>]
    /// ∂loss/∂(model output); the loss writes it, backward reads it.
    public let outputGradient: UnsafeMutablePointer<Float>
    let gradientScratch: UnsafeMutablePointer<Float>

    /// The floats `init` allocates per sample: the input, every layer's own output (a fused
    /// layer shares its predecessor's) and two gradient buffers of the largest output.
    public static func floatsPerSample(of network: Network) -> Int {
        let outputs = zip(network.layers, network.fusedIntoPrevious).map { $1 ? 0 : $0.outputSize }.reduce(0, +)
        return network.inputShape.reduce(1, *) + outputs + 2 * (network.layers.map(\.outputSize).max() ?? 1)
    }

    public init(network: Network, capacity: Int) {
        self.capacity = capacity
        let inputSize = network.inputShape.reduce(1, *)
        input = .allocate(capacity: capacity * inputSize)
        var outputs: [UnsafeMutablePointer<Float>] = []
        for (layer, fused) in zip(network.layers, network.fusedIntoPrevious) {
            outputs.append(fused ? outputs.last! : .allocate(capacity: capacity * layer.outputSize))
        }
        self.outputs = outputs
        let largest = network.layers.map(\.outputSize).max() ?? 1
        outputGradient = .allocate(capacity: capacity * largest)
        gradientScratch = .allocate(capacity: capacity * largest)
    }

    deinit {
        input.deallocate()
        // A fused layer's output is its predecessor's buffer: free each buffer once.
        for (l, output) in outputs.enumerated() where l == 0 || output != outputs[l - 1] { output.deallocate() }
        outputGradient.deallocate()
        gradientScratch.deallocate()
    }

    public var output: UnsafeMutablePointer<Float> { outputs.last! }
}
