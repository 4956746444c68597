extension DataSplits {
    /// These splits with `count` training samples held out as the validation split (none
    /// for 0): the first `count` of a permutation of the training set keyed by the seed alone,
    /// so a fixed function of (seed, data). Both parts keep the training set's order; they
    /// are disjoint and together the training set.
    public func holdingOut(_ count: Int, seed: UInt64) throws -> DataSplits {
        guard count > 0 else { return self }
        let samples = train.count
        guard count < samples else {
            throw InvalidSetting { "\($0("data.validationSamples")) \(count) would hold out the whole training set of \(samples) samples; hold out fewer (at most \(samples - 1))" }
        }
        var heldOut = [Bool](repeating: false, count: samples)
        for i in CounterRNG(seed: seed, stream: "validation-split").permutation(count: samples).prefix(count) {
            heldOut[Int(i)] = true
        }
        let indices = Array(0..<samples)
        return DataSplits(train: train.subset(indices.filter { !heldOut[$0] }, name: train.name),
                          validation: train.subset(indices.filter { heldOut[$0] }, name: "validation"), test: test)
    }

    /// These splits with every input normalised by `normalization` (nil: x/255 alone).
    public func normalized(by normalization: InputNormalization?) -> DataSplits {
        DataSplits(train: train.normalized(by: normalization), validation: validation?.normalized(by: normalization),
                   test: test.normalized(by: normalization))
    }
}

extension Dataset {
    /// Samples `indices`, in that order, as a data set of their own (normalised as this one).
    func subset(_ indices: [Int], name: String) -> Dataset {
        let size = sampleSize
        var selected = [UInt8]()
        selected.reserveCapacity(indices.count * size)
        for i in indices { selected.append(contentsOf: pixels[(i * size)..<((i + 1) * size)]) }
        return Dataset(name: name, shape: shape, classes: classes, pixels: selected, labels: indices.map { labels[$0] })
            .normalized(by: normalization)
    }
}
