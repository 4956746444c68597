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
