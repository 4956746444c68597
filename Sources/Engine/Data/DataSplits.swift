import Crypto
import Foundation

/// A training and a test split of the same kind of data, and the validation split held out
/// of the training data (`holdingOut`).
public struct DataSplits: Sendable {
    public let train: Dataset
    public let validation: Dataset?
    public let test: Dataset

    public init(train: Dataset, validation: Dataset? = nil, test: Dataset) {
        (self.train, self.validation, self.test) = (train, validation, test)
    }

    /// The class count of every format we read (Fashion-MNIST, MNIST, CIFAR-10, synthetic)
    /// unless the caller says otherwise.
    public static let defaultClasses = 10

    /// Loads `synthetic[:TRAIN[:TEST]]`, or a directory of MNIST-format IDX files (plain or
    /// .gz) or CIFAR-10 binary batches, with labels 0 ..< `classes`: a label outside that range
    /// is an error naming the file, the sample and the value, never a silently larger model.
    public static func load(_ location: String, seed: UInt64 = 0, classes: Int = defaultClasses) throws -> DataSplits {
        guard (2...256).contains(classes) else {
            throw EngineError.invalidData("the class count must be between 2 and 256 (labels are bytes), got \(classes)")
        }
        if location == "synthetic" || location.hasPrefix("synthetic:") {
            let sizes = location.split(separator: ":").dropFirst().map { Int($0) }
            guard sizes.count <= 2, sizes.allSatisfy({ $0 != nil && $0! > 0 && $0! <= 1_000_000 }) else {
                throw EngineError.invalidData("bad synthetic data spec '\(location)'; use synthetic, synthetic:TRAIN or synthetic:TRAIN:TEST (counts 1…1000000)")
            }
            let train = sizes.first.map { $0! } ?? 6000
            let test = sizes.count > 1 ? sizes[1]! : max(train / 6, 1)
            return DataSplits(train: Synthetic.make(seed: seed, count: train, stream: "train", classes: classes),
                              test: Synthetic.make(seed: seed, count: test, stream: "test", classes: classes))
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw EngineError.invalidData("data directory '\(location)' does not exist (install Fashion-MNIST with scripts/setup, or pass --data DIR)")
        }
        func find(_ names: [String]) -> String? {
            names.map { "\(location)/\($0)" }.first { FileManager.default.fileExists(atPath: $0) }
        }
        func idx(_ stem: String) -> String? { find([stem, stem + ".gz"]) }
        if let trainImages = idx("train-images-idx3-ubyte") {
            guard let trainLabels = idx("train-labels-idx1-ubyte"), let testImages = idx("t10k-images-idx3-ubyte"),
                  let testLabels = idx("t10k-labels-idx1-ubyte") else {
                throw EngineError.invalidData("'\(location)' has train-images-idx3-ubyte but not all of train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte")
            }
            let train = try IDX.load(images: trainImages, labels: trainLabels, name: "train", classes: classes)
            let test = try IDX.load(images: testImages, labels: testLabels, name: "test", classes: classes)
            guard train.shape == test.shape else {
                throw EngineError.invalidData("train images are \(train.shape) but test images are \(test.shape)")
            }
            return DataSplits(train: train, test: test)
        }
        for base in [location, "\(location)/cifar-10-batches-bin"] where FileManager.default.fileExists(atPath: "\(base)/data_batch_1.bin") {
            // All five training batches or none: training on a fifth of the data without a word
            // would look like a worse model, not like a missing file.
            let files = (1...5).map { "data_batch_\($0).bin" } + ["test_batch.bin"]
            let missing = files.filter { !FileManager.default.fileExists(atPath: "\(base)/\($0)") }
            guard missing.isEmpty else {
                throw EngineError.invalidData("'\(base)' is an incomplete CIFAR-10 directory: \(missing.joined(separator: ", ")) missing (expected data_batch_1.bin … data_batch_5.bin and test_batch.bin)")
            }
            let paths = files.map { "\(base)/\($0)" }
            return DataSplits(train: try CIFAR10.load(files: Array(paths.prefix(5)), name: "train", classes: classes),
                              test: try CIFAR10.load(files: [paths[5]], name: "test", classes: classes))
        }
        throw EngineError.invalidData("no data in '\(location)': expected MNIST-format IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-…) or CIFAR-10 binary batches (data_batch_1.bin … test_batch.bin)")
    }
}

extension DataSplits {
    /// Sizes, shape, classes and a SHA-256 of every label and pixel of both splits: equal on
    /// two processes exactly when they hold the same data (wherever its files are).
    public var identity: String {
        var hasher = SHA256()
        for split in [train, test] {
            split.labels.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            split.pixels.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        let hash = hasher.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        return "\(train.count) train + \(test.count) test of \(train.shape.map(String.init).joined(separator: "×")), \(train.classes) classes, sha256 \(hash)…"
    }
}
