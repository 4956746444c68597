import Crypto
import CZlib
import CZstd
import Foundation

/// The JSON manifest of a checkpoint.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    public struct Tensor: Codable, Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Offset in floats from the start of the payload.
        public let offset: Int
    }

    public var model: String
    public var inputShape: [Int]
    public var classes: Int
    public var seed: UInt64
    public var batchSize: Int
    public var chunkSize: Int
    public var learningRate: Float
    /// The learning-rate schedule's summary (`LearningRateSchedule.summary`) and the epoch
    /// count it spans (the cosine schedule depends on it).
    public var learningRateSchedule: String
    public var epochs: Int
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool
    public var batchNormMomentum: Float
    public var batchNormEpsilon: Float
    public var initScheme: String
    /// Global steps completed, and the epoch the next step belongs to.
    public var step: Int
    public var epoch: Int
    public var tensors: [Tensor]
    public var payloadFloats = 0
    public var payloadSHA256 = ""
    public var byteShuffled = true

    public init(model: String, inputShape: [Int], classes: Int, seed: UInt64, batchSize: Int, chunkSize: Int,
                learningRate: Float, learningRateSchedule: String, epochs: Int, momentum: Float, weightDecay: Float, nesterov: Bool, batchNormMomentum: Float,
                batchNormEpsilon: Float, initScheme: String, step: Int, epoch: Int, tensors: [Tensor]) {
        (self.model, self.inputShape, self.classes, self.seed) = (model, inputShape, classes, seed)
        (self.batchSize, self.chunkSize, self.learningRate, self.momentum) = (batchSize, chunkSize, learningRate, momentum)
        (self.learningRateSchedule, self.epochs) = (learningRateSchedule, epochs)
        (self.weightDecay, self.nesterov, self.batchNormMomentum) = (weightDecay, nesterov, batchNormMomentum)
        (self.batchNormEpsilon, self.initScheme, self.step, self.epoch, self.tensors) = (batchNormEpsilon, initScheme, step, epoch, tensors)
    }
}
