/// The training objective, a mean over the global batch.
public enum LossFunction: String, Sendable {
    /// `F.cross_entropy(logits, labels)`: softmax and negative log-likelihood in one.
    case crossEntropy = "cross-entropy"
    /// `F.nll_loss(log_probs, labels)`: for models whose last layer is LogSoftmax.
    case nll = "nll"

    /// Per chunk: the sum of the samples' losses; if `chunkCorrect` is given, the number
    /// predicted right; and, if `gradient` is given, ∂loss/∂output for a loss averaged over
    /// `pass.globalSampleCount`.
    ///
    /// With label smoothing ε the target of a sample is q = (1 − ε)·onehot + ε/K over the K
    /// classes, and its loss −Σ q·log p, as `F.cross_entropy(logits, labels, label_smoothing=ε)`.
    /// Cross-entropy takes log p as `logSoftmax` does (Double, one rounding) and its gradient is
    /// (softmax − q)/B. NLL takes the outputs as log p (the model ends in LogSoftmax) and its
    /// gradient is −q/B: PyTorch's nll_loss has no label smoothing, but this is
    /// `F.cross_entropy(log_probs, labels, label_smoothing=ε)`, whose loss is the same
    /// (log_softmax leaves log-probabilities unchanged) and whose gradient differs from −q/B by
    /// a multiple of softmax, which LogSoftmax's backward maps to 0. With ε = 0, q is the
    /// one-hot vector exactly and the bits are those of the unsmoothed loss.
    public func evaluate(outputs: UnsafePointer<Float>, labels: UnsafePointer<UInt8>, classes: Int, labelSmoothing: Float = 0,
                         pass: Pass, gradient: UnsafeMutablePointer<Float>?,
                         chunkLoss: UnsafeMutablePointer<Float>, chunkCorrect: UnsafeMutablePointer<Int64>?) {
        pass.forEachChunk(Evaluation(function: self, outputs: outputs, labels: labels, classes: classes,
                                     smoothing: Double(labelSmoothing), batch: Double(pass.globalSampleCount), gradient: gradient,
                                     chunkLoss: chunkLoss, chunkCorrect: chunkCorrect))
    }

    private struct Evaluation: ChunkSamplesTask {
        let function: LossFunction
        let outputs: UnsafePointer<Float>, labels: UnsafePointer<UInt8>
        let classes: Int
        let smoothing: Double
        let batch: Double
        let gradient: UnsafeMutablePointer<Float>?
        let chunkLoss: UnsafeMutablePointer<Float>, chunkCorrect: UnsafeMutablePointer<Int64>?

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let logProbabilities = workspace.floats(.logProbabilities, count: classes)
            var lossSum = 0.0
            var correct: Int64 = 0
            let (offLabel, onLabel) = (smoothing / Double(classes), 1 - smoothing + smoothing / Double(classes))
            for s in first..<(first + count) {
                let row = outputs + s * classes
                let label = Int(labels[s])
                if chunkCorrect != nil, argmax(row, count: classes) == label { correct += 1 }
                let logP: UnsafePointer<Float>
                switch function {
                case .crossEntropy:
                    logSoftmax(row, count: classes, into: logProbabilities)
                    logP = UnsafePointer(logProbabilities)
                case .nll:
                    logP = row
                }
                for i in 0..<classes {
                    let target = i == label ? onLabel : offLabel
                    if target != 0 { lossSum -= target * Double(logP[i]) }
                }
                if let gradient {
                    for i in 0..<classes {
                        let target = i == label ? onLabel : offLabel
                        let p = function == .crossEntropy ? ScalarMath.exp(Double(logP[i])) : 0
                        gradient[s * classes + i] = Float((p - target) / batch)
                    }
                }
            }
            chunkLoss[chunk] = Float(lossSum)
            chunkCorrect?[chunk] = correct
        }
    }
}
