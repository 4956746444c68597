/// Loss, accuracy and confusion matrix of a model on a data set; the same numbers for any
/// rank count, since counts are summed as integers and losses exactly.
public struct EvaluationResult: Sendable {
    public let count: Int
    /// Mean loss over the samples.
    public let loss: Float
    /// confusion[actual][predicted] sample counts.
    public let confusion: [[Int64]]

    public var correct: Int64 { confusion.indices.reduce(0) { $0 + confusion[$1][$1] } }
    public var accuracy: Double { count == 0 ? 0 : Double(correct) / Double(count) }
    /// Per class: the share of its samples predicted right (nil for a class with no samples).
    public var classAccuracy: [Double?] {
        confusion.indices.map { c in
            let total = confusion[c].reduce(0, +)
            return total == 0 ? nil : Double(confusion[c][c]) / Double(total)
        }
    }
}

/// Evaluates `network` with the given weights on `dataset` in eval mode (batch norm uses its
/// running statistics) and its plain loss (label smoothing shapes training, not the measure of
/// a model). Samples are cut into chunks of `chunkSize`; each rank takes a
/// contiguous share of the chunks, and the results are combined across ranks.
public func evaluate(network: Network, parameters: UnsafeMutablePointer<Float>, buffers: UnsafeMutablePointer<Float>,
                     dataset: Dataset, chunkSize: Int, hyper: LayerHyperparameters, executor: ParallelExecutor,
                     communicator: Communicator, reducer: ExactReducer) throws -> EvaluationResult {
    let classes = network.classes
    let totalChunks = (dataset.count + chunkSize - 1) / chunkSize
    let mine = chunkRange(rank: communicator.rank, ranks: communicator.size, chunks: totalChunks)
    // Small evaluation batches keep peak memory low; the chunking, not this size, fixes the numbers.
    let chunksPerBatch = max(1, 64 / chunkSize)
    let activations = Activations(network: network, capacity: chunksPerBatch * chunkSize)
    var labels = [UInt8](repeating: 0, count: chunksPerBatch * chunkSize)
    var chunkLoss = [Float](repeating: 0, count: max(mine.count, 1))
    var confusion = [Int64](repeating: 0, count: classes * classes)
    var batchStart = mine.lowerBound
    while batchStart < mine.upperBound {
        let batchEnd = min(batchStart + chunksPerBatch, mine.upperBound)
        let firstSample = batchStart * chunkSize
        let samples = min(batchEnd * chunkSize, dataset.count) - firstSample
        dataset.scale(firstSample..<(firstSample + samples), into: activations.input)
        for s in 0..<samples { labels[s] = dataset.labels[firstSample + s] }
        let pass = Pass(samples: .init(count: samples, chunkSize: chunkSize, globalCount: dataset.count),
                        state: .init(parameters: parameters, buffers: buffers,
                                     parameterCount: network.parameterCount),
                        training: false, executor: executor, reducer: reducer, hyper: hyper)
        try network.forward(activations, pass)
        chunkLoss.withUnsafeMutableBufferPointer { lossBuffer in
            network.loss.evaluate(outputs: activations.output, labels: labels, classes: classes, pass: pass,
                                  gradient: nil, chunkLoss: lossBuffer.baseAddress! + (batchStart - mine.lowerBound),
                                  chunkCorrect: nil)
        }
        // The confusion matrix, which also gives the number predicted right.
        for s in 0..<samples {
            let predicted = argmax(activations.output + s * classes, count: classes)
            confusion[Int(labels[s]) * classes + predicted] += 1
        }
        batchStart = batchEnd
    }
    var lossSum: Float = 0
    try chunkLoss.withUnsafeBufferPointer { p in
        try reducer.sumChunks(p.baseAddress!, rows: mine.count, width: 1,
                              segments: [SumSegment(name: "the evaluation loss", range: 0..<1)], into: &lossSum)
    }
    try communicator.allreduceSum(&confusion)
    return EvaluationResult(count: dataset.count, loss: dataset.count == 0 ? 0 : lossSum / Float(dataset.count),
                            confusion: (0..<classes).map { Array(confusion[($0 * classes)..<(($0 + 1) * classes)]) })
}
