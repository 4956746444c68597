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
    /// Cross-entropy is computed as in `logSoftmax` (Double, one rounding), its gradient as
    /// (softmax − onehot)/B; NLL's gradient is −onehot/B.
    public func evaluate(outputs: UnsafePointer<Float>, labels: UnsafePointer<UInt8>, classes: Int, pass: Pass,
                         gradient: UnsafeMutablePointer<Float>?,
                         chunkLoss: UnsafeMutablePointer<Float>, chunkCorrect: UnsafeMutablePointer<Int64>?) {
        pass.forEachChunk(Evaluation(function: self, outputs: outputs, labels: labels, classes: classes,
                                     batch: Double(pass.globalSampleCount), gradient: gradient,
                                     chunkLoss: chunkLoss, chunkCorrect: chunkCorrect))
    }

    private struct Evaluation: ChunkSamplesTask {
        let function: LossFunction
        let outputs: UnsafePointer<Float>, labels: UnsafePointer<UInt8>
        let classes: Int
        let batch: Double
        let gradient: UnsafeMutablePointer<Float>?
        let chunkLoss: UnsafeMutablePointer<Float>, chunkCorrect: UnsafeMutablePointer<Int64>?

        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            let logProbabilities = workspace.floats(.logProbabilities, count: classes)
            var lossSum = 0.0
            var correct: Int64 = 0
            for s in first..<(first + count) {
                let row = outputs + s * classes
                let label = Int(labels[s])
                if chunkCorrect != nil, argmax(row, count: classes) == label { correct += 1 }
                switch function {
                case .crossEntropy:
                    logSoftmax(row, count: classes, into: logProbabilities)
                    lossSum -= Double(logProbabilities[label])
                    if let gradient {
                        for i in 0..<classes {
                            let p = ScalarMath.exp(Double(logProbabilities[i]))
                            gradient[s * classes + i] = Float((p - (i == label ? 1 : 0)) / batch)
                        }
                    }
                case .nll:
                    lossSum -= Double(row[label])
                    if let gradient {
                        for i in 0..<classes { gradient[s * classes + i] = i == label ? Float(-1 / batch) : 0 }
                    }
                }
            }
            chunkLoss[chunk] = Float(lossSum)
            chunkCorrect?[chunk] = correct
        }
    }
}
