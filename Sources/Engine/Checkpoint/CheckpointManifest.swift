/// The JSON manifest of a checkpoint (`docs/checkpoint-format.md`).
public struct CheckpointManifest: Codable, Sendable, Equatable {
    public struct Tensor: Codable, Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Offset in floats from the start of the payload.
        public let offset: Int
    }

    /// The model spec, and the input shape and class count it was built for.
    public var model: String
    public var inputShape: [Int]
    public var classes: Int
    /// Everything else that fixes the weights, as the run had it.
    public var hyperparameters: Hyperparameters
    /// Global steps completed, and the epoch the next step belongs to.
    public var step: Int
    public var epoch: Int
    public var tensors: [Tensor]
    /// The per-channel statistics inputs were normalised with (`--normalize`; nil: x/255).
    public var normalization: InputNormalization?
    /// A `--keep-best` checkpoint's validation accuracy (nil in the others).
    public var validationAccuracy: Double?
    public var payloadFloats = 0
    public var payloadSHA256 = ""
    public var byteShuffled = true

    public init(model: String, inputShape: [Int], classes: Int, hyperparameters: Hyperparameters, step: Int, epoch: Int,
                tensors: [Tensor]) {
        (self.model, self.inputShape, self.classes, self.hyperparameters) = (model, inputShape, classes, hyperparameters)
        (self.step, self.epoch, self.tensors) = (step, epoch, tensors)
    }
}
