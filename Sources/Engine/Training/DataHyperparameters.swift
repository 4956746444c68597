/// What the network is trained on and how each sample is transformed: part of the
/// hyperparameters because each changes the weights (docs/architecture.md §2.1). All are off
/// by default, and a checkpoint written before they existed loads with these defaults.
public struct DataHyperparameters: Codable, Sendable, Equatable {
    /// Random transforms of each training sample (`--augment`).
    public var augmentation = Augmentation()
    /// Normalise inputs per channel by the training samples' mean and standard deviation
    /// (`--normalize`, `InputNormalization`).
    public var normalize = false
    /// Training samples held out as the validation split (`--val-split`, `DataSplits.holdingOut`).
    public var validationSamples = 0

    public init() {}
}
