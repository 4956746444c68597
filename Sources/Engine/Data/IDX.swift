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
