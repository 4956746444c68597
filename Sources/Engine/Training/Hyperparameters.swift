/// Everything that, with the model and the data, fixes the weights after every step
/// (docs/architecture.md §2): one value, used by the command line (whose flags default to
/// `Hyperparameters()`), the trainer, checkpoints (stored as it is in the manifest) and the
/// checks that a resumed run or every rank of a job uses the same values.
public struct Hyperparameters: Codable, Sendable, Equatable {
    /// Initialisation and the sample order.
    public var seed: UInt64 = 1
    /// Global batch size B: samples per step over all ranks.
    public var batchSize = 64
    /// Chunk size C: the unit of work, which divides B (docs/architecture.md §2.2).
    public var chunkSize = 8
    /// Epochs to train; the cosine schedule spans them.
    public var epochs = 5
    public var learningRate: Float = 0.05
    public var schedule = LearningRateSchedule()
    public var optimizer = Optimizer()
    /// The global gradient norm is clipped to this (`clip_grad_norm_`) before the update; 0: off.
    public var clipGradNorm: Float = 0
    /// ε of `cross_entropy(label_smoothing=ε)`: the target puts 1 − ε + ε/K on the label and
    /// ε/K on each other class; 0: off.
    public var labelSmoothing: Float = 0
    public var layers = LayerHyperparameters()
    public var initialization = InitScheme.default
    public var data = DataHyperparameters()

    public init() {}

    /// Reads checkpoints written before a setting existed (format 2): a missing setting takes
    /// its default, which means off.
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        seed = try c.decode(UInt64.self, forKey: .seed)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        chunkSize = try c.decode(Int.self, forKey: .chunkSize)
        epochs = try c.decode(Int.self, forKey: .epochs)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        schedule = try c.decode(LearningRateSchedule.self, forKey: .schedule)
        optimizer = try c.decode(Optimizer.self, forKey: .optimizer)
        clipGradNorm = try c.decodeIfPresent(Float.self, forKey: .clipGradNorm) ?? clipGradNorm
        labelSmoothing = try c.decodeIfPresent(Float.self, forKey: .labelSmoothing) ?? labelSmoothing
        layers = try c.decode(LayerHyperparameters.self, forKey: .layers)
        initialization = try c.decode(InitScheme.self, forKey: .initialization)
        data = try c.decodeIfPresent(DataHyperparameters.self, forKey: .data) ?? data
    }

    public var chunksPerBatch: Int { batchSize / chunkSize }

    /// Fails, naming the value, unless these hyperparameters can train on `ranks` ranks.
    public func validate(ranks: Int) throws {
        func fail(_ message: @escaping @Sendable (_ name: (String) -> String) -> String) throws -> Never {
            throw InvalidSetting(message)
        }
        let (b, c) = (batchSize, chunkSize)
        if b < 1 { try fail { "\($0("batchSize")) must be at least 1 (got \(b))" } }
        if c < 1 { try fail { "\($0("chunkSize")) must be at least 1 (got \(c))" } }
        if b % c != 0 {
            try fail { "\($0("batchSize")) \(b) is not a multiple of \($0("chunkSize")) \(c); choose a batch size such as \(max(1, b / c) * c)" }
        }
        if b / c > 1 << ExactReducer.headroomBits {
            try fail { "\($0("batchSize")) ÷ \($0("chunkSize")) must be at most \(1 << ExactReducer.headroomBits)" }
        }
        if ranks > b / c {
            try fail { "\(ranks) ranks but a batch has only \(b / c) chunks (\($0("batchSize")) \(b) / \($0("chunkSize")) \(c)); use at most \(b / c) ranks or a larger batch" }
        }
        let (e, rate, schedule, optimizer, layers) = (epochs, learningRate, schedule, optimizer, layers)
        if e < 1 { try fail { "\($0("epochs")) must be at least 1 (got \(e))" } }
        if !(rate > 0) || !rate.isFinite { try fail { "\($0("learningRate")) must be a positive number (got \(rate))" } }
        if schedule.warmupSteps < 0 { try fail { "\($0("schedule.warmupSteps")) must be 0 or more (got \(schedule.warmupSteps))" } }
        if schedule.stepEpochs < 1 { try fail { "\($0("schedule.stepEpochs")) must be at least 1 (got \(schedule.stepEpochs))" } }
        if !(schedule.gamma > 0 && schedule.gamma <= 1) { try fail { "\($0("schedule.gamma")) must be in (0, 1] (got \(schedule.gamma))" } }
        if !(optimizer.momentum >= 0 && optimizer.momentum < 1) {
            try fail { "\($0("optimizer.momentum")) must be in [0, 1) (got \(optimizer.momentum))" }
        }
        if !(optimizer.weightDecay >= 0) || !optimizer.weightDecay.isFinite {
            try fail { "\($0("optimizer.weightDecay")) must be ≥ 0 (got \(optimizer.weightDecay))" }
        }
        if optimizer.nesterov && optimizer.momentum == 0 { try fail { "\($0("optimizer.nesterov")) needs a momentum above 0" } }
        if optimizer.nesterov && optimizer.kind != .sgd {
            let kind = optimizer.kind.rawValue
            try fail { "\($0("optimizer.nesterov")) applies only to \($0("optimizer.kind")) sgd (got \(kind))" }
        }
        for (name, beta) in [("optimizer.beta1", optimizer.beta1), ("optimizer.beta2", optimizer.beta2)] where !(beta >= 0 && beta < 1) {
            try fail { "\($0(name)) must be in [0, 1) (got \(beta))" }
        }
        if !(optimizer.epsilon > 0) || !optimizer.epsilon.isFinite {
            try fail { "\($0("optimizer.epsilon")) must be a positive number (got \(optimizer.epsilon))" }
        }
        let (clip, smoothing) = (clipGradNorm, labelSmoothing)
        if !(clip >= 0) || !clip.isFinite { try fail { "\($0("clipGradNorm")) must be a number ≥ 0, 0 for off (got \(clip))" } }
        if !(smoothing >= 0 && smoothing <= 1) { try fail { "\($0("labelSmoothing")) must be in [0, 1] (got \(smoothing))" } }
        if !(layers.batchNormMomentum >= 0 && layers.batchNormMomentum <= 1) {
            try fail { "\($0("layers.batchNormMomentum")) must be in [0, 1] (got \(layers.batchNormMomentum))" }
        }
        if !(layers.batchNormEpsilon > 0) { try fail { "\($0("layers.batchNormEpsilon")) must be positive (got \(layers.batchNormEpsilon))" } }
        let data = data
        if !(0...Augmentation.maximumCropPadding).contains(data.augmentation.cropPadding) {
            try fail { "\($0("data.augmentation")) crop padding must be 0…\(Augmentation.maximumCropPadding) (got \(data.augmentation.cropPadding))" }
        }
        if data.validationSamples < 0 { try fail { "\($0("data.validationSamples")) must be 0 or more (got \(data.validationSamples))" } }
    }

    /// Every value as (name, value) pairs in declaration order, a nested value's name joined
    /// to its own (`schedule.shape`, as the manifest's JSON spells it): what a resume and the
    /// ranks' start-up compare, and what their messages name.
    public var settings: [(name: String, value: String)] {
        func flatten(_ value: Any, _ name: String) -> [(name: String, value: String)] {
            let mirror = Mirror(reflecting: value)
            guard mirror.displayStyle == .struct else { return [(name, "\(value)")] }
            return mirror.children.flatMap { flatten($0.value, name.isEmpty ? $0.label! : "\(name).\($0.label!)") }
        }
        return flatten(self, "")
    }
}

