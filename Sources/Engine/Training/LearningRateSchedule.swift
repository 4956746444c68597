/// The learning rate as a function of the global step alone, so that it is part of the
/// determinism contract: any rank count, and any resume point, sees the same rate.
public struct LearningRateSchedule: Codable, Sendable, Equatable {
    public enum Shape: String, Codable, Sendable, CaseIterable {
        /// The base rate throughout.
        case constant
        /// The base rate times `gamma` for every `stepEpochs` epochs completed.
        case step
        /// Half a cosine from the base rate at the first step to 0 after the last epoch.
        case cosine
    }

    public var shape = Shape.cosine
    /// Linear ramp from base/warmup to base over the first `warmupSteps` steps.
    public var warmupSteps = 0
    public var stepEpochs = 2
    public var gamma: Float = 0.1

    public init() {}

    /// The rate for global step `step` (0-based), with `totalSteps` = epochs × steps per epoch.
    public func rate(base: Float, step: Int, stepsPerEpoch: Int, totalSteps: Int) -> Float {
        var rate = base
        switch shape {
        case .constant:
            break
        case .step:
            var factor: Float = 1
            for _ in 0..<(step / stepsPerEpoch / stepEpochs) { factor *= gamma }
            rate *= factor
        case .cosine:
            let t = Double(step) / Double(max(totalSteps, 1))
            rate = Float(Double(base) * 0.5 * (1 + ScalarMath.cosPi(min(t, 1))))
        }
        if step < warmupSteps {
            rate *= Float(step + 1) / Float(warmupSteps)
        }
        return rate
    }

    /// A short text for logs and checkpoints, e.g. "cosine, warmup 100".
    public var summary: String {
        var text = shape == .step ? "step (×\(gamma) every \(stepEpochs) epochs)" : shape.rawValue
        if warmupSteps > 0 { text += ", warmup \(warmupSteps) steps" }
        return text
    }
}
