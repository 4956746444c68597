/// MNIST-format IDX files (`idx3-ubyte` images, `idx1-ubyte` labels), plain or gzip.
/// Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then
/// each dimension as a big-endian UInt32.
public enum IDX {
    /// Reads a header and returns its dimensions, after checking the magic and that the file
    /// holds exactly the bytes the header promises.
    static func header(_ file: DataFile, dimensions expected: Int, what: String) throws -> [Int] {
        let magic = try file.readBytes(4, what: "the header")
        guard magic[0] == 0, magic[1] == 0, magic[2] == 0x08, Int(magic[3]) == expected else {
            let hex = magic.map { String($0, radix: 16) }.joined(separator: " ")
            throw EngineError.invalidData("'\(file.path)' is not an IDX \(what) file: magic bytes \(hex), expected 0 0 8 \(expected)")
        }
        let raw = try file.readBytes(4 * expected, what: "the header")
        let dims = (0..<expected).map { d in raw[(4 * d)..<(4 * d + 4)].reduce(0) { $0 << 8 | Int($1) } }
        guard dims.allSatisfy({ $0 > 0 }) else {
            throw EngineError.invalidData("'\(file.path)': a dimension in the header is zero (\(dims))")
        }
        // Saturating product: a header claiming 2³¹ images must not overflow, only fail the size check.
        let payload = dims.reduce(1) { product, d in
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            return overflow ? DataFile.maximumSize + 1 : min(p, DataFile.maximumSize + 1)
        }
        try file.expectTotalSize(4 + 4 * expected + payload, what: what)
        return dims
    }

    /// Loads images and their labels, each label checked to be below `classes`.
    public static func load(images imagePath: String, labels labelPath: String, name: String, classes: Int) throws -> Dataset {
        let imageFile = try DataFile(path: imagePath)
        let imageDims = try header(imageFile, dimensions: 3, what: "images")
        let labelFile = try DataFile(path: labelPath)
        let labelDims = try header(labelFile, dimensions: 1, what: "labels")
        guard imageDims[0] == labelDims[0] else {
            throw EngineError.invalidData("'\(imagePath)' has \(imageDims[0]) images but '\(labelPath)' has \(labelDims[0]) labels")
        }
        let pixels = try imageFile.readBytes(imageDims.reduce(1, *), what: "the images")
        try imageFile.expectEnd()
        let labels = try labelFile.readBytes(labelDims[0], what: "the labels")
        try labelFile.expectEnd()
        try Dataset.checkLabels(labels, classes: classes, source: "'\(labelPath)'")
        return Dataset(name: name, shape: [1, imageDims[1], imageDims[2]], classes: classes, pixels: pixels, labels: labels)
    }
}

/// CIFAR-10 binary batches: records of one label byte (0…9) and 3,072 pixel bytes (1,024 red,
/// then green, then blue, each 32×32 row-major — NCHW already).
public enum CIFAR10 {
    static let recordSize = 3073

    /// Loads the records of `files` in order, each label checked to be below `classes`.
    public static func load(files: [String], name: String, classes: Int) throws -> Dataset {
        var pixels: [UInt8] = []
        var labels: [UInt8] = []
        for path in files {
            let file = try DataFile(path: path)
            let size = file.statedSize
            guard size > 0, size % recordSize == 0 else {
                throw EngineError.invalidData("'\(path)' is not a CIFAR-10 batch: \(size) bytes is not a multiple of \(recordSize)-byte records")
            }
            try file.expectTotalSize(size, what: "records")
            let bytes = try file.readBytes(size, what: "the records")
            try file.expectEnd()
            pixels.reserveCapacity(pixels.count + size)
            let records = size / recordSize
            let fileLabels = (0..<records).map { bytes[$0 * recordSize] }
            try Dataset.checkLabels(fileLabels, classes: classes, source: "'\(path)'")
            labels += fileLabels
            for r in 0..<records { pixels.append(contentsOf: bytes[(r * recordSize + 1)..<((r + 1) * recordSize)]) }
        }
        return Dataset(name: name, shape: [3, 32, 32], classes: classes, pixels: pixels, labels: labels)
    }
}

/// A seeded data set a small network can learn: each of 10 classes is a smooth 28×28 wave
/// pattern of its own, and each sample adds uniform noise to its class's pattern.
public enum Synthetic {
    public static func make(seed: UInt64, count: Int, stream: String, classes: Int = 10, side: Int = 28) -> Dataset {
        let classRNG = CounterRNG(seed: seed, stream: "synthetic-classes")
        let sampleRNG = CounterRNG(seed: seed, stream: "synthetic-\(stream)")
        var prototypes = [[Float]]()
        for k in 0..<classes {
            let base = UInt64(k) * 8
            let fx = 0.15 + 0.5 * classRNG.unitFloat(base), fy = 0.15 + 0.5 * classRNG.unitFloat(base + 1)
            let phase = 6.283 * classRNG.unitFloat(base + 2)
            prototypes.append((0..<(side * side)).map { i in
                let x = Float(i % side), y = Float(i / side)
                return 0.5 + 0.5 * Float(ScalarMath.tanh(Double(3 * sinApprox(fx * x + fy * y + phase))))
            })
        }
        var pixels = [UInt8](repeating: 0, count: count * side * side)
        var labels = [UInt8](repeating: 0, count: count)
        for s in 0..<count {
            let label = sampleRNG.integer(UInt64(s) << 20, below: classes)
            labels[s] = UInt8(label)
            for i in 0..<(side * side) {
                let noise = sampleRNG.unitFloat(UInt64(s) << 20 + 1 + UInt64(i)) - 0.5
                let v = min(max(prototypes[label][i] + 0.6 * noise, 0), 1)
                pixels[s * side * side + i] = UInt8((v * 255).rounded())
            }
        }
        return Dataset(name: stream, shape: [1, side, side], classes: classes, pixels: pixels, labels: labels)
    }

    /// A smooth periodic wave (a parabola approximation of sine) from IEEE operations only.
    static func sinApprox(_ x: Float) -> Float {
        let t = x / 6.283_185 - (x / 6.283_185).rounded(.down)  // [0, 1)
        let u = 2 * t - 1  // [-1, 1)
        return 4 * u * (1 - Swift.abs(u)) * -1
    }
}