extension Hyperparameters {
    /// Fails unless a checkpoint was written with these hyperparameters: resuming with other
    /// values would silently change the weights it promises to reproduce. The initialisation
    /// is behind a resumed run; the epoch count matters only to the cosine schedule.
    public func checkResumable(_ manifest: CheckpointManifest, source: String) throws {
        let ignored: Set<String> = schedule.shape == .cosine ? ["initialization"] : ["initialization", "epochs"]
        let differences = zip(manifest.hyperparameters.settings, settings)
            .filter { $0.0.value != $0.1.value && !ignored.contains($0.0.name) }
        guard !differences.isEmpty else { return }
        throw InvalidSetting { name in
            let list = differences.map { "\(name($0.0.name)) \($0.0.value) (now \($0.1.value))" }.joined(separator: ", ")
            return "'\(source)' was written with \(list); pass the checkpoint's values to resume it, or use another checkpoint directory"
        }
    }
}

/// A setting that cannot work. The message names each setting through a
/// function, so that a caller names them as its users know them (the command line by its
/// flags); by default, as `Hyperparameters.settings` spells them.
public struct InvalidSetting: Error, CustomStringConvertible {
    private let message: @Sendable (_ name: (String) -> String) -> String

    public init(_ message: @escaping @Sendable (_ name: (String) -> String) -> String) { self.message = message }

    public func message(naming name: (String) -> String) -> String { message(name) }
    public var description: String { message { $0 } }
}

/// A value that cannot work; the message names it (exit code 64 in the command line).
public struct UsageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
